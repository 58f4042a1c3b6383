"""Runs the pipeline in a child process for ``movierec run`` and ``movierec retrain``.

``pipeline.cli`` and ``pipeline.retrain`` share these: the flags both commands take, the
child process (``python -m pipeline.local_runner``) whose output goes to a log file, one
printed line per component as the log reports it, and the printed results. Light on purpose
(no TFX or TensorFlow import), so the commands start quickly.
"""

import argparse
import importlib.resources
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from components import splits
from pipeline.config import PipelineConfig, config_to_dict
from trainer.config import TrainerConfig

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


def trainer_config(args) -> TrainerConfig:
    """The Trainer config of the flags; checks the split flags too.

    Raises:
      ValueError: naming the bad field (checked here so a bad flag fails at once, not
        minutes later inside ExampleGen).
    """
    trainer_config = TrainerConfig.from_custom_config(
        json.loads(args.trainer_config) if args.trainer_config else {}
    )
    splits.SplitConfig(args.split, args.seed, args.eval_fraction, args.leave_last_n)
    return trainer_config


PIPELINE_NAME = "movierec"


def pipeline_config(
    args, workdir: Path, dataset, trainer: TrainerConfig, **overrides
) -> PipelineConfig:
    """The PipelineConfig of ``run``'s and ``retrain``'s shared flags under ``workdir``.

    Args:
      args: parsed flags (split, seed, eval_fraction, leave_last_n, index,
        max_reject_fraction).
      workdir: holds ``pipeline_root/`` and ``serving/``.
      dataset: the ``DatasetSpec`` to read.
      trainer: Trainer hyperparameters.
      **overrides: further PipelineConfig fields, e.g. ``warm_start_from``.
    """
    return PipelineConfig(
        pipeline_name=PIPELINE_NAME,
        pipeline_root=str(workdir / "pipeline_root"),
        dataset=dataset,
        schema_path=schema_path(),
        serving_dir=str(workdir / "serving"),
        trainer=trainer,
        split_kind=args.split,
        split_seed=args.seed,
        eval_fraction=args.eval_fraction,
        leave_last_n=args.leave_last_n,
        index_kind=args.index,
        max_reject_fraction=args.max_reject_fraction,
        **({} if getattr(args, "refit", None) is None else {"refit": args.refit}),
        **overrides,
    )


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """The split, index and Trainer flags of ``run`` and ``retrain``."""
    parser.add_argument("--split", choices=("random", "time", "leave_last_n"), default="random")
    parser.add_argument("--seed", type=int, default=42, help="seed of the random split")
    parser.add_argument("--eval-fraction", type=float, default=0.2, help="random and time splits")
    parser.add_argument("--leave-last-n", type=int, default=1, help="leave_last_n split")
    parser.add_argument("--index", choices=("scann", "brute_force"), default="scann")
    parser.add_argument("--trainer-config", help="JSON overrides, e.g. '{\"epochs\": 3}'")
    parser.add_argument(
        "--refit",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="after blessing, push the evaluated recipe refit on every ingested rating "
        "(default: on, measured by `make bench ARGS=refit`)",
    )


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
