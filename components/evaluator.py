"""Evaluator component: the served lists' metrics, baselines, slices, blessing, HTML report.

The pipeline wires ``MovieRecEvaluator`` after the servable builder (and, when one exists,
the latest blessed model from ML-Metadata through a Resolver). Its executor unpacks artifacts
and calls ``evaluation.evaluate.evaluate``, which measures exactly what a user receives
(``evaluation.scoring``: every eval user served through ``serving.recommender``, the code
behind ``/v1/recommend``) beside baselines on the same split with the same metric code.
"""

import json
import os

import tensorflow as tf
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types.standard_artifacts import Examples, Model, ModelBlessing, ModelEvaluation, ModelRun
from tfx.utils import path_utils

from evaluation import evaluation_data
from evaluation.blessing import parse_thresholds
from evaluation.evaluate import evaluate, ranking_stage
from publish import servables as servables_lib
from serving import names
from trainer.run import TRAINING_SUMMARY

METRICS_FILE = "metrics.json"
REPORT_FILE = "report.html"
BLESSED_FILE = "BLESSED"
NOT_BLESSED_FILE = "NOT_BLESSED"
# Property names of the stock TFX Evaluator, read by LatestBlessedModelStrategy.
BLESSED_PROPERTY = "blessed"
CURRENT_MODEL_ID_PROPERTY = "current_model_id"
CURRENT_MODEL_PROPERTY = "current_model"


def _read_training_summary(model_run: ModelRun | None) -> dict | None:
    if model_run is None:
        return None
    path = os.path.join(model_run.uri, TRAINING_SUMMARY)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


PREVIOUS_SERVABLES = "previous_servables"


@component
def MovieRecEvaluator(  # noqa: N802 (TFX component names are classes)
    examples: InputArtifact[Examples],
    catalogue: InputArtifact[Examples],
    servables: InputArtifact[Model],
    evaluation: OutputArtifact[ModelEvaluation],
    blessing: OutputArtifact[ModelBlessing],
    model_run: InputArtifact[ModelRun] = None,
    baseline_model: InputArtifact[Model] = None,
    thresholds: Parameter[str] = "[]",
    max_relative_regression: Parameter[float] = 0.01,
    index_kind: Parameter[str] = names.INDEX_SCANN,
    retrieval_k: Parameter[int] = names.DEFAULT_RETRIEVAL_K,
):
    """Writes ``metrics.json`` and ``report.html`` to ``evaluation``, BLESSED/NOT_BLESSED
    to ``blessing``. The previous blessed model (``baseline_model``, a trained model) is
    built into servables on this run's data first, so both are served the same way."""
    from evaluation import report  # matplotlib only loads where a report is written

    data = evaluation_data.EvaluationData.read(examples.uri, catalogue.uri)
    previous_dir = None
    if baseline_model is not None:
        previous_dir = os.path.join(evaluation.uri, PREVIOUS_SERVABLES)
        servables_lib.build_servables(
            path_utils.serving_model_path(baseline_model.uri),
            examples.uri,
            catalogue.uri,
            previous_dir,
            index_kind=index_kind,
            retrieval_k=retrieval_k,
        )
    result = evaluate(
        servables_dir=servables.uri,
        data=data,
        thresholds=parse_thresholds(thresholds),
        previous_servables_dir=previous_dir,
        max_relative_regression=max_relative_regression,
    )
    split = examples.get_string_custom_property("split_config")
    result["split"] = json.loads(split) if split else None
    training = _read_training_summary(model_run)
    result["training_history"] = training.get("history") if training else None
    result["ranking_stage"] = ranking_stage(training, result)
    trained_id = servables.get_int_custom_property("trained_model_id")
    tf.io.gfile.makedirs(evaluation.uri)
    with tf.io.gfile.GFile(os.path.join(evaluation.uri, METRICS_FILE), "w") as f:
        json.dump(result, f, indent=2)
    report.write_report(result, os.path.join(evaluation.uri, REPORT_FILE))
    tf.io.gfile.makedirs(blessing.uri)
    name = BLESSED_FILE if result["blessed"] else NOT_BLESSED_FILE
    with tf.io.gfile.GFile(os.path.join(blessing.uri, name), "w") as f:
        f.write("\n".join(result["reasons"]) + "\n")
    blessing.set_int_custom_property(BLESSED_PROPERTY, int(result["blessed"]))
    blessing.set_string_custom_property("reasons", "; ".join(result["reasons"]))
    # The blessing names the trained model (what the Resolver hands to the next run) and
    # the servables that were measured (what the Pusher copies).
    blessing.set_string_custom_property(
        CURRENT_MODEL_PROPERTY, servables.get_string_custom_property("trained_model_uri")
    )
    blessing.set_int_custom_property(CURRENT_MODEL_ID_PROPERTY, trained_id)
    blessing.set_string_custom_property("servables_uri", servables.uri)
    for key, value in result["model"].items():
        evaluation.set_float_custom_property(key, value)
