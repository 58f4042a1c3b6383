"""``movierec retrain``: the pipeline on the latest spans, warm-started, safe to run from cron.

``pipeline.cli`` adds the subcommand with :func:`add_retrain_command` and runs
:func:`cmd_retrain`. A retrain

1. takes ``<workdir>/retrain.lock`` (:func:`acquire_lock`) before any work; a second call
   exits with ``LOCKED_EXIT`` instead of racing the first;
2. resolves the latest ``--window`` spans (``data.sources.spans``) into a dataset spec;
3. exits 0 without work when a run on that exact spec already reached a finished Pusher
   (``pipeline.metadata.finished_datasets``), so cron may call it any number of times;
4. runs the pipeline with ML-Metadata caching on and the Trainer warm-started from the
   latest blessed model. The Evaluator compares the new model with that model and the
   Pusher pushes only a blessed one. A run killed part-way and started again reuses the
   components that had finished (cached) and resumes from the first that had not.

Light on purpose (ML-Metadata's client, no TensorFlow): the lock and the "nothing new" check
take well under a second.
"""

import argparse
import fcntl
import os
import sys
from pathlib import Path

from data.sources import SPAN_LAYOUTS
from data.sources.spans import spans_spec
from pipeline import flags, launch
from pipeline.config import PIPELINE_NAME
from pipeline.metadata import finished_datasets, last_run_states

LOCK_FILE = "retrain.lock"
# Exit status of a retrain that found the lock held (cron can tell it from a failure, 1).
LOCKED_EXIT = 3


class RetrainLocked(Exception):
    """Another retrain holds the workdir's lock."""


def acquire_lock(workdir: Path) -> int:
    """Takes the exclusive ``<workdir>/retrain.lock`` without waiting; records our pid in it.

    The lock is an ``flock`` on an open file: the kernel releases it when every process
    holding the descriptor has exited, also after a SIGKILL, so a crashed run never leaves
    a stale lock. Pass the descriptor to child processes (``pass_fds``) so the lock lasts
    as long as any of them.

    Returns:
      the descriptor holding the lock.

    Raises:
      RetrainLocked: naming the lock file and the holder's pid, when it is held.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RetrainLocked(f"another retrain (pid {holder}) holds {path}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def print_retrain(states: dict[str, str], training: dict | None, out) -> None:
    """Prints which components were reused from cache and what the warm start carried over."""
    cached = [node for node, state in states.items() if state == "CACHED"]
    if cached:
        print(f"\nReused from ML-Metadata (cached): {', '.join(cached)}", file=out)
    warm = (training or {}).get("warm_start")
    if states.get("Trainer") == "CACHED":
        print("Trainer: reused the model trained on these spans before", file=out)
    elif warm:
        carried, new = warm["rows_carried_over"], warm["rows_new"]
        print(
            f"Warm start from {warm['base_model']}: embeddings of {carried['users']:,} users "
            f"and {carried['movies']:,} movies carried over ({new['users']:,} users and "
            f"{new['movies']:,} movies new)",
            file=out,
        )
    elif training is not None:
        print("Trained from a fresh initialisation (no blessed model to start from)", file=out)


def cmd_retrain(args, env, out=sys.stdout) -> int:
    """``movierec retrain``.

    Args:
      args: the flags of :func:`add_retrain_command`.
      env: ``pipeline.cli.Environment`` (only ``workdir`` is read).
      out: where progress and results are printed.

    Returns:
      0 after a run (pushed or not) or when there is nothing new, 1 when the pipeline
      failed, 2 for a bad flag or span root, ``LOCKED_EXIT`` when another retrain runs.
    """
    try:
        flags.config_fields(args)  # a bad flag fails before the lock and the spans
    except ValueError as e:
        print(f"movierec: invalid option: {e}", file=sys.stderr)
        return 2
    try:
        lock = acquire_lock(env.workdir)
    except RetrainLocked as e:
        print(f"movierec: {e}; not starting a second one", file=sys.stderr)
        return LOCKED_EXIT
    try:
        return _retrain(args, env.workdir, lock, out)
    finally:
        os.close(lock)


def _retrain(args, workdir: Path, lock: int, out) -> int:
    try:
        dataset = spans_spec(args.spans, args.span_layout, args.window)
    except ValueError as e:
        print(f"movierec: {e}", file=sys.stderr)
        return 2
    where = f"{', '.join(dataset.spans)} of {dataset.path}"
    metadata_path = workdir / "metadata.sqlite"
    if not args.force and dataset.to_json() in finished_datasets(metadata_path, PIPELINE_NAME):
        print(
            f"movierec: nothing new: a run on spans {where} has already finished; the serving "
            "models are unchanged (--force runs anyway)",
            file=out,
        )
        return 0
    run_dir = launch.new_run_dir(workdir)
    config = flags.config_from_flags(args, dataset=dataset, **launch.local_locations(workdir))
    print(
        f"movierec: retraining on spans {where} (window {args.window}, warm start: "
        f"{args.warm_start}; log: {run_dir / 'pipeline.log'})",
        file=out,
        flush=True,
    )
    outcome = launch.run_child(config, workdir, run_dir, out, ("--enable-cache",), pass_fds=(lock,))
    if outcome is None:
        return 1
    results = outcome[0]
    states = last_run_states(metadata_path, PIPELINE_NAME)
    print_retrain(states, results.get("training"), out)
    launch.print_results(results, out)
    launch.write_summary(
        run_dir,
        config,
        outcome,
        out,
        spans=list(dataset.spans),
        component_states=states,
        warm_start=results.get("training", {}).get("warm_start"),
    )
    return 0


def add_retrain_command(subparsers) -> argparse.ArgumentParser:
    """Adds ``retrain`` and its flags to the ``movierec`` subparsers; returns its parser."""
    retrain_parser = subparsers.add_parser(
        "retrain",
        help="retrain on the latest spans of a span root; safe to run from cron",
        description=(
            "Runs the pipeline with ML-Metadata caching on the latest --window spans "
            "(span-1/, span-2/, ... under --spans), warm-started from the latest blessed "
            "model; the Evaluator compares against that model and only a blessed model is "
            "pushed. Exits 0 without work when a run on the same spans has finished, and "
            f"{LOCKED_EXIT} when another retrain holds $MOVIEREC_WORKDIR/{LOCK_FILE}. A "
            "rerun after a crash reuses the components that had finished."
        ),
    )
    retrain_parser.add_argument("--spans", required=True, help="the span root directory")
    retrain_parser.add_argument(
        "--span-layout",
        choices=SPAN_LAYOUTS,
        default=flags.DEFAULT_SPAN_LAYOUT,
        help="what each span holds: ratings.csv + movies.csv, or ml-100k's u.data/u.item/u.user",
    )
    retrain_parser.add_argument(
        "--window", type=int, default=3, help="how many of the latest spans to train on"
    )
    retrain_parser.add_argument(
        "--force", action="store_true", help="run even when these spans were already done"
    )
    # Scheduled retraining starts from the model that serves.
    flags.add_config_flags(retrain_parser, warm_start="latest_blessed")
    return retrain_parser
