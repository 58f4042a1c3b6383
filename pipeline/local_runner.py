"""Runs the pipeline locally: LocalDagRunner, SQLite ML-Metadata, Beam DirectRunner.

``movierec run`` starts this module in a child process (``python -m pipeline.local_runner``)
with its output going to a log file, so TensorFlow and Beam noise stays out of the terminal.
It can also be run by hand with the same arguments.
"""

import argparse
import json
import os
import sys

from absl import logging
from tfx import v1 as tfx
from tfx.orchestration import metadata

from components.evaluator import METRICS_FILE, REPORT_FILE
from components.ingest import REJECTS_FILE
from components.pusher import PUSH_FILE
from pipeline.config import PipelineConfig, config_from_dict
from pipeline.pipeline import create_pipeline
from trainer.run import TRAINING_SUMMARY

# In-process Beam keeps start-up cheap for data of MovieLens size.
DEFAULT_BEAM_ARGS = ("--direct_running_mode=in_memory", "--direct_num_workers=1")


def _latest_artifact(store, type_name: str):
    artifacts = store.get_artifacts_by_type(type_name)
    return max(artifacts, key=lambda a: a.id) if artifacts else None


def _latest_examples(store):
    """The newest rating Examples (ExampleGen's ``examples``; the catalogue has no rows)."""
    rated = [
        a for a in store.get_artifacts_by_type("Examples") if "num_rows" in a.custom_properties
    ]
    return max(rated, key=lambda a: a.id) if rated else None


def ingest_summary(examples) -> dict:
    """What ExampleGen read: ``{"rows", "train", "eval", "below_implicit_threshold",
    "rejects": {reason: count}, "rejects_file"}`` from its custom properties."""
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


def collect_results(metadata_path: str) -> dict:
    """Reads the latest evaluation, blessing and push of the pipeline from ML-Metadata.

    Returns:
      ``{"ingest": ..., "evaluation": ..., "report": path, "push": {...}, "model_uri": path,
      "servables_uri": path, "training": training.json, "refit_training": the refit
      Trainer's training.json}``; keys are missing for components that did not produce an
      output.
    """
    config = tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path)
    result = {}
    with metadata.Metadata(config) as m:
        evaluation = _latest_artifact(m.store, "ModelEvaluation")
        if evaluation is not None:
            with open(os.path.join(evaluation.uri, METRICS_FILE)) as f:
                result["evaluation"] = json.load(f)
            result["report"] = os.path.join(evaluation.uri, REPORT_FILE)
        pushed = _latest_artifact(m.store, "PushedModel")
        if pushed is not None:
            with open(os.path.join(pushed.uri, PUSH_FILE)) as f:
                result["push"] = json.load(f)
        examples = _latest_examples(m.store)
        if examples is not None:
            result["ingest"] = ingest_summary(examples)
        models = m.store.get_artifacts_by_type("Model")
        trained = [a for a in models if "trained_model_uri" not in a.custom_properties]
        servables = [a for a in models if "trained_model_uri" in a.custom_properties]
        if trained:
            result["model_uri"] = max(trained, key=lambda a: a.id).uri
        if servables:
            result["servables_uri"] = max(servables, key=lambda a: a.id).uri
        # The evaluated model's training.json, and the refit's when the run refit it.
        for model_run in sorted(m.store.get_artifacts_by_type("ModelRun"), key=lambda a: -a.id):
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


def run(
    config: PipelineConfig,
    metadata_path: str,
    beam_args=DEFAULT_BEAM_ARGS,
    enable_cache: bool = False,
) -> dict:
    """Runs the whole pipeline and returns :func:`collect_results`.

    With ``enable_cache``, a component whose inputs and parameters match an execution
    recorded in ML-Metadata reuses its outputs instead of running (a rerun after a crash
    resumes where the first run stopped).
    """
    os.makedirs(os.path.dirname(os.path.abspath(metadata_path)), exist_ok=True)
    p = create_pipeline(
        config,
        beam_pipeline_args=beam_args,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            metadata_path
        ),
        enable_cache=enable_cache,
    )
    tfx.orchestration.LocalDagRunner().run(p)
    return collect_results(metadata_path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True, help="JSON file of a PipelineConfig")
    parser.add_argument("--metadata", required=True, help="SQLite ML-Metadata path")
    parser.add_argument("--results", required=True, help="where to write the results JSON")
    parser.add_argument(
        "--enable-cache", action="store_true", help="reuse outputs recorded in ML-Metadata"
    )
    args = parser.parse_args(argv)
    # INFO carries LocalDagRunner's "Component X is running/finished" lines that
    # `movierec run` follows in this process's log.
    logging.set_verbosity(logging.INFO)
    with open(args.config) as f:
        config = config_from_dict(json.load(f))
    results = run(config, args.metadata, enable_cache=args.enable_cache)
    with open(args.results, "w") as f:
        json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
