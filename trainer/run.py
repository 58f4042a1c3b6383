"""TFX Trainer entry point: ``run_fn`` trains the joint model and exports it.

The Trainer component calls ``trainer.run.run_fn`` by module path. It parses the typed
config, reads the Transform output, chooses the model's settings on a validation cut of the
train split, refits on all of train (warm-started from the Trainer's base model when the
pipeline gives it one), and writes the serving SavedModel plus a ``training.json`` (config,
what was chosen and why, loss history, durations, what the warm start carried over) beside it
in the model run directory.

:func:`train` runs in two rounds over one recipe (:func:`_fit`):

1. on the train split minus the validation cut: the retrieval autoencoder's epochs (checked
   every ``validate_every`` epochs by NDCG@100 on the cut), EASE's penalty and the blend
   weight (NDCG@100), the rating model's epochs (RMSE on the cut), and the re-ranker
   (trained on the cut's labels of the retrieval candidates; kept only when its served
   recall@10 beats retrieval order's on users it was not trained on, two folds);
2. on all of train with those choices; the re-ranker's weights carry over (its features are
   standardised per user, so they do not depend on the round).
"""

import copy
import dataclasses
import json
import os
import tempfile
import time

import numpy as np
import scipy.sparse as sp
import tensorflow as tf
import tensorflow_transform as tft
from absl import logging

from trainer import data, distribute, ease, export, features, optimizers, selection, warm_start
from trainer.config import TrainerConfig
from trainer.model import HISTORY, RERANK_FEATURES, RERANK_LABEL, JointModel, movie_counts

TRAINING_SUMMARY = "training.json"
_K = 10  # the served list's length the re-ranker is judged on
_DEPTH = 100  # the list depth of the validation NDCG the other choices are made by
_PATIENCE = 5  # validation checks without improvement before a phase stops
_USER_BATCH = 1024
# Rating steps per call of Keras's compiled train function: a step of 1,024 ratings is short
# enough that the call's own cost was half of it (make bench ARGS=rating_steps: 2.2x at 1M/5M).
_RATING_STEPS_PER_EXECUTION = 16


@dataclasses.dataclass(frozen=True)
class Choices:
    """What round 1 chose for round 2.

    Attributes:
      retrieval_epochs: epochs of the autoencoder (when its search went by epochs).
      retrieval_steps: steps of the autoencoder when its search went by steps (more users
        than ``max_steps`` holds ``epochs`` of); 0 when it went by epochs.
      ease_lambda: EASE's ridge penalty.
      blend_weight: weight of the autoencoder in the blend.
      rating_epochs: epochs of the rating model.
      use_reranker: whether the re-ranker orders the served list.
      reranker_weights: the re-ranker's Dense kernel and bias.
    """

    retrieval_epochs: int
    ease_lambda: float
    blend_weight: float
    rating_epochs: int
    use_reranker: bool
    reranker_weights: list
    retrieval_steps: int = 0  # 0: models exported before the step budget went by epochs

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["reranker_weights"] = [np.asarray(w).tolist() for w in self.reranker_weights]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Choices":
        return cls(**d)


def _sparse(x: sp.csr_matrix) -> tf.SparseTensor:
    coo = x.tocoo()
    indices = np.stack([coo.row, coo.col], axis=1).astype(np.int64)
    return tf.sparse.reorder(
        tf.SparseTensor(indices, coo.data.astype(np.float32), [x.shape[0], x.shape[1]])
    )


def _history_dataset(x: sp.csr_matrix, config: TrainerConfig) -> tf.data.Dataset:
    """Users with a history, reshuffled every epoch, as ``{HISTORY: sparse rows}``."""
    rows = x[np.flatnonzero(np.diff(x.indptr))]
    ds = tf.data.Dataset.from_tensor_slices({HISTORY: _sparse(rows)})
    ds = ds.shuffle(rows.shape[0], seed=config.seed, reshuffle_each_iteration=True)
    return ds.batch(config.batch_size).prefetch(tf.data.AUTOTUNE)


def _in_batches(fn, x: sp.csr_matrix) -> np.ndarray:
    return np.concatenate(
        [fn(_sparse(x[lo : lo + _USER_BATCH])).numpy() for lo in range(0, x.shape[0], _USER_BATCH)]
    )


def _without_oov(scores: np.ndarray) -> np.ndarray:
    scores[:, -features.NUM_OOV_BUCKETS :] = -np.inf  # no real movie to recommend
    return scores


def dae_scores(model: JointModel, x: sp.csr_matrix) -> np.ndarray:
    """``[users, movie rows]`` autoencoder logits of the histories ``x``."""
    return _without_oov(_in_batches(lambda h: model.dae_logits(model.encode(h)), x))


def retrieval_scores(model: JointModel, x: sp.csr_matrix, movies=None) -> np.ndarray:
    """``[users, movie rows]`` blended retrieval scores (the towers' dot products).

    ``movies``: the movie tower's ``[movie rows, dim]`` vectors when already computed.
    """
    if movies is None:
        movies = _movie_vectors(model)
    users = _in_batches(model.user_vectors, x)
    return _without_oov(users @ movies.T)


def _movie_vectors(model: JointModel) -> np.ndarray:
    return model.movie_vectors(tf.range(model.num_movie_rows, dtype=tf.int64)).numpy()


def _retrieval_scorer(model: JointModel):
    """:func:`retrieval_scores` of histories, the movie vectors computed once."""
    movies = _movie_vectors(model)
    return lambda x: retrieval_scores(model, x, movies)


def _top_lists(score_fn, x: sp.csr_matrix, users: np.ndarray, k: int):
    """Each user's ``k`` best unseen movies and their scores, ``(movies [u, k], scores [u, k])``.

    ``score_fn``: histories ``[batch, movie rows]`` -> ``[batch, movie rows]`` scores. Users
    are scored ``_USER_BATCH`` at a time, so memory holds one batch x catalogue of scores,
    whatever the number of users.
    """
    tops, values = [], []
    for lo in range(0, len(users), _USER_BATCH):
        rows = x[users[lo : lo + _USER_BATCH]]
        scores = score_fn(rows)
        top = selection.top_unseen(scores, rows, k)
        tops.append(top)
        values.append(np.take_along_axis(scores, top, axis=1))
    if not tops:
        return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
    return np.concatenate(tops), np.concatenate(values)


class _Best:
    """Remembers the best validation value and the trainable weights it was reached with."""

    def __init__(self, model, higher_is_better: bool):
        self.model, self.sign = model, 1.0 if higher_is_better else -1.0
        self.value, self.epochs, self.weights, self.stale = None, 0, None, 0

    def offer(self, value: float, epochs: int) -> bool:
        """Records a check; returns False once ``_PATIENCE`` checks brought no improvement."""
        if self.value is None or self.sign * (value - self.value) > 0:
            self.value, self.epochs, self.stale = value, epochs, 0
            self.weights = [v.numpy() for v in self.model.trainable_variables]
        else:
            self.stale += 1
        return self.stale < _PATIENCE

    def restore(self) -> None:
        for variable, value in zip(self.model.trainable_variables, self.weights, strict=True):
            variable.assign(value)


@dataclasses.dataclass(frozen=True)
class _Schedule:
    """When the autoencoder's search checks the validation cut.

    Attributes:
      steps_per_epoch: training steps of one pass over the users.
      by_steps: True when ``epochs`` passes do not fit in ``max_steps`` steps: the checks are
        then spread over ``max_steps`` steps instead of every ``validate_every`` epochs.
      stops: the cumulative steps of the checks, ascending.
    """

    steps_per_epoch: int
    by_steps: bool
    stops: tuple[int, ...]


def _schedule(x: sp.csr_matrix, config: TrainerConfig) -> _Schedule:
    users = int(np.count_nonzero(np.diff(x.indptr)))
    per_epoch = max(1, -(-users // config.batch_size))
    # Every validate_every epochs, and at the last one.
    epochs = sorted(set(range(config.validate_every, config.epochs + 1, config.validate_every)))
    epochs += [config.epochs] if not epochs or epochs[-1] != config.epochs else []
    if config.epochs * per_epoch <= config.max_steps:
        return _Schedule(per_epoch, False, tuple(e * per_epoch for e in epochs))
    # As many checks as the epochs would have had, evenly over the budget.
    every = max(1, config.max_steps // len(epochs))
    stops = list(range(every, config.max_steps + 1, every))[: len(epochs)]
    return _Schedule(per_epoch, True, tuple(stops))


def _train_for(model, ds, epochs: int = 0, steps: int = 0) -> None:
    """More autoencoder training: ``steps`` steps of the endlessly repeated (and still
    reshuffled) users when given, else ``epochs`` whole epochs."""
    if steps:
        model.fit(ds.repeat(), steps_per_epoch=steps, epochs=1, verbose=0)
    else:
        model.fit(ds, epochs=epochs, verbose=0)


def _validation_users(x_val: sp.csr_matrix, config: TrainerConfig) -> np.ndarray:
    """The validation cut's users the choices are measured on: all of them, or a seeded
    sample of ``config.validation_users`` (ascending)."""
    users = np.flatnonzero(np.diff(x_val.indptr))
    if len(users) <= config.validation_users:
        return users
    rng = np.random.default_rng(config.seed)
    return np.sort(rng.choice(users, config.validation_users, replace=False))


def _fit_retrieval(model, x_fit, x_val, config, choices=None) -> tuple[int, int, list]:
    """Trains the autoencoder: with ``x_val`` chooses how long, else trains as ``choices``.

    Returns:
      ``(epochs, steps, curve)``: the chosen (or given) whole epochs, or 0 and the steps when
      the schedule went by steps (:func:`_schedule`); ``curve`` is ``[(epochs or steps,
      validation NDCG@100), ...]`` of the checks (empty without ``x_val``).
    """
    model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate))
    ds = _history_dataset(x_fit, config)
    if x_val is None:
        _train_for(model, ds, choices.retrieval_epochs, choices.retrieval_steps)
        return choices.retrieval_epochs, choices.retrieval_steps, []
    schedule = _schedule(x_fit, config)
    unit = 1 if schedule.by_steps else schedule.steps_per_epoch
    users = _validation_users(x_val, config)
    best, curve = _Best(model, higher_is_better=True), []
    for before, done in zip((0,) + schedule.stops, schedule.stops, strict=False):
        if schedule.by_steps:
            _train_for(model, ds, steps=done - before)
        else:
            _train_for(model, ds, epochs=(done - before) // schedule.steps_per_epoch)
        top, _ = _top_lists(lambda h: dae_scores(model, h), x_fit, users, _depth(model))
        curve.append((done // unit, selection.ndcg(top, x_val[users], _depth(model))))
        if not best.offer(curve[-1][1], done // unit):
            break
    best.restore()
    if schedule.by_steps:
        return 0, best.epochs, curve
    return best.epochs, 0, curve


def _fit_rating(model, fit_columns, val_columns, config, epochs=None) -> tuple[int, list]:
    """Trains the rating model; with ``val_columns`` chooses its epochs by RMSE.

    Its tables are updated lazily (:class:`trainer.optimizers.LazyAdam`: only the rows of a
    step's ratings), so a step's cost does not grow with the users and movies; Keras runs
    ``_RATING_STEPS_PER_EXECUTION`` steps per call of the compiled step (the same steps).
    """
    model.compile(
        optimizer=optimizers.LazyAdam(config.rating_learning_rate),
        steps_per_execution=_RATING_STEPS_PER_EXECUTION,
    )
    ds = data.make_dataset(fit_columns, config.rating_batch_size, config.seed)
    if val_columns is None:
        model.fit(ds, epochs=epochs, verbose=0)
        return epochs, []
    best, curve = _Best(model, higher_is_better=False), []
    for done in range(1, config.rating_epochs + 1):
        model.fit(ds, epochs=1, verbose=0)
        rmse = rating_rmse(model, val_columns)
        curve.append((done, rmse))
        if not best.offer(rmse, done):
            break
    best.restore()
    return best.epochs, curve


def rating_rmse(model: JointModel, columns: dict[str, np.ndarray]) -> float:
    """RMSE of the model's predicted ratings of ``columns``' (user, movie) pairs."""
    predicted = model.predict_rating(
        tf.constant(columns[features.USER_IDX]), tf.constant(columns[features.MOVIE_IDX])
    ).numpy()
    return float(np.sqrt(np.mean((predicted - columns[features.RATING]) ** 2)))


def _depth(model) -> int:
    return min(_DEPTH, model.num_movie_rows - features.NUM_OOV_BUCKETS)


def _fit_ease(model, x, lam) -> tuple[np.ndarray, np.ndarray]:
    """EASE of the vocabulary movies (the most-rated ``ease.MAX_MOVIES``): ``(movies, B)``."""
    return ease.fit_most_rated(x[:, : model.num_movie_rows - features.NUM_OOV_BUCKETS], lam)


def _set_ease(model, fitted, config) -> None:
    """Sets the model's EASE factors from :func:`_fit_ease`'s ``(movies, B)``."""
    n = model.num_movie_rows - features.NUM_OOV_BUCKETS
    model.set_ease(*ease.low_rank_rows(*fitted, n, model.ease_rank, config.seed))


def _ease_scorer(model, fitted):
    """Exact EASE scores of histories (uncovered movies and OOV rows: -inf)."""
    movies, b = fitted

    def score(rows):
        scores = np.full((rows.shape[0], model.num_movie_rows), -np.inf, np.float32)
        scores[:, movies] = rows[:, movies] @ b
        return scores

    return score


def _choose_ease(model, x_fit, x_val, config) -> tuple[float, dict]:
    """EASE's penalty by the validation NDCG of EASE alone; sets the model's factors."""
    users = _validation_users(x_val, config)
    recalls, best = {}, None
    for lam in config.ease_lambdas:
        fitted = _fit_ease(model, x_fit, lam)
        top, _ = _top_lists(_ease_scorer(model, fitted), x_fit, users, _depth(model))
        recalls[lam] = selection.ndcg(top, x_val[users], _depth(model))
        # the best NDCG, ties to the smaller penalty; its fit kept rather than fitted again
        if best is None or (recalls[lam], -lam) > (recalls[best[0]], -best[0]):
            best = (lam, fitted)
    lam, fitted = best
    _set_ease(model, fitted, config)
    return lam, recalls


def _choose_blend(model, x_fit, x_val, config) -> tuple[float, dict]:
    users = _validation_users(x_val, config)
    recalls = {}
    for w in config.blend_weights:
        model.set_blend(w)
        top, _ = _top_lists(_retrieval_scorer(model), x_fit, users, _depth(model))
        recalls[w] = selection.ndcg(top, x_val[users], _depth(model))
    weight = max(recalls, key=lambda w: (recalls[w], w))
    model.set_blend(weight)
    return weight, recalls


def _fit_reranker(model, feats, labels, config) -> None:
    ds = tf.data.Dataset.from_tensor_slices({RERANK_FEATURES: feats, RERANK_LABEL: labels})
    ds = ds.shuffle(len(labels), seed=config.seed).batch(1024)
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01))
    model.fit(ds, epochs=5, verbose=0)


def _choose_reranker(model, x_fit, x_val, config) -> tuple[bool, dict]:
    """Trains the re-ranker on the cut's candidates and decides whether it is served.

    Two folds of the validation users: trained on one, each order's recall@10 is measured on
    the other. ``auto`` serves the re-ranker when its mean gain over retrieval order is > 0.
    """
    users = _validation_users(x_val, config)
    n_cand = min(config.candidates, model.num_movie_rows - features.NUM_OOV_BUCKETS)
    movies, scores = _top_lists(_retrieval_scorer(model), x_fit, users, n_cand)
    feats, _ = model.rerank_features(
        tf.constant(users, tf.int64), tf.constant(movies, tf.int64), tf.constant(scores)
    )
    feats = feats.numpy()
    labels = np.asarray(x_val[users][np.repeat(np.arange(len(users)), n_cand), movies.ravel()])
    labels = labels.reshape(movies.shape).astype(np.float32)
    fold = np.random.default_rng(config.seed).permutation(len(users)) % 2
    initial = model.reranker.get_weights()
    gains = []
    for held in (0, 1):
        train_rows, test_rows = fold != held, fold == held
        model.reranker.set_weights(initial)
        _fit_reranker(
            model,
            feats[train_rows].reshape(-1, feats.shape[2]),
            labels[train_rows].ravel(),
            config,
        )
        learned = model.reranker(feats[test_rows]).numpy()[..., 0]
        order = np.argsort(-learned, axis=1, kind="stable")[:, :_K]
        reranked = selection.recall(
            np.take_along_axis(movies[test_rows], order, axis=1), x_val[users[test_rows]], _K
        )
        retrieval = selection.recall(movies[test_rows], x_val[users[test_rows]], _K)
        gains.append({"reranked": reranked, "retrieval_order": retrieval})
    gain = float(np.mean([g["reranked"] - g["retrieval_order"] for g in gains]))
    use = {"auto": gain > 0, "on": True, "off": False}[config.rerank]
    model.reranker.set_weights(initial)
    _fit_reranker(model, feats.reshape(-1, feats.shape[2]), labels.ravel(), config)
    return use, {"folds": gains, "mean_gain": gain, "served": use}


def _new_model(columns, vocabularies, config, previous):
    num_users, num_movies = len(vocabularies.users), len(vocabularies.movies)
    model = JointModel(
        num_users=num_users,
        num_movies=num_movies,
        movie_counts=movie_counts(columns[features.MOVIE_IDX], num_movies),
        global_mean=float(np.mean(columns[features.RATING])),
        config=config,
    )
    model({features.USER_IDX: tf.zeros([1], tf.int64), features.MOVIE_IDX: tf.zeros([1], tf.int64)})
    carried = warm_start.warm_start(model, vocabularies, previous) if previous else None
    return model, carried


def _history_matrix(columns, vocabularies) -> sp.csr_matrix:
    shape = (
        len(vocabularies.users) + features.NUM_OOV_BUCKETS,
        len(vocabularies.movies) + features.NUM_OOV_BUCKETS,
    )
    return selection.interactions(columns[features.USER_IDX], columns[features.MOVIE_IDX], shape)


def validation_cut(columns: dict[str, np.ndarray], config: TrainerConfig) -> tuple[dict, dict]:
    """``(fit, cut)``: the train columns without and with the validation cut's ratings
    (``selection.validation_mask`` at ``config.validation_fraction``)."""
    val = selection.validation_mask(
        columns[features.USER_IDX],
        columns[features.MOVIE_IDX],
        config.validation_fraction,
        config.seed,
    )
    return {k: v[~val] for k, v in columns.items()}, {k: v[val] for k, v in columns.items()}


def _choose(columns, vocabularies, config, previous) -> tuple[Choices, dict]:
    """Round 1: trains on train minus the validation cut and makes every choice."""
    fit_cols, val_cols = validation_cut(columns, config)
    x_fit, x_val = _history_matrix(fit_cols, vocabularies), _history_matrix(val_cols, vocabularies)
    model, _ = _new_model(fit_cols, vocabularies, config, previous)
    retrieval_epochs, retrieval_steps, retrieval_curve = _fit_retrieval(model, x_fit, x_val, config)
    lam, ease_recalls = _choose_ease(model, x_fit, x_val, config)
    weight, blend_recalls = _choose_blend(model, x_fit, x_val, config)
    rating_epochs, rating_curve = _fit_rating(model, fit_cols, val_cols, config)
    use, rerank = _choose_reranker(model, x_fit, x_val, config)
    choices = Choices(
        retrieval_epochs=retrieval_epochs,
        retrieval_steps=retrieval_steps,
        ease_lambda=float(lam),
        blend_weight=float(weight),
        rating_epochs=rating_epochs,
        use_reranker=bool(use),
        reranker_weights=model.reranker.get_weights(),
    )
    report = {
        "num_validation_ratings": len(val_cols[features.RATING]),
        "retrieval_ndcg@100_by_" + ("steps" if retrieval_steps else "epochs"): retrieval_curve,
        "num_validation_users": int(len(_validation_users(x_val, config))),
        "ease_ndcg@100_by_lambda": {str(k): v for k, v in ease_recalls.items()},
        "blend_ndcg@100_by_weight": {str(k): v for k, v in blend_recalls.items()},
        "rating_rmse_by_epochs": rating_curve,
        "reranker": rerank,
    }
    return choices, report


def train(
    train_columns: dict[str, np.ndarray],
    vocabularies: data.Vocabularies,
    config: TrainerConfig,
    previous: warm_start.PreviousModel | None = None,
    strategy: tf.distribute.Strategy | None = None,
) -> tuple[JointModel, dict]:
    """Chooses the settings on a validation cut, then trains on all of ``train_columns``.

    Args:
      train_columns: ``user_idx``, ``movie_idx`` (``[n]`` int64) and ``rating`` (``[n]``).
      vocabularies: the Transform vocabularies (sizes the tables).
      config: hyperparameters and the grids of the choices.
      previous: a model to warm-start from (``warm_start.read_previous_model``); None
        trains from a fresh initialisation.
      strategy: the ``tf.distribute`` strategy to build and train the model under
        (``trainer.distribute.make_strategy``); None: the current one (one device unless
        called inside a strategy's scope).

    Returns:
      The trained model and a summary dict: the config, the choices and the validation
      numbers behind them, durations, examples/s, the strategy, and under ``"warm_start"``
      what ``warm_start.warm_start`` carried over (or None).
    """
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        tf.keras.utils.set_random_seed(config.seed)
        start = time.perf_counter()
        choices, report = _choose(train_columns, vocabularies, config, previous)
        choose_seconds = time.perf_counter() - start
    model, summary = fit_with(train_columns, vocabularies, config, choices, previous, strategy)
    summary["validation"] = report
    summary["choose_seconds"] = choose_seconds
    summary["history"] = {
        "validation_ndcg@100": [
            v
            for key in ("retrieval_ndcg@100_by_epochs", "retrieval_ndcg@100_by_steps")
            for _, v in report.get(key, [])
        ],
        "validation_rmse": [v for _, v in report["rating_rmse_by_epochs"]],
    }
    return model, summary


def fit_with(
    train_columns: dict[str, np.ndarray],
    vocabularies: data.Vocabularies,
    config: TrainerConfig,
    choices: Choices,
    previous: warm_start.PreviousModel | None = None,
    strategy: tf.distribute.Strategy | None = None,
) -> tuple[JointModel, dict]:
    """Round 2 alone: trains on all of ``train_columns`` with ``choices`` (no validation cut).

    :func:`train` calls it after choosing; the refit Trainer calls it with the choices of
    the blessed model on every ingested rating. ``strategy`` as in :func:`train`.

    Returns:
      The trained model and its summary (config, choices, durations, strategy, warm start).
    """
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        tf.keras.utils.set_random_seed(config.seed)
        model, carried = _new_model(train_columns, vocabularies, config, previous)
        x = _history_matrix(train_columns, vocabularies)
        refit_start = time.perf_counter()
        _fit_retrieval(model, x, None, config, choices)
        _set_ease(model, _fit_ease(model, x, choices.ease_lambda), config)
        model.set_blend(choices.blend_weight)
        _fit_rating(model, train_columns, None, config, epochs=choices.rating_epochs)
        model.reranker.set_weights([np.asarray(w, np.float32) for w in choices.reranker_weights])
        model.use_reranker.assign(choices.use_reranker)
        refit_seconds = time.perf_counter() - refit_start
    n = len(train_columns[features.RATING])
    summary = {
        "config": config.to_dict(),
        "chosen": choices.to_dict(),
        "num_train_examples": int(n),
        "num_users": len(vocabularies.users),
        "num_movies": len(vocabularies.movies),
        "choose_seconds": 0.0,
        "train_seconds": refit_seconds,
        "examples_per_second": n
        * (_retrieval_passes(x, config, choices) + choices.rating_epochs)
        / max(refit_seconds, 1e-9),
        "distribution": distribute.describe(strategy),
        "train_precision": config.train_precision(),
        "warm_start": carried,
    }
    return model, copy.deepcopy(summary)


def _retrieval_passes(x: sp.csr_matrix, config: TrainerConfig, choices: Choices) -> float:
    """Passes over the users the autoencoder's refit made (fractional when it went by steps)."""
    if not choices.retrieval_steps:
        return float(choices.retrieval_epochs)
    return choices.retrieval_steps / _schedule(x, config).steps_per_epoch


# Keys TFX's Vertex AI Training Trainer adds to custom_config for its own use.
_VERTEX_KEY_PREFIX = "ai_platform_"


def hyperparameters(custom_config: dict | None) -> dict:
    """The Trainer's custom_config without the keys the Vertex AI Training executor adds
    (``ai_platform_training_args``, ``ai_platform_training_enable_vertex``, ...)."""
    return {k: v for k, v in (custom_config or {}).items() if not k.startswith(_VERTEX_KEY_PREFIX)}


def run_fn(fn_args) -> None:
    """Trains and exports the model (called by the TFX Trainer).

    Args:
      fn_args: tfx.components.FnArgs with ``train_files``, ``transform_output``,
        ``serving_model_dir``, ``model_run_dir``, ``custom_config`` and ``base_model`` (the
        serving SavedModel to warm-start from, or None). The eval files are not read: every
        choice is made on a cut of train, and the Evaluator measures the eval split.
    """
    config = TrainerConfig.from_custom_config(hyperparameters(fn_args.custom_config))
    strategy = distribute.make_strategy(config.strategy)  # before any other TensorFlow op
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    vocabularies = data.read_vocabularies(tf_transform_output)
    train_columns = data.read_transformed(fn_args.train_files)
    logging.info(
        "training on %d examples, %d users, %d movies, config %s",
        len(train_columns[features.RATING]),
        len(vocabularies.users),
        len(vocabularies.movies),
        config,
    )
    if config.refit:
        # The base model is the evaluated one: its choices, every ingested rating, no warm
        # start (the refit is that model's recipe on more data).
        if not fn_args.base_model:
            raise ValueError("trainer config: refit needs the evaluated model as base_model")
        choices = export.read_choices(fn_args.base_model)
        model, summary = fit_with(train_columns, vocabularies, config, choices, None, strategy)
        summary["refit_of"] = fn_args.base_model
    else:
        previous = (
            warm_start.read_previous_model(fn_args.base_model) if fn_args.base_model else None
        )
        model, summary = train(train_columns, vocabularies, config, previous, strategy)
    logging.info("choices: %s; trained under %s", summary["chosen"], summary["distribution"])
    if summary["warm_start"]:
        logging.info("warm start: %s", summary["warm_start"])
    history = export.Histories.from_indices(
        train_columns[features.USER_IDX], train_columns[features.MOVIE_IDX], vocabularies
    )
    if not distribute.is_chief(strategy):
        # Every task of a multi-worker cluster saves (as tf.distribute's guide says);
        # only the chief's copy is the Trainer's output.
        with tempfile.TemporaryDirectory() as scratch:
            export.export_serving_model(
                model,
                vocabularies,
                history,
                os.path.join(scratch, "model"),
                choices=summary["chosen"],
            )
        return
    export.export_serving_model(
        model, vocabularies, history, fn_args.serving_model_dir, choices=summary["chosen"]
    )
    tf.io.gfile.makedirs(fn_args.model_run_dir)
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, TRAINING_SUMMARY), "w") as f:
        json.dump(summary, f, indent=2)
