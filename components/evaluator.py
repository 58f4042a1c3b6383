"""Evaluator component: full-catalogue metrics, baselines, slices, blessing, HTML report.

The pipeline wires ``MovieRecEvaluator`` after the Trainer (and, when one exists, the latest
blessed model from ML-Metadata through a Resolver). Its executor unpacks artifacts and calls
:func:`evaluate`, a plain function the tests call directly. Models are measured through their
exported signatures, so the numbers describe what is served; baselines go through the same
ranking code on the same split.
"""

import json
import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types.standard_artifacts import Examples, Model, ModelBlessing, ModelEvaluation, ModelRun
from tfx.utils import path_utils

from components import baselines, evaluation_data, examples_io, metrics
from components.blessing import Threshold, check_regression, check_thresholds, parse_thresholds
from trainer import features
from trainer.run import TRAINING_SUMMARY

METRICS_FILE = "metrics.json"
REPORT_FILE = "report.html"
BLESSED_FILE = "BLESSED"
NOT_BLESSED_FILE = "NOT_BLESSED"
# Property names of the stock TFX Evaluator, read by LatestBlessedModelStrategy.
BLESSED_PROPERTY = "blessed"
CURRENT_MODEL_ID_PROPERTY = "current_model_id"
CURRENT_MODEL_PROPERTY = "current_model"
_BATCH = 8192


def _batched(fn, output: str, **columns: np.ndarray) -> np.ndarray:
    n = len(next(iter(columns.values())))
    parts = [
        fn(**{k: tf.constant(list(v[lo : lo + _BATCH])) for k, v in columns.items()})[
            output
        ].numpy()
        for lo in range(0, n, _BATCH)
    ]
    return np.concatenate(parts)


def score_saved_model(model_dir: str, data: evaluation_data.EvaluationData):
    """The exported model's metrics inputs: ranks of the eval pairs, per-row predictions.

    Returns:
      ``(Ranks, [n_eval] predicted ratings)``.
    """
    loaded = tf.saved_model.load(model_dir)
    user_emb = _batched(
        loaded.signatures[features.SIG_USER_EMBEDDING], "embedding", user_id=data.user_ids
    )
    movie_emb = _batched(
        loaded.signatures[features.SIG_MOVIE_EMBEDDING], "embedding", movie_id=data.movie_ids
    )
    ranks = metrics.rank_eval_pairs(
        metrics.factorized_scores(user_emb, movie_emb),
        data.eval_users,
        data.eval_movies,
        data.seen,
        len(data.movie_ids),
    )
    predicted = _batched(
        loaded.signatures[features.SIG_RATING],
        "rating",
        user_id=data.user_ids[data.eval_users],
        movie_id=data.movie_ids[data.eval_movies],
    )
    return ranks, predicted


def _scorer_metrics(ranks, data, predicted=None) -> dict[str, float]:
    result = metrics.ranking_metrics(ranks, data.eval_users, data.train_counts)
    if predicted is not None:
        result.update(metrics.rating_metrics(predicted, data.eval_ratings))
    return result


def slice_metrics(
    data: evaluation_data.EvaluationData,
    hits: dict[str, np.ndarray],
    squared_errors: dict[str, np.ndarray],
) -> dict:
    """Recall@10 and RMSE per slice of the eval pairs.

    Args:
      data: the evaluation data (slice labels per eval pair).
      hits: scorer -> ``[n]`` bool, held-out pair in the seen-excluded top 10.
      squared_errors: scorer -> ``[n]`` squared rating errors.

    Returns:
      ``{family: {slice: {"count": n, scorer: {"recall@10"|"rmse": value}}}}``.
    """
    out = {}
    for family, labels in data.slice_labels().items():
        out[family] = {}
        for label in evaluation_data.ordered_labels(family, labels):
            mask = labels == label
            entry = {"count": int(mask.sum())}
            for scorer, hit in hits.items():
                entry.setdefault(scorer, {})["recall@10"] = float(hit[mask].mean())
            for scorer, err in squared_errors.items():
                entry.setdefault(scorer, {})["rmse"] = float(np.sqrt(err[mask].mean()))
            out[family][label] = entry
    return out


def evaluate(
    model_dir: str,
    data: evaluation_data.EvaluationData,
    thresholds: Sequence[Threshold],
    previous_model_dir: str | None = None,
    max_relative_regression: float = 0.01,
) -> dict:
    """Scores the exported model, the baselines and the previous blessed model; blesses.

    Args:
      model_dir: the trained SavedModel (signatures from ``trainer.export``).
      data: train/eval/catalogue columns mapped to rows.
      thresholds: absolute blessing conditions.
      previous_model_dir: the latest blessed model's SavedModel, if any; the new model must
        not regress on the thresholded metrics by more than ``max_relative_regression``.
      max_relative_regression: tolerated relative regression against the previous model.

    Returns:
      A JSON-friendly dict (the ``metrics.json`` the report and ``movierec run`` read).
    """
    ranks, predicted = score_saved_model(model_dir, data)
    seen = data.seen
    num_movies = len(data.movie_ids)
    pop_ranks = metrics.rank_eval_pairs(
        baselines.popularity_scores(data.train_counts),
        data.eval_users,
        data.eval_movies,
        seen,
        num_movies,
    )
    ease = baselines.fit_ease(seen)
    ease_ranks = metrics.rank_eval_pairs(
        baselines.ease_scores(seen, ease), data.eval_users, data.eval_movies, seen, num_movies
    )
    bias = baselines.fit_biases(
        data.train_users, data.train_movies, data.train_ratings, len(data.user_ids), num_movies
    )
    bias_pred = baselines.predict_biases(bias, data.eval_users, data.eval_movies)
    model_metrics = _scorer_metrics(ranks, data, predicted)
    baseline_metrics = {
        "popularity": _scorer_metrics(pop_ranks, data),
        "ease": _scorer_metrics(ease_ranks, data),
        "bias": metrics.rating_metrics(bias_pred, data.eval_ratings),
    }
    all_ranks = {"model": ranks, "popularity": pop_ranks, "ease": ease_ranks}
    squared_errors = {
        "model": (predicted - data.eval_ratings) ** 2,
        "bias": (bias_pred - data.eval_ratings) ** 2,
    }
    blessed, reasons = check_thresholds(model_metrics, baseline_metrics, thresholds)
    previous = None
    if previous_model_dir is not None:
        prev_ranks, prev_pred = score_saved_model(previous_model_dir, data)
        previous = {
            "uri": previous_model_dir,
            "metrics": _scorer_metrics(prev_ranks, data, prev_pred),
        }
        all_ranks["previous_model"] = prev_ranks
        squared_errors["previous_model"] = (prev_pred - data.eval_ratings) ** 2
        ok, more = check_regression(
            model_metrics, previous["metrics"], thresholds, max_relative_regression
        )
        blessed &= ok
        reasons += more
    ratios = {
        f"{name}/{k}": model_metrics[k] / v
        for name, bm in baseline_metrics.items()
        for k, v in bm.items()
        if k != "num_eval_pairs" and k in model_metrics and v
    }
    return {
        "model": model_metrics,
        "baselines": baseline_metrics,
        "previous_model": previous,
        "ratios": ratios,
        "curves": {
            "ks": list(metrics.CURVE_KS),
            "recall": {n: metrics.recall_curve(r.rank_excl) for n, r in all_ranks.items()},
        },
        "slices": slice_metrics(
            data, {n: r.rank_excl < 10 for n, r in all_ranks.items()}, squared_errors
        ),
        "blessed": bool(blessed),
        "reasons": reasons,
        "num_train": int(len(data.train_users)),
        "num_eval": int(len(data.eval_users)),
        "num_catalogue": int(num_movies),
    }


def _read_training_history(model_run: ModelRun | None) -> dict | None:
    if model_run is None:
        return None
    path = os.path.join(model_run.uri, TRAINING_SUMMARY)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f).get("history")


@component
def MovieRecEvaluator(  # noqa: N802 (TFX component names are classes)
    examples: InputArtifact[Examples],
    catalogue: InputArtifact[Examples],
    model: InputArtifact[Model],
    evaluation: OutputArtifact[ModelEvaluation],
    blessing: OutputArtifact[ModelBlessing],
    model_run: InputArtifact[ModelRun] = None,
    baseline_model: InputArtifact[Model] = None,
    thresholds: Parameter[str] = "[]",
    max_relative_regression: Parameter[float] = 0.01,
):
    """Writes ``metrics.json`` and ``report.html`` to ``evaluation``, BLESSED/NOT_BLESSED
    to ``blessing``."""
    from components import report  # matplotlib only loads where a report is written

    data = evaluation_data.EvaluationData.from_columns(
        train=examples_io.read_columns(
            examples.uri, features.TRAIN_SPLIT, evaluation_data.RATING_KEYS
        ),
        eval_=examples_io.read_columns(
            examples.uri, features.EVAL_SPLIT, evaluation_data.EVAL_KEYS
        ),
        catalogue_ids=examples_io.read_columns(
            catalogue.uri, features.CATALOGUE_SPLIT, (features.MOVIE_ID,)
        )[features.MOVIE_ID],
    )
    result = evaluate(
        model_dir=path_utils.serving_model_path(model.uri),
        data=data,
        thresholds=parse_thresholds(thresholds),
        previous_model_dir=(
            path_utils.serving_model_path(baseline_model.uri) if baseline_model else None
        ),
        max_relative_regression=max_relative_regression,
    )
    split = examples.get_string_custom_property("split_config")
    result["split"] = json.loads(split) if split else None
    result["training_history"] = _read_training_history(model_run)
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
    blessing.set_string_custom_property(CURRENT_MODEL_PROPERTY, model.uri)
    blessing.set_int_custom_property(CURRENT_MODEL_ID_PROPERTY, model.id)
    for key, value in result["model"].items():
        evaluation.set_float_custom_property(key, value)
