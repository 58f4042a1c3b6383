"""Runs the pipeline in a child process for ``movierec run`` and ``movierec retrain``.

``pipeline.cli`` and ``pipeline.retrain`` share these: where a local run lives under the
workdir, the child process (``python -m pipeline.local_runner``) whose output goes to a log
file, one printed line per component as the log reports it, the printed results and the
run summary (``summary.json``). Their shared flags and config are ``pipeline.flags``'s.
Light on purpose (no TFX or TensorFlow import), so the commands start quickly.
"""

import importlib.resources
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from pipeline.config import PIPELINE_NAME, PipelineConfig, config_to_dict

_COMPONENT_LINE = re.compile(r"Component (\S+) is (running|finished)\.")
_METRICS_SHOWN = (
    "recall@10",
    "ndcg@10",
    "map@10",
    "user_recall@10",
    "user_ndcg@10",
    "recall@100",
    "coverage@10",
    "popularity_percentile@10",
    "rmse",
    "mae",
)


def schema_path() -> str:
    """The curated schema shipped with the package."""
    return str(importlib.resources.files("pipeline") / "schema" / "schema.pbtxt")


def child_env() -> dict:
    """The environment of movierec's child processes: Keras 2 (TFRS), quieter TensorFlow."""
    return {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


def follow(proc: subprocess.Popen, log_path: Path, out) -> dict[str, float]:
    """Prints a line per component as the child's log reports it; returns durations."""
    durations, started = {}, {}
    with open(log_path, errors="replace") as log:
        while True:
            line = log.readline()
            if not line:
                if proc.poll() is not None:
                    break
                time.sleep(0.2)
                continue
            m = _COMPONENT_LINE.search(line)
            if not m:
                continue
            name, state = m.groups()
            if state == "running":
                started[name] = time.perf_counter()
                print(f"  {name:<30}", end=" ", file=out, flush=True)
            elif name in started:
                durations[name] = time.perf_counter() - started[name]
                print(f"done in {durations[name]:6.1f} s", file=out, flush=True)
    return durations


def validation_failure(log_lines: list[str]) -> list[str]:
    """The DataValidationGate's message in a failed run's log, or [] when it did not fail."""
    marker = "DataValidationError: "
    for i in range(len(log_lines) - 1, -1, -1):
        if marker in log_lines[i]:
            message = [log_lines[i][log_lines[i].index(marker) :]]
            for line in log_lines[i + 1 :]:
                if not (line.startswith("  ") or line.startswith("rejected rows: ")):
                    break
                message.append(line)
            return message
    return []


def local_locations(workdir: Path) -> dict:
    """Where a local run (``run``, ``retrain``) lives under ``workdir``: the keywords of
    ``pipeline.flags.config_from_flags`` besides the dataset (pipeline name, ``pipeline_root/``,
    the shipped schema, ``serving/``)."""
    return {
        "pipeline_name": PIPELINE_NAME,
        "pipeline_root": str(workdir / "pipeline_root"),
        "schema_path": schema_path(),
        "serving_dir": str(workdir / "serving"),
    }


def new_run_dir(workdir: Path) -> Path:
    """``<workdir>/runs/<run id>/``, created; the run id is the start time."""
    run_dir = workdir / "runs" / time.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def run_child(
    config: PipelineConfig,
    workdir: Path,
    run_dir: Path,
    out,
    runner_flags: tuple[str, ...] = (),
    pass_fds: tuple[int, ...] = (),
) -> tuple[dict, dict[str, float], float] | None:
    """Runs the pipeline in a child process (``pipeline.local_runner``), following its log.

    Returns:
      ``(results, seconds per component, total seconds)``, or None when the pipeline
      failed (the reason is printed to stderr).
    """
    config_file = run_dir / "config.json"
    config_file.write_text(json.dumps(config_to_dict(config), indent=2))
    log_path = run_dir / "pipeline.log"
    results_file = run_dir / "results.json"
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipeline.local_runner",
                "--config",
                str(config_file),
                "--metadata",
                str(workdir / "metadata.sqlite"),
                "--results",
                str(results_file),
                *runner_flags,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_env(),
            pass_fds=pass_fds,
        )
    durations = follow(proc, log_path, out)
    total = time.perf_counter() - start
    if proc.returncode != 0:
        print(
            f"\nmovierec: the pipeline failed (exit {proc.returncode}); last lines of {log_path}:",
            file=sys.stderr,
        )
        lines = log_path.read_text(errors="replace").splitlines()
        print("\n".join(validation_failure(lines) or lines[-25:]), file=sys.stderr)
        return None
    print(f"  {'total':<30} {total:6.1f} s", file=out)
    return json.loads(results_file.read_text()), durations, total


def write_summary(
    run_dir: Path,
    config: PipelineConfig,
    outcome: tuple[dict, dict[str, float], float],
    out,
    **extra,
) -> Path:
    """Writes ``<run_dir>/summary.json`` of a finished run and prints its path.

    Args:
      run_dir: the run's directory (:func:`new_run_dir`); its name is the run id.
      config: the run's config.
      outcome: what :func:`run_child` returned.
      out: where the path is printed.
      **extra: further keys of the command (``retrain``: spans, component states, warm
        start; ``run``: the closing demo).

    Returns:
      the summary's path.
    """
    results, durations, total = outcome
    summary = {
        "run_id": run_dir.name,
        "dataset": json.loads(config.dataset.to_json()),
        "config": config_to_dict(config),
        "seconds_total": total,
        "seconds_per_component": durations,
        "evaluation": results.get("evaluation"),
        "blessed": bool((results.get("evaluation") or {}).get("blessed")),
        "push": results.get("push"),
        "report": results.get("report"),
        "log": str(run_dir / "pipeline.log"),
        **extra,
    }
    summary_path = run_dir / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=2))
    print(f"\nRun summary: {summary_path}", file=out)
    return summary_path


def print_ingest(ingest: dict, out) -> None:
    rejects = {reason: n for reason, n in ingest["rejects"].items() if n}
    print(
        f"\nIngested {ingest['rows']:,} rating rows: {ingest['train']:,} train, "
        f"{ingest['eval']:,} eval examples; {sum(rejects.values()):,} rows rejected"
        + (f" ({', '.join(f'{r} {n:,}' for r, n in sorted(rejects.items()))})" if rejects else "")
        + (
            f"; {ingest['below_implicit_threshold']:,} at or below the implicit threshold"
            if ingest["below_implicit_threshold"]
            else ""
        ),
        file=out,
    )
    print(f"  rejects: {ingest['rejects_file']}", file=out)


def print_results(results: dict, out) -> None:
    if results.get("ingest"):
        print_ingest(results["ingest"], out)
    evaluation = results.get("evaluation")
    if evaluation:
        columns = {"model": evaluation["model"]}
        if evaluation.get("retrieval_order"):
            columns["retr.order"] = evaluation["retrieval_order"]
        columns.update(evaluation["baselines"])
        if evaluation.get("previous_model"):
            columns["previous"] = evaluation["previous_model"]["metrics"]
        print(
            "\nEvaluation on the eval split, of the lists users are served (@10: the served "
            "list; recall@100: the candidates; each user's train movies excluded):",
            file=out,
        )
        print(f"  {'metric':<30}" + "".join(f"{name:>12}" for name in columns), file=out)
        for key in _METRICS_SHOWN:
            cells = "".join(
                f"{scorer[key]:>12.4f}" if key in scorer else f"{'-':>12}"
                for scorer in columns.values()
            )
            print(f"  {key:<30}{cells}", file=out)
        stage = evaluation.get("ranking_stage")
        if stage:
            gain = stage.get("validation", {}).get("mean_gain")
            print(
                f"\nServed order: {stage['served_order']}"
                + (
                    f" (re-ranker gain on the validation cut {gain:+.4f})"
                    if gain is not None
                    else ""
                ),
                file=out,
            )
        verdict = "BLESSED" if evaluation["blessed"] else "NOT BLESSED"
        print(f"\nBlessing: {verdict}", file=out)
        for reason in evaluation["reasons"]:
            print(f"  {reason}", file=out)
    if results.get("report"):
        print(f"\nReport: {results['report']}", file=out)
    push = results.get("push", {})
    if push.get("pushed"):
        if push.get("refit_of"):
            print(
                "\nPushed the blessed model's recipe refit on every ingested rating "
                f"(evaluated: {push['refit_of']}):",
                file=out,
            )
        else:
            print("\nPushed models (TF Serving layout):", file=out)
        for name, pushed in push.items():
            if isinstance(pushed, dict):
                print(f"  {name:<22} v{pushed['version']:<4} {pushed['path']}", file=out)
        print(f"  {'models.config':<22}       {push['models_config']}", file=out)
    elif push:
        print(
            f"\nNothing pushed: {push.get('reason')}; the previous model keeps serving.", file=out
        )
