"""``movierec retrain``: the pipeline on the latest spans, warm-started, safe to run from cron.

``pipeline.cli`` adds the subcommand with :func:`add_retrain_command` and runs
:func:`cmd_retrain`. A retrain

1. takes ``<workdir>/retrain.lock`` (:func:`acquire_lock`) before any work; a second call
   exits with ``LOCKED_EXIT`` instead of racing the first;
2. resolves the latest ``--window`` spans (``components.sources.spans``) into a dataset spec;
3. exits 0 without work when a run on that exact spec already reached a finished Pusher
   (:func:`finished_datasets`, from ML-Metadata), so cron may call it any number of times;
4. runs the pipeline with ML-Metadata caching on and the Trainer warm-started from the
   latest blessed model. The Evaluator compares the new model with that model and the
   Pusher pushes only a blessed one. A run killed part-way and started again reuses the
   components that had finished (cached) and resumes from the first that had not.

Light on purpose (ML-Metadata's client, no TensorFlow): the lock and the "nothing new" check
take well under a second.
"""

import argparse
import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from components.sources import SPAN_LAYOUTS
from components.sources.spans import spans_spec
from pipeline import launch
from pipeline.config import WARM_START_SOURCES, config_to_dict

PIPELINE_NAME = launch.PIPELINE_NAME
LOCK_FILE = "retrain.lock"
# Exit status of a retrain that found the lock held (cron can tell it from a failure, 1).
LOCKED_EXIT = 3
# Node ids of the pipeline (pipeline.pipeline.create_components) and the ExampleGen
# parameter that holds DatasetSpec.to_json().
EXAMPLE_GEN_NODE = "MovieRecExampleGen"
PUSHER_NODE = "MovieRecPusher"
_LINEAGE_DEPTH = 4  # executions between a Pusher and the ExampleGen that fed it
DATASET_PARAMETER = "dataset"
# TFX's ML-Metadata context types.
_PIPELINE_CONTEXT, _NODE_CONTEXT, _RUN_CONTEXT = "pipeline", "node", "pipeline_run"
_FINISHED = (
    metadata_store_pb2.Execution.COMPLETE,
    metadata_store_pb2.Execution.CACHED,
)


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


def _store(metadata_path: Path) -> metadata_store.MetadataStore | None:
    if not Path(metadata_path).is_file():
        return None
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(metadata_path)
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def _node_executions(store, pipeline_name: str, node_id: str) -> list:
    context = store.get_context_by_type_and_name(_NODE_CONTEXT, f"{pipeline_name}.{node_id}")
    return store.get_executions_by_context(context.id) if context is not None else []


def _producers(store, artifact_ids: list[int]) -> Iterator:
    events = store.get_events_by_artifact_ids(artifact_ids)
    ids = {e.execution_id for e in events if e.type == metadata_store_pb2.Event.OUTPUT}
    return iter(store.get_executions_by_id(sorted(ids)))


def finished_datasets(metadata_path: Path, pipeline_name: str) -> set[str]:
    """The datasets (``DatasetSpec.to_json()``) of every run that reached a finished Pusher.

    A run counts once its Pusher completed (pushed or not: an unblessed model was decided
    on) or was reused from cache; a run killed earlier does not, so running it again
    resumes it.

    Args:
      metadata_path: the SQLite ML-Metadata file; it need not exist.
      pipeline_name: the pipeline's name (``PipelineConfig.pipeline_name``).
    """
    store = _store(metadata_path)
    if store is None:
        return set()
    pushes = [
        e.id
        for e in _node_executions(store, pipeline_name, PUSHER_NODE)
        if e.last_known_state in _FINISHED
    ]
    if not pushes:
        return set()
    example_gens = {e.id for e in _node_executions(store, pipeline_name, EXAMPLE_GEN_NODE)}
    datasets, frontier, visited = set(), pushes, set(pushes)
    # Up the lineage (Pusher <- servables <- examples <- ExampleGen), a few steps at most.
    for _ in range(_LINEAGE_DEPTH):
        consumed = {
            e.artifact_id
            for e in store.get_events_by_execution_ids(frontier)
            if e.type == metadata_store_pb2.Event.INPUT
        }
        frontier = []
        for execution in _producers(store, sorted(consumed)) if consumed else ():
            if execution.id in example_gens:
                if DATASET_PARAMETER in execution.custom_properties:
                    datasets.add(execution.custom_properties[DATASET_PARAMETER].string_value)
            elif execution.id not in visited:
                visited.add(execution.id)
                frontier.append(execution.id)
        if not frontier:
            break
    return datasets


def last_run_states(metadata_path: Path, pipeline_name: str) -> dict[str, str]:
    """Node id -> state (``"COMPLETE"``, ``"CACHED"``, ...) in the pipeline's latest run."""
    store = _store(metadata_path)
    pipeline = store and store.get_context_by_type_and_name(_PIPELINE_CONTEXT, pipeline_name)
    if pipeline is None:
        return {}
    executions = store.get_executions_by_context(pipeline.id)
    if not executions:
        return {}
    types = {t: store.get_context_type(t).id for t in (_NODE_CONTEXT, _RUN_CONTEXT)}
    newest = max(executions, key=lambda e: e.id)
    run = next(
        c for c in store.get_contexts_by_execution(newest.id) if c.type_id == types[_RUN_CONTEXT]
    )
    prefix = f"{pipeline_name}."
    states = {}
    for execution in sorted(store.get_executions_by_context(run.id), key=lambda e: e.id):
        for context in store.get_contexts_by_execution(execution.id):
            if context.type_id == types[_NODE_CONTEXT] and context.name.startswith(prefix):
                state = metadata_store_pb2.Execution.State.Name(execution.last_known_state)
                states[context.name[len(prefix) :]] = state
    return states


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
        trainer_config = launch.trainer_config(args)
    except ValueError as e:
        print(f"movierec: invalid option: {e}", file=sys.stderr)
        return 2
    try:
        lock = acquire_lock(env.workdir)
    except RetrainLocked as e:
        print(f"movierec: {e}; not starting a second one", file=sys.stderr)
        return LOCKED_EXIT
    try:
        return _retrain(args, env.workdir, trainer_config, lock, out)
    finally:
        os.close(lock)


def _retrain(args, workdir: Path, trainer_config, lock: int, out) -> int:
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
    run_id = time.strftime("%Y%m%d-%H%M%S")
    run_dir = workdir / "runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    config = launch.pipeline_config(
        args, workdir, dataset, trainer_config, warm_start_from=args.warm_start
    )
    print(
        f"movierec: retraining on spans {where} (window {args.window}, warm start: "
        f"{args.warm_start}; log: {run_dir / 'pipeline.log'})",
        file=out,
        flush=True,
    )
    outcome = launch.run_child(config, workdir, run_dir, out, ("--enable-cache",), pass_fds=(lock,))
    if outcome is None:
        return 1
    results, durations, total = outcome
    states = last_run_states(metadata_path, PIPELINE_NAME)
    print_retrain(states, results.get("training"), out)
    launch.print_results(results, out)
    summary = {
        "run_id": run_id,
        "spans": list(dataset.spans),
        "dataset": json.loads(dataset.to_json()),
        "config": config_to_dict(config),
        "seconds_total": total,
        "seconds_per_component": durations,
        "component_states": states,
        "warm_start": results.get("training", {}).get("warm_start"),
        "evaluation": results.get("evaluation"),
        "blessed": bool(results.get("evaluation", {}).get("blessed")),
        "push": results.get("push"),
        "report": results.get("report"),
        "log": str(run_dir / "pipeline.log"),
    }
    summary_path = run_dir / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=2))
    print(f"\nRun summary: {summary_path}", file=out)
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
        default="movielens-latest",
        help="what each span holds: ratings.csv + movies.csv, or ml-100k's u.data/u.item/u.user",
    )
    retrain_parser.add_argument(
        "--window", type=int, default=3, help="how many of the latest spans to train on"
    )
    retrain_parser.add_argument(
        "--warm-start",
        choices=WARM_START_SOURCES,
        default="latest_blessed",
        help="initial weights: the latest blessed model's (ids it knows), or fresh",
    )
    retrain_parser.add_argument(
        "--force", action="store_true", help="run even when these spans were already done"
    )
    retrain_parser.add_argument(
        "--max-reject-fraction",
        type=float,
        default=0.05,
        help="stop before training when more rating rows than this are rejected",
    )
    launch.add_training_options(retrain_parser)
    return retrain_parser
