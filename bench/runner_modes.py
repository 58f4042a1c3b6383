"""Local pipeline wall time under Beam's DirectRunner modes: in_memory vs multi_processing.

``python -m bench.runner_modes [--repeats N]`` (``bench/__main__.py`` may call :func:`run`).
Each run is a fresh child process running ``pipeline.local_runner.run`` on MovieLens 100k
(``MOVIEREC_DATA_HOME``) in a fresh pipeline root with caching off, so no run reuses another's
outputs or warm caches. Figures are printed (medians over repeats); nothing is asserted.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # TFRS needs Keras 2: set before TensorFlow loads

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The local runner's default is in_memory; multi_processing runs Beam bundles in 2 worker
# processes, one per shared core.
MODES = {
    "in_memory": ("--direct_running_mode=in_memory", "--direct_num_workers=1"),
    "multi_processing": ("--direct_running_mode=multi_processing", "--direct_num_workers=2"),
}
_RESULT_FILE = "result.json"


def _component_seconds(metadata_path: str) -> dict[str, float]:
    """Seconds per execution recorded in ML-Metadata, keyed by component type name."""
    from tfx.orchestration import metadata

    config = metadata.sqlite_metadata_connection_config(metadata_path)
    with metadata.Metadata(config) as m:
        types = {t.id: t.name.rsplit(".", 1)[-1] for t in m.store.get_execution_types()}
        return {
            types[e.type_id]: (e.last_update_time_since_epoch - e.create_time_since_epoch) / 1000
            for e in m.store.get_executions()
        }


def run_child(mode: str, workdir: Path) -> None:
    """Runs the pipeline once with ``mode``'s Beam args; writes seconds to ``workdir``."""
    from data import data_home
    from data.sources import DatasetSpec
    from pipeline import launch, local_runner
    from pipeline.config import PipelineConfig

    config = PipelineConfig(
        pipeline_name="movierec",
        pipeline_root=str(workdir / "pipeline_root"),
        dataset=DatasetSpec(
            kind="ml-100k",
            path=str(data_home.ensure_ml100k(data_home.resolve_data_home(os.environ))),
        ),
        schema_path=launch.schema_path(),
        serving_dir=str(workdir / "serving"),
    )
    metadata_path = str(workdir / "metadata.sqlite")
    start = time.perf_counter()
    local_runner.run(config, metadata_path, beam_args=MODES[mode])
    seconds = time.perf_counter() - start
    result = {"seconds": seconds, "components": _component_seconds(metadata_path)}
    (workdir / _RESULT_FILE).write_text(json.dumps(result))


def _run_once(mode: str) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"movierec-{mode}-") as tmp:
        workdir = Path(tmp)
        log = workdir / "pipeline.log"
        with open(log, "w") as f:
            proc = subprocess.run(
                [sys.executable, "-m", "bench.runner_modes", "--child", mode, "--workdir", tmp],
                stdout=f,
                stderr=subprocess.STDOUT,
                env={**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"},
            )
        if proc.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
            raise RuntimeError(f"the {mode} run failed (exit {proc.returncode}):\n{tail}")
        return json.loads((workdir / _RESULT_FILE).read_text())


def run(out=sys.stdout, repeats: int = 2) -> dict[str, float]:
    """Times the local pipeline under each mode; prints and returns median seconds per mode."""
    runs = {mode: [] for mode in MODES}
    for _ in range(repeats):
        for mode in MODES:  # interleaved, so drift of the machine hits both modes alike
            runs[mode].append(_run_once(mode))
    print(
        f"\nLocal pipeline on MovieLens 100k by Beam DirectRunner mode (median of {repeats}):",
        file=out,
    )
    components = sorted({c for results in runs.values() for r in results for c in r["components"]})
    print(f"  {'':<28}" + "".join(f"{mode:>18}" for mode in MODES), file=out)
    medians = {}
    for mode, results in runs.items():
        medians[mode] = statistics.median(r["seconds"] for r in results)
    for name in components:
        cells = "".join(
            f"{statistics.median(r['components'].get(name, 0.0) for r in runs[m]):>16.1f} s"
            for m in MODES
        )
        print(f"  {name:<28}{cells}", file=out)
    walls = "".join(f"{medians[m]:>16.1f} s" for m in MODES)
    print(f"  {'pipeline wall time':<28}{walls}", file=out)
    for mode, results in runs.items():
        each = ", ".join(f"{r['seconds']:.1f}" for r in results)
        print(f"  {mode} runs: {each} s", file=out)
    fastest = min(medians, key=medians.get)
    print(f"  faster: {fastest}", file=out, flush=True)
    return medians


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child", choices=sorted(MODES), help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_child(args.child, args.workdir)
    else:
        run(repeats=args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
