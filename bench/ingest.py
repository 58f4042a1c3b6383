"""Ingestion benchmark: ExampleGen's Beam ingestion on MovieLens 100k and on 20M+ synthetic
ratings.

Run by ``python -m bench ingest`` (``--ingest-ratings N`` changes the synthetic size). Each
measurement runs in a child process, so its peak memory (VmHWM: Beam's in-memory
DirectRunner runs inside that process) is its own. Prints rows/s, wall time and peak memory.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # TFRS needs Keras 2: set before TensorFlow loads

import json
import subprocess
import sys
import tempfile
import time

from bench import proc

_CHILD = "bench.ingest"


def _child(kind: str, num_ratings: int) -> dict:
    from data import data_home, examples, splits
    from data.sources import DatasetSpec, make_source

    if kind == "ml-100k":
        path = data_home.ensure_ml100k(data_home.resolve_data_home(os.environ))
        spec = DatasetSpec(kind="ml-100k", path=str(path))
    else:
        spec = DatasetSpec(
            kind="synthetic",
            num_users=max(1000, num_ratings // 200),
            num_movies=50_000,
            num_ratings=num_ratings,
            seed=0,
        )
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        stats = examples.write_examples(
            make_source(spec), f"{out}/examples", f"{out}/catalogue", split=splits.SplitConfig()
        )
        seconds = time.perf_counter() - start
    return {
        "rows": stats["num_rows"],
        "examples": stats["num_train"] + stats["num_eval"],
        "duplicates": stats["rejects"]["duplicate"],
        "seconds": seconds,
        "peak_gb": proc.status_kb(os.getpid(), "VmHWM") / 1e6,
    }


def _measure(kind: str, num_ratings: int = 0) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", _CHILD, kind, str(num_ratings)],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    if proc.returncode != 0:
        raise SystemExit(f"ingest benchmark child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_ingest(num_ratings: int = 20_000_000, repeats: int = 3) -> None:
    """Prints ingestion figures: ml-100k (median of ``repeats``) and one synthetic run."""
    runs = sorted((_measure("ml-100k") for _ in range(repeats)), key=lambda r: r["seconds"])
    ml = runs[len(runs) // 2]
    print(f"\nExampleGen ingestion (Beam DirectRunner in-memory, {os.cpu_count()} cores):")
    print(
        f"  {'dataset':<22}{'rows':>12}{'examples':>12}{'seconds':>9}{'rows/s':>10}{'peak GB':>9}"
    )

    def row(name, r):
        print(
            f"  {name:<22}{r['rows']:>12,}{r['examples']:>12,}{r['seconds']:>9.1f}"
            f"{r['rows'] / r['seconds']:>10,.0f}{r['peak_gb']:>9.2f}"
        )

    row(f"ml-100k (median of {repeats})", ml)
    row("synthetic", _measure("synthetic", num_ratings))


if __name__ == "__main__":
    print(json.dumps(_child(sys.argv[1], int(sys.argv[2]))))
