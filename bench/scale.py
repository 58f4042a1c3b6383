"""The whole pipeline at growing sizes: ``make bench ARGS="scale [--scale-ratings N,N,..]"``.

Each size is one ``movierec run --dataset synthetic`` (end to end through ``LocalDagRunner``,
in a fresh work dir) of the shape in :data:`SHAPES` (power-law popularity; 20M is the ml-20m
shape, ~138k users and 27k movies). Printed per component: wall seconds, peak memory and
rows per second; between sizes, the scaling exponent ``log(t2 / t1) / log(n2 / n1)`` (1 is
linear); per size, the Trainer's throughput and the served quality (recall@10 of the lists
``/v1/recommend`` serves, against popularity and EASE, as the Evaluator measured them), so
that speed is never read without quality.

Peak memory: while a component runs, a sampler resets the kernel's high-water mark
(``/proc/<pid>/clear_refs``, 5) of every process of the run when the component starts and
reads ``VmHWM`` when it ends, summed over the processes (an upper bound of the tree's
simultaneous peak; with Beam's multi-processing workers it adds their peaks). Nothing is
asserted.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # TFRS needs Keras 2: set before TensorFlow loads

import argparse
import math
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench import proc
from trainer.config import retrieval_length

# ratings -> (users, movies): users grow with the ratings (~145 per user, as in ml-20m),
# movies more slowly (ml-1m: 3.7k movies, ml-20m: 27k).
SHAPES = {
    1_000_000: (7_000, 3_000),
    5_000_000: (35_000, 12_000),
    20_000_000: (138_000, 27_000),
}
DEFAULT_SIZES = tuple(SHAPES)
_SAMPLE_SECONDS = 0.2


def shape_of(ratings: int) -> tuple[int, int]:
    """``(users, movies)`` of a size: :data:`SHAPES`' own, else scaled from the nearest."""
    if ratings in SHAPES:
        return SHAPES[ratings]
    near = min(SHAPES, key=lambda n: abs(math.log(ratings / n)))
    users, movies = SHAPES[near]
    f = ratings / near
    return max(1, round(users * f)), max(10, round(movies * math.sqrt(f)))


class _Watcher:
    """Follows the run's log; per component: start/end times and the tree's summed VmHWM."""

    def __init__(self, proc: subprocess.Popen, workdir: Path):
        from pipeline import launch

        self.pattern = launch._COMPONENT_LINE
        self.proc, self.workdir = proc, workdir
        self.components: dict[str, dict] = {}
        self.current: str | None = None
        self.peak_mb: dict[int, float] = {}  # pid -> the largest VmHWM seen, whole run
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _hwm_mb(self) -> float:
        total = 0.0
        for pid in proc.tree(self.proc.pid):
            hwm = proc.status_kb(pid, "VmHWM") / 1024
            self.peak_mb[pid] = max(self.peak_mb.get(pid, 0.0), hwm)
            total += hwm
        return total

    def _close(self, now: float) -> None:
        if self.current is not None:
            c = self.components[self.current]
            c["seconds"] = now - c["start"]
            c["peak_mb"] = max(c.get("peak_mb", 0.0), self._hwm_mb())
            self.current = None

    def _run(self) -> None:
        log = None
        while True:
            alive = self.proc.poll() is None
            if log is None:
                found = sorted(self.workdir.glob("runs/*/pipeline.log"))
                log = open(found[0], errors="replace") if found else None
            for line in iter(log.readline, "") if log else ():
                m = self.pattern.search(line)
                if not m:
                    continue
                name, state = m.groups()
                now = time.perf_counter()
                if state == "running":
                    self._close(now)
                    for pid in proc.tree(self.proc.pid):
                        proc.reset_peak(pid)
                    self.components[name] = {"start": now}
                    self.current = name
                elif name == self.current:
                    self._close(now)
            if self.current is not None:  # keeps the peak of processes that end early
                c = self.components[self.current]
                c["peak_mb"] = max(c.get("peak_mb", 0.0), self._hwm_mb())
            if not alive:
                self._close(time.perf_counter())
                if log:
                    log.close()
                return
            time.sleep(_SAMPLE_SECONDS)


def run_size(ratings: int, beam_workers: int = 1, out=sys.stdout) -> dict:
    """One end-to-end run of ``ratings`` synthetic ratings; returns its figures."""
    from pipeline import metadata

    users, movies = shape_of(ratings)
    with tempfile.TemporaryDirectory(prefix=f"movierec-scale-{ratings}-") as tmp:
        workdir = Path(tmp)
        cmd = [
            sys.executable,
            "-m",
            "pipeline.cli",
            "run",
            "--dataset",
            "synthetic",
            "--synthetic-users",
            str(users),
            "--synthetic-movies",
            str(movies),
            "--synthetic-ratings",
            str(ratings),
            "--beam-workers",
            str(beam_workers),
        ]
        env = {
            **os.environ,
            "MOVIEREC_WORKDIR": tmp,
            "TF_USE_LEGACY_KERAS": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
        print(f"\n{ratings:,} ratings ({users:,} users, {movies:,} movies): running", file=out)
        start = time.perf_counter()
        with open(workdir / "command.log", "w") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
            watcher = _Watcher(proc, workdir)
            proc.wait()
            watcher.thread.join()
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            tail = (workdir / "command.log").read_text(errors="replace").splitlines()[-30:]
            raise RuntimeError(f"the {ratings:,}-rating run failed:\n" + "\n".join(tail))
        results = metadata.collect_results(workdir / "metadata.sqlite")
    evaluation = results.get("evaluation") or {}
    baselines = evaluation.get("baselines") or {}
    training = results.get("training") or {}
    return {
        "ratings": ratings,
        "users": users,
        "movies": movies,
        "wall_seconds": wall,
        "components": {
            n: {"seconds": c.get("seconds", 0.0), "peak_mb": c.get("peak_mb", 0.0)}
            for n, c in watcher.components.items()
        },
        "largest_process_mb": max(watcher.peak_mb.values(), default=0.0),
        "num_train": evaluation.get("num_train", 0),
        "num_eval": evaluation.get("num_eval", 0),
        "num_catalogue": evaluation.get("num_catalogue", 0),
        "trainer": {
            k: training.get(k)
            for k in ("train_seconds", "choose_seconds", "examples_per_second", "chosen")
        },
        "recall@10": {
            "served": (evaluation.get("model") or {}).get("recall@10"),
            "popularity": baselines.get("popularity", {}).get("recall@10"),
            "ease": baselines.get("ease", {}).get("recall@10"),
        },
    }


def _rows(component: str, r: dict) -> tuple[int, str]:
    """What a component's rows/s counts: train ratings (the Trainer), eval pairs (the
    Evaluator), movies (servables, Pusher), else every rating read (the refit Trainer too)."""
    if component == "Trainer":
        return r["num_train"], "train ratings"
    if "Evaluator" in component:
        return r["num_eval"], "eval pairs"
    if "Pusher" in component or "Servables" in component:
        return r["num_catalogue"], "movies"
    return r["ratings"], "ratings"


def exponent(t1: float, t2: float, n1: int, n2: int) -> float:
    """``log(t2 / t1) / log(n2 / n1)``: 1 is linear, 2 quadratic; NaN when undefined."""
    if t1 <= 0 or t2 <= 0 or n1 == n2:
        return float("nan")
    return math.log(t2 / t1) / math.log(n2 / n1)


def report(results: list[dict], out=sys.stdout) -> None:
    """Prints the figures of :func:`run_size` results, smallest first."""
    results = sorted(results, key=lambda r: r["ratings"])
    for r in results:
        print(
            f"\n{r['ratings']:,} ratings ({r['users']:,} users, {r['movies']:,} movies; "
            f"{r['num_train']:,} train, {r['num_eval']:,} eval): {r['wall_seconds']:.0f} s "
            f"end to end, largest process {r['largest_process_mb'] / 1024:.1f} GB",
            file=out,
        )
        print(f"  {'component':<28}{'seconds':>9}{'peak GB':>9}{'rows/s':>12}  rows", file=out)
        for name, c in r["components"].items():
            rows, unit = _rows(name, r)
            # Bookkeeping components (resolvers, gates) take no measurable time.
            rate = f"{rows / c['seconds']:>12,.0f}  {unit}" if c["seconds"] >= 0.5 else ""
            print(f"  {name:<28}{c['seconds']:>9.1f}{c['peak_mb'] / 1024:>9.2f}{rate}", file=out)
        t = r["trainer"]
        if t.get("examples_per_second") is not None:
            chosen = t.get("chosen") or {}
            print(
                f"  Trainer: choosing {t['choose_seconds']:.0f} s, refit {t['train_seconds']:.0f} s"
                f" at {t['examples_per_second']:,.0f} ratings/s per epoch "
                f"(autoencoder {retrieval_length(chosen)} and "
                f"{chosen.get('rating_epochs')} rating epochs chosen)",
                file=out,
            )
        q = r["recall@10"]
        if q["served"] is not None:
            print(
                f"  served recall@10 {q['served']:.4f}  popularity {q['popularity']:.4f}  "
                f"EASE {q['ease']:.4f}",
                file=out,
            )
    for a, b in zip(results, results[1:], strict=False):
        print(f"\nScaling exponent {a['ratings']:,} -> {b['ratings']:,} ratings:", file=out)
        names = [n for n in b["components"] if n in a["components"]]
        for name in names:
            e = exponent(
                a["components"][name]["seconds"],
                b["components"][name]["seconds"],
                a["ratings"],
                b["ratings"],
            )
            print(f"  {name:<28}{e:>6.2f}", file=out)
        e = exponent(a["wall_seconds"], b["wall_seconds"], a["ratings"], b["ratings"])
        print(f"  {'end to end':<28}{e:>6.2f}", file=out, flush=True)


def run(out=sys.stdout, sizes=DEFAULT_SIZES, beam_workers: int = 1) -> list[dict]:
    """Runs every size (smallest first), printing as each finishes; returns the figures."""
    results = []
    for ratings in sorted(sizes):
        results.append(run_size(ratings, beam_workers, out))
        report(results[-1:], out)
    if len(results) > 1:
        report(results, out)
    return results


def parse_sizes(text: str) -> tuple[int, ...]:
    """``"1000000,5e6,20M"`` -> sizes; raises ValueError naming a bad item."""
    sizes = []
    for item in text.split(","):
        item = item.strip().upper()
        scale = {"K": 1_000, "M": 1_000_000}.get(item[-1:], 1)
        number = item[:-1] if scale > 1 else item
        try:
            value = float(number) * scale
        except ValueError:
            raise ValueError(f"--scale-ratings: {item!r} is not a number of ratings") from None
        if not value.is_integer() or value < 1000:
            raise ValueError(f"--scale-ratings: {item!r} must be a whole number >= 1000")
        sizes.append(int(value))
    return tuple(sizes)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale-ratings", default=",".join(str(n) for n in DEFAULT_SIZES))
    parser.add_argument("--beam-workers", type=int, default=1)
    args = parser.parse_args(argv)
    run(sizes=parse_sizes(args.scale_ratings), beam_workers=args.beam_workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
