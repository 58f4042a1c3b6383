"""Evaluator component: the served lists' metrics, baselines, slices, blessing, HTML report.

The pipeline wires ``MovieRecEvaluator`` after the servable builder (and, when one exists,
the latest blessed model from ML-Metadata through a Resolver). Its executor unpacks artifacts
and calls :func:`evaluate`, a plain function the tests call directly. The model is measured
on exactly what a user receives: the servable SavedModels (``components.servables``) serve
every eval user through ``serving.recommender``, the code behind ``/v1/recommend``, with the
train split as the seen data. Baselines are ranked over the whole catalogue on the same split
with the same metric code.
"""

import json
import os
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import tensorflow as tf
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types.standard_artifacts import Examples, Model, ModelBlessing, ModelEvaluation, ModelRun
from tfx.utils import path_utils

from components import baselines, evaluation_data, examples_io, metrics
from components import servables as servables_lib
from components.blessing import Threshold, check_regression, check_thresholds, parse_thresholds
from serving import index as index_lib
from serving import names, recommender
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
_USER_BATCH = 256


def _rows(ids: np.ndarray, row_of: dict) -> np.ndarray:
    """Catalogue rows of ``[users, n]`` movie ids; "" (no movie) is -1."""
    flat = [row_of.get(m, -1) if m else -1 for m in ids.ravel()]
    return np.array(flat, np.int64).reshape(ids.shape)


def ranks_of_lists(
    lists: np.ndarray,
    list_users: np.ndarray,
    eval_users: np.ndarray,
    eval_movies: np.ndarray,
    num_movies: int,
    top_n: int = metrics.TOP_N,
) -> metrics.Ranks:
    """Where each held-out pair landed in the list its user was served.

    Args:
      lists: ``[u, n]`` catalogue rows, best first; -1 pads.
      list_users: ``[u]`` the user row of each list.
      eval_users, eval_movies: ``[p]`` the held-out pairs' rows.
      num_movies: catalogue size (the rank of a pair whose movie is not in its list).
      top_n: how much of each list counts for coverage.

    Returns:
      Ranks with ``rank_excl`` the position in the list (``num_movies`` when absent) and
      no seen-included counts (a served list has none).
    """
    u, n = lists.shape
    valid = lists >= 0
    rows = np.repeat(list_users, n)[valid.ravel()]
    position = sp.csr_matrix(
        (np.tile(np.arange(1, n + 1), u)[valid.ravel()], (rows, lists[valid])),
        shape=(int(max(list_users.max(initial=0), eval_users.max(initial=0))) + 1, num_movies),
    )
    found = np.asarray(position[eval_users, eval_movies]).ravel()
    rank = np.where(found > 0, found - 1, num_movies).astype(np.int64)
    return metrics.Ranks(None, rank, list_users, lists[:, : min(top_n, n)])


def serve_eval_users(servables_dir: str, data: evaluation_data.EvaluationData):
    """Serves every user with held-out pairs through ``serving.recommender``.

    The user gets the full candidate list in the served order (its first 10 are exactly
    what ``/v1/recommend`` returns for k=10), with the train split's seen data.

    Returns:
      ``(served Ranks, retrieval-order Ranks, [n_eval] predicted ratings)``.
    """
    rec = recommender.Recommender.from_saved_models(
        index_lib.load_saved_model(servables_lib.model_dir(servables_dir, names.RETRIEVAL)),
        tf.saved_model.load(servables_lib.model_dir(servables_dir, names.RANKING)),
    )
    users = np.unique(data.eval_users)
    row_of = {m: i for i, m in enumerate(data.movie_ids)}
    served, candidates = [], []
    for lo in range(0, len(users), _USER_BATCH):
        batch = users[lo : lo + _USER_BATCH]
        out = rec.recommend(list(data.user_ids[batch]), rec.k)
        served.append(_rows(out.movie_ids, row_of))
        candidates.append(_rows(out.candidates, row_of))
    num_movies = len(data.movie_ids)
    args = (users, data.eval_users, data.eval_movies, num_movies)
    served_ranks = ranks_of_lists(np.concatenate(served), *args)
    retrieval_ranks = ranks_of_lists(np.concatenate(candidates), *args)
    rate = rec.rate
    predicted = np.concatenate(
        [
            rate(
                user_id=tf.constant(list(data.user_ids[data.eval_users[lo : lo + 8192]])),
                movie_id=tf.constant(list(data.movie_ids[data.eval_movies[lo : lo + 8192]])),
            )["rating"].numpy()
            for lo in range(0, len(data.eval_users), 8192)
        ]
    )
    return served_ranks, retrieval_ranks, predicted


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
    servables_dir: str,
    data: evaluation_data.EvaluationData,
    thresholds: Sequence[Threshold],
    previous_servables_dir: str | None = None,
    max_relative_regression: float = 0.01,
) -> dict:
    """Scores the served lists of the servables, the baselines and the previous model; blesses.

    Args:
      servables_dir: the servable models (``components.servables.build_servables``).
      data: train/eval/catalogue columns mapped to rows.
      thresholds: absolute blessing conditions (on the served list's metrics).
      previous_servables_dir: the latest blessed model's servables, built on this run's
        data; the new model must not regress on the thresholded metrics by more than
        ``max_relative_regression``.
      max_relative_regression: tolerated relative regression against the previous model.

    Returns:
      A JSON-friendly dict (the ``metrics.json`` the report and ``movierec run`` read):
      ``model`` holds the served list's metrics (recall/ndcg/map at 10 and the coverage of
      the lists users get; at 50 and 100 the recall of the candidate set, the ceiling of the
      ranking stage), ``retrieval_order`` the same lists in retrieval order, ``baselines``
      each baseline's top lists.
    """
    served, retrieval_order, predicted = serve_eval_users(servables_dir, data)
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
    model_metrics = _scorer_metrics(served, data, predicted)
    baseline_metrics = {
        "popularity": _scorer_metrics(pop_ranks, data),
        "ease": _scorer_metrics(ease_ranks, data),
        "bias": metrics.rating_metrics(bias_pred, data.eval_ratings),
    }
    all_ranks = {
        "model": served,
        "retrieval_order": retrieval_order,
        "popularity": pop_ranks,
        "ease": ease_ranks,
    }
    squared_errors = {
        "model": (predicted - data.eval_ratings) ** 2,
        "bias": (bias_pred - data.eval_ratings) ** 2,
    }
    blessed, reasons = check_thresholds(model_metrics, baseline_metrics, thresholds)
    previous = None
    if previous_servables_dir is not None:
        prev_ranks, _, prev_pred = serve_eval_users(previous_servables_dir, data)
        previous = {
            "uri": previous_servables_dir,
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
        "retrieval_order": _scorer_metrics(retrieval_order, data),
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
    index_kind: Parameter[str] = index_lib.SCANN,
    retrieval_k: Parameter[int] = 100,
):
    """Writes ``metrics.json`` and ``report.html`` to ``evaluation``, BLESSED/NOT_BLESSED
    to ``blessing``. The previous blessed model (``baseline_model``, a trained model) is
    built into servables on this run's data first, so both are served the same way."""
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
    result["ranking_stage"] = _ranking_stage(training, result)
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


def _ranking_stage(training: dict | None, result: dict) -> dict:
    """How the served list is ordered, why, and what that gives on eval."""
    chosen = (training or {}).get("chosen", {})
    validation = (training or {}).get("validation", {}).get("reranker", {})
    served = bool(chosen.get("use_reranker", False))
    return {
        "served_order": "re-ranker" if served else "retrieval order",
        "validation": validation,
        "eval_recall@10": {
            "served": result["model"]["recall@10"],
            "retrieval_order": result["retrieval_order"]["recall@10"],
        },
    }
