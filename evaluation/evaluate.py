"""The evaluation of a served model: its lists' metrics beside baselines, slices and blessing.

The Evaluator component (``components/evaluator.py``) calls :func:`evaluate`, a plain
function the tests call directly. The model is measured on exactly what a user receives
(``evaluation.scoring``); baselines are ranked over the whole catalogue on the same split with
the same metric code.
"""

from collections.abc import Sequence

import numpy as np

from evaluation import baselines, evaluation_data, metrics
from evaluation.blessing import Threshold, check_regression, check_thresholds
from evaluation.scoring import serve_eval_users


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


def ranking_stage(training: dict | None, result: dict) -> dict:
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
