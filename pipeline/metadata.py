"""Reads of the pipeline's ML-Metadata store: artifacts, executions, lineage.

``pipeline.local_runner`` reads a finished run's results with :func:`collect_results`;
``pipeline.retrain`` asks which datasets already reached a finished Pusher
(:func:`finished_datasets`) and what each component of the latest run did
(:func:`last_run_states`). Light on purpose (ML-Metadata's client, no TFX or TensorFlow at
import), so ``retrain``'s "nothing new" check takes well under a second; every read opens
the SQLite store read-only.
"""

import json
import os
from pathlib import Path

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

# Node ids of the pipeline (pipeline.pipeline.create_components) and the ExampleGen
# parameter that holds DatasetSpec.to_json().
EXAMPLE_GEN_NODE = "MovieRecExampleGen"
PUSHER_NODE = "MovieRecPusher"
DATASET_PARAMETER = "dataset"
_LINEAGE_DEPTH = 4  # executions between a Pusher and the ExampleGen that fed it
# TFX's ML-Metadata context types.
_PIPELINE_CONTEXT, _NODE_CONTEXT, _RUN_CONTEXT = "pipeline", "node", "pipeline_run"
_FINISHED = (
    metadata_store_pb2.Execution.COMPLETE,
    metadata_store_pb2.Execution.CACHED,
)


def open_store(metadata_path: str | os.PathLike) -> metadata_store.MetadataStore | None:
    """The SQLite store at ``metadata_path``, read-only; None when the file does not exist."""
    if not Path(metadata_path).is_file():
        return None
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(metadata_path)
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


# Artifacts.


def latest_artifact(store, type_name: str):
    """The newest artifact of a type, or None."""
    artifacts = store.get_artifacts_by_type(type_name)
    return max(artifacts, key=lambda a: a.id) if artifacts else None


def latest_examples(store):
    """The newest rating Examples (ExampleGen's ``examples``; the catalogue has no rows)."""
    rated = [
        a for a in store.get_artifacts_by_type("Examples") if "num_rows" in a.custom_properties
    ]
    return max(rated, key=lambda a: a.id) if rated else None


def ingest_summary(examples) -> dict:
    """What ExampleGen read: ``{"rows", "train", "eval", "below_implicit_threshold",
    "rejects": {reason: count}, "rejects_file"}`` from its custom properties."""
    from data.ingest import REJECTS_FILE

    props = {
        k: v.int_value for k, v in examples.custom_properties.items() if v.HasField("int_value")
    }
    prefix = "num_rejects_"
    return {
        "rows": props.get("num_rows", 0),
        "train": props.get("num_train", 0),
        "eval": props.get("num_eval", 0),
        "below_implicit_threshold": props.get("num_below_implicit_threshold", 0),
        "rejects": {k[len(prefix) :]: v for k, v in props.items() if k.startswith(prefix)},
        "rejects_file": os.path.join(examples.uri, REJECTS_FILE),
    }


def collect_results(metadata_path: str | os.PathLike) -> dict:
    """Reads the latest evaluation, blessing and push of the pipeline from ML-Metadata.

    Returns:
      ``{"ingest": ..., "evaluation": ..., "report": path, "push": {...}, "model_uri": path,
      "servables_uri": path, "training": training.json, "refit_training": the refit
      Trainer's training.json}``; keys are missing for components that did not produce an
      output.
    """
    # The components' file names; imported here, as those modules load TensorFlow.
    from components.evaluator import METRICS_FILE, REPORT_FILE
    from components.pusher import PUSH_FILE
    from trainer.run import TRAINING_SUMMARY

    store = open_store(metadata_path)
    result = {}
    if store is None:
        return result
    evaluation = latest_artifact(store, "ModelEvaluation")
    if evaluation is not None:
        with open(os.path.join(evaluation.uri, METRICS_FILE)) as f:
            result["evaluation"] = json.load(f)
        result["report"] = os.path.join(evaluation.uri, REPORT_FILE)
    pushed = latest_artifact(store, "PushedModel")
    if pushed is not None:
        with open(os.path.join(pushed.uri, PUSH_FILE)) as f:
            result["push"] = json.load(f)
    examples = latest_examples(store)
    if examples is not None:
        result["ingest"] = ingest_summary(examples)
    models = store.get_artifacts_by_type("Model")
    trained = [a for a in models if "trained_model_uri" not in a.custom_properties]
    servables = [a for a in models if "trained_model_uri" in a.custom_properties]
    if trained:
        result["model_uri"] = max(trained, key=lambda a: a.id).uri
    if servables:
        result["servables_uri"] = max(servables, key=lambda a: a.id).uri
    # The evaluated model's training.json, and the refit's when the run refit it.
    for model_run in sorted(store.get_artifacts_by_type("ModelRun"), key=lambda a: -a.id):
        path = os.path.join(model_run.uri, TRAINING_SUMMARY)
        if not os.path.exists(path):
            continue
        with open(path) as f:
            training = json.load(f)
        key = "refit_training" if "refit_of" in training else "training"
        result.setdefault(key, training)
        if "training" in result:
            break
    return result


# Executions and lineage.


def node_executions(store, pipeline_name: str, node_id: str) -> list:
    """Every execution of one pipeline node."""
    context = store.get_context_by_type_and_name(_NODE_CONTEXT, f"{pipeline_name}.{node_id}")
    return store.get_executions_by_context(context.id) if context is not None else []


def producers(store, artifact_ids: list[int]) -> list:
    """The executions that output any of ``artifact_ids``."""
    events = store.get_events_by_artifact_ids(artifact_ids)
    ids = {e.execution_id for e in events if e.type == metadata_store_pb2.Event.OUTPUT}
    return store.get_executions_by_id(sorted(ids))


def finished_datasets(metadata_path: str | os.PathLike, pipeline_name: str) -> set[str]:
    """The datasets (``DatasetSpec.to_json()``) of every run that reached a finished Pusher.

    A run counts once its Pusher completed (pushed or not: an unblessed model was decided
    on) or was reused from cache; a run killed earlier does not, so running it again
    resumes it.

    Args:
      metadata_path: the SQLite ML-Metadata file; it need not exist.
      pipeline_name: the pipeline's name (``PipelineConfig.pipeline_name``).
    """
    store = open_store(metadata_path)
    if store is None:
        return set()
    pushes = [
        e.id
        for e in node_executions(store, pipeline_name, PUSHER_NODE)
        if e.last_known_state in _FINISHED
    ]
    if not pushes:
        return set()
    example_gens = {e.id for e in node_executions(store, pipeline_name, EXAMPLE_GEN_NODE)}
    datasets, frontier, visited = set(), pushes, set(pushes)
    # Up the lineage (Pusher <- servables <- examples <- ExampleGen), a few steps at most.
    for _ in range(_LINEAGE_DEPTH):
        consumed = {
            e.artifact_id
            for e in store.get_events_by_execution_ids(frontier)
            if e.type == metadata_store_pb2.Event.INPUT
        }
        frontier = []
        for execution in producers(store, sorted(consumed)) if consumed else ():
            if execution.id in example_gens:
                if DATASET_PARAMETER in execution.custom_properties:
                    datasets.add(execution.custom_properties[DATASET_PARAMETER].string_value)
            elif execution.id not in visited:
                visited.add(execution.id)
                frontier.append(execution.id)
        if not frontier:
            break
    return datasets


def last_run_states(metadata_path: str | os.PathLike, pipeline_name: str) -> dict[str, str]:
    """Node id -> state (``"COMPLETE"``, ``"CACHED"``, ...) in the pipeline's latest run."""
    store = open_store(metadata_path)
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
