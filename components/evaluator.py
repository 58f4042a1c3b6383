"""Evaluator component: full-catalogue top-K and rating metrics, baselines, blessing.

The pipeline wires ``MovieRecEvaluator`` after the Trainer. Its executor unpacks artifacts
and calls :func:`evaluate`, a plain function the tests call directly. The model is measured
through its exported signatures, so the numbers describe what is served.
"""

import dataclasses
import json
import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types.standard_artifacts import Examples, Model, ModelBlessing, ModelEvaluation
from tfx.utils import path_utils

from components import baselines, examples_io, metrics
from trainer import features

METRICS_FILE = "metrics.json"
BLESSED_FILE = "BLESSED"
NOT_BLESSED_FILE = "NOT_BLESSED"
BLESSED_PROPERTY = "blessed"  # the TFX Evaluator's property name, read by pushers
_EMBED_BATCH = 8192


@dataclasses.dataclass(frozen=True)
class Threshold:
    """One blessing condition on a model metric.

    The bound is ``value`` when ``baseline`` is None, else ``value x`` that baseline's metric
    (e.g. recall@10 >= 1.1 x popularity's).

    Attributes:
      metric: a key of the model metrics, e.g. ``"recall@10"`` or ``"rmse"``.
      direction: ``"min"`` (metric must be >= bound) or ``"max"`` (<= bound).
      value: the bound, or the ratio to the baseline's metric.
      baseline: None, or a baseline name (``"popularity"``, ``"bias"``).
    """

    metric: str
    direction: str
    value: float
    baseline: str | None = None

    def __post_init__(self):
        if self.direction not in ("min", "max"):
            raise ValueError(f"threshold on {self.metric}: direction must be min or max")


def parse_thresholds(text: str) -> list[Threshold]:
    """Parses the JSON list of thresholds the pipeline passes to the component.

    Args:
      text: e.g. ``'[{"metric": "recall@10", "direction": "min", "value": 1.1,
        "baseline": "popularity"}]'``.

    Raises:
      ValueError: naming the entry that is malformed.
    """
    try:
        entries = json.loads(text or "[]")
        return [Threshold(**e) for e in entries]
    except (TypeError, json.JSONDecodeError) as e:
        raise ValueError(f"evaluator thresholds are malformed ({e}): {text!r}") from e


def check_thresholds(
    model_metrics: dict[str, float],
    baseline_metrics: dict[str, dict[str, float]],
    thresholds: Sequence[Threshold],
) -> tuple[bool, list[str]]:
    """Returns (blessed, one reason line per threshold naming the metric and both values)."""
    blessed, reasons = True, []
    for t in thresholds:
        if t.metric not in model_metrics:
            raise ValueError(f"threshold on unknown metric {t.metric!r}; known: {sorted(model_metrics)}")
        value = model_metrics[t.metric]
        bound, against = t.value, f"{t.value:.4f}"
        if t.baseline is not None:
            base = baseline_metrics.get(t.baseline, {}).get(t.metric)
            if base is None:
                raise ValueError(f"threshold on {t.metric}: baseline {t.baseline!r} has no such metric")
            bound = t.value * base
            against = f"{t.value:g} x {t.baseline} {base:.4f} = {bound:.4f}"
        ok = value >= bound if t.direction == "min" else value <= bound
        op = ">=" if t.direction == "min" else "<="
        verdict = "pass" if ok else "FAIL"
        reasons.append(f"{verdict}: {t.metric} {value:.4f} {op} {against}")
        blessed &= ok
    return blessed, reasons


def _call_batched(fn, key: str, ids: np.ndarray, output: str) -> np.ndarray:
    out = []
    for lo in range(0, len(ids), _EMBED_BATCH):
        out.append(fn(**{key: tf.constant(list(ids[lo : lo + _EMBED_BATCH]))})[output].numpy())
    return np.concatenate(out) if out else np.zeros((0,))


def _rows(ids: np.ndarray, row_of: dict[str, int], what: str) -> np.ndarray:
    missing = sorted({i for i in ids if i not in row_of})
    if missing:
        raise ValueError(f"{len(missing)} {what} ids of the ratings are not in the catalogue, e.g. {missing[:5]}")
    return np.array([row_of[i] for i in ids], dtype=np.int64)


def evaluate(
    model_dir: str,
    train: dict[str, np.ndarray],
    eval_: dict[str, np.ndarray],
    catalogue_ids: np.ndarray,
    thresholds: Sequence[Threshold],
    ks: Sequence[int] = metrics.DEFAULT_KS,
) -> dict:
    """Scores the exported model and the baselines on the eval split; decides the blessing.

    Args:
      model_dir: the trained SavedModel (signatures from ``trainer.export``).
      train: ``user_id``, ``movie_id`` (``[n]`` str) and ``rating`` of the train split.
      eval_: the same columns of the eval split.
      catalogue_ids: ``[num_movies]`` str ids of every movie (the candidates).
      thresholds: blessing conditions.
      ks: top-K cut-offs.

    Returns:
      A JSON-friendly dict: ``model``, ``baselines`` (name -> metrics), ``ratios`` (metric
      -> model / baseline), ``blessed`` and ``reasons``.
    """
    loaded = tf.saved_model.load(model_dir)
    movie_row = {m: i for i, m in enumerate(catalogue_ids)}
    users = np.array(sorted(set(train[features.USER_ID]) | set(eval_[features.USER_ID])), dtype=object)
    user_row = {u: i for i, u in enumerate(users)}
    tr_u = _rows(train[features.USER_ID], user_row, "user")
    tr_m = _rows(train[features.MOVIE_ID], movie_row, "movie")
    ev_u = _rows(eval_[features.USER_ID], user_row, "user")
    ev_m = _rows(eval_[features.MOVIE_ID], movie_row, "movie")
    seen = metrics.seen_matrix(tr_u, tr_m, len(users), len(catalogue_ids))

    user_emb = _call_batched(loaded.signatures[features.SIG_USER_EMBEDDING], features.USER_ID, users, "embedding")
    movie_emb = _call_batched(loaded.signatures[features.SIG_MOVIE_EMBEDDING], features.MOVIE_ID, catalogue_ids, "embedding")
    rating_fn = loaded.signatures[features.SIG_RATING]
    predicted = np.concatenate(
        [
            rating_fn(
                user_id=tf.constant(list(eval_[features.USER_ID][lo : lo + _EMBED_BATCH])),
                movie_id=tf.constant(list(eval_[features.MOVIE_ID][lo : lo + _EMBED_BATCH])),
            )["rating"].numpy()
            for lo in range(0, len(ev_u), _EMBED_BATCH)
        ]
    )
    model_metrics = metrics.top_k_metrics(user_emb, movie_emb, ev_u, ev_m, seen, ks)
    model_metrics.update(metrics.rating_metrics(predicted, eval_[features.RATING]))

    pop_u, pop_m = baselines.popularity_embeddings(tr_m, len(users), len(catalogue_ids))
    bias = baselines.fit_biases(tr_u, tr_m, train[features.RATING], len(users), len(catalogue_ids))
    baseline_metrics = {
        "popularity": metrics.top_k_metrics(pop_u, pop_m, ev_u, ev_m, seen, ks),
        "bias": metrics.rating_metrics(baselines.predict_biases(bias, ev_u, ev_m), eval_[features.RATING]),
    }
    ratios = {
        f"{name}/{k}": model_metrics[k] / v
        for name, bm in baseline_metrics.items()
        for k, v in bm.items()
        if k != "num_eval_pairs" and v
    }
    blessed, reasons = check_thresholds(model_metrics, baseline_metrics, thresholds)
    return {
        "model": model_metrics,
        "baselines": baseline_metrics,
        "ratios": ratios,
        "blessed": blessed,
        "reasons": reasons,
        "num_train": int(len(tr_u)),
        "num_eval": int(len(ev_u)),
        "num_catalogue": int(len(catalogue_ids)),
    }


_RATING_KEYS = (features.USER_ID, features.MOVIE_ID, features.RATING)


@component
def MovieRecEvaluator(  # noqa: N802 (TFX component names are classes)
    examples: InputArtifact[Examples],
    catalogue: InputArtifact[Examples],
    model: InputArtifact[Model],
    evaluation: OutputArtifact[ModelEvaluation],
    blessing: OutputArtifact[ModelBlessing],
    thresholds: Parameter[str] = "[]",
):
    """Writes ``metrics.json`` to ``evaluation`` and BLESSED/NOT_BLESSED to ``blessing``."""
    result = evaluate(
        model_dir=path_utils.serving_model_path(model.uri),
        train=examples_io.read_columns(examples.uri, features.TRAIN_SPLIT, _RATING_KEYS),
        eval_=examples_io.read_columns(examples.uri, features.EVAL_SPLIT, _RATING_KEYS),
        catalogue_ids=examples_io.read_columns(
            catalogue.uri, features.CATALOGUE_SPLIT, (features.MOVIE_ID,)
        )[features.MOVIE_ID],
        thresholds=parse_thresholds(thresholds),
    )
    tf.io.gfile.makedirs(evaluation.uri)
    with tf.io.gfile.GFile(os.path.join(evaluation.uri, METRICS_FILE), "w") as f:
        json.dump(result, f, indent=2)
    tf.io.gfile.makedirs(blessing.uri)
    name = BLESSED_FILE if result["blessed"] else NOT_BLESSED_FILE
    with tf.io.gfile.GFile(os.path.join(blessing.uri, name), "w") as f:
        f.write("\n".join(result["reasons"]) + "\n")
    blessing.set_int_custom_property(BLESSED_PROPERTY, int(result["blessed"]))
    blessing.set_string_custom_property("reasons", "; ".join(result["reasons"]))
    blessing.set_string_custom_property("current_model", model.uri)
    blessing.set_int_custom_property("current_model_id", model.id)
    for key, value in result["model"].items():
        evaluation.set_float_custom_property(key, value)
