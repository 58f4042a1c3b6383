"""The rating model's training speed and quality by setting: ``make bench ARGS=rating_steps``.

The Trainer's rating model (``trainer.model.JointModel``'s biases and factors, trained by
``trainer.run._fit_rating``) under each :data:`SETTINGS` row, in one run:

- **speed**, at each scale shape (``bench.scale.SHAPES``): the model is built with the
  shape's whole user and movie tables (what Keras's Adam updates every step) and trained on
  a sample of the shape's ratings (an epoch's time grows linearly with the ratings, so the
  whole shape's seconds are the sample's scaled up); median seconds of an epoch over repeats
  after a warm-up epoch, train ratings per second, the ratio to the first row (the previous
  configuration);
- **quality**, by the Trainer's protocol: epochs chosen by RMSE on the validation cut of the
  train split, a refit on all of train for that many epochs, RMSE on the held-out split;
  on MovieLens 100k (ExampleGen's split, seeds 42 and 7) and the 1M synthetic shape (a
  random fifth held out).

A setting is ``(name, optimizer, input, ratings a step, learning rate, L2, most epochs,
steps_per_execution)``: optimizer ``adam`` (Keras's) or ``lazy``
(``trainer.optimizers.LazyAdam``); input ``lean`` (``trainer.data.make_dataset``) or
``per-rating`` (the previous ``from_tensor_slices(columns).shuffle(n).batch(b)``). Nothing is
asserted.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # TFRS needs Keras 2: set before TensorFlow loads

import dataclasses
import time

import numpy as np
import tensorflow as tf

from bench import scale, trainer_steps
from data.sources.synthetic import SyntheticSource
from trainer import data, features, model, optimizers, run
from trainer.config import TrainerConfig


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    optimizer: str  # "adam" | "lazy"
    input: str  # "lean" | "per-rating"
    batch: int
    lr: float
    l2: float
    epochs: int
    steps_per_execution: int = 1


_DEFAULT = TrainerConfig()
DEFAULT = Setting(
    "default",
    "lazy",
    "lean",
    _DEFAULT.rating_batch_size,
    _DEFAULT.rating_learning_rate,
    _DEFAULT.rating_l2,
    _DEFAULT.rating_epochs,
    run._RATING_STEPS_PER_EXECUTION,
)
SETTINGS = (
    Setting("before", "adam", "per-rating", 256, 3e-3, 0.05, 10),
    Setting("lean input", "adam", "lean", 256, 3e-3, 0.05, 10),
    Setting("lean input, lazy", "lazy", "lean", 256, 3e-3, 0.05, 10),
    dataclasses.replace(DEFAULT, name="default, 1 step an execution", steps_per_execution=1),
    DEFAULT,
    dataclasses.replace(
        DEFAULT, name="default at 4096 a step, 2x rate", batch=4096, lr=DEFAULT.lr * 2
    ),
)
SAMPLE_RATINGS = 400_000
TRAIN_SHARE = 0.8  # the shapes' train split: what an epoch of the Trainer passes over


def _config(s: Setting) -> TrainerConfig:
    return dataclasses.replace(
        _DEFAULT,
        rating_batch_size=s.batch,
        rating_learning_rate=s.lr,
        rating_l2=s.l2,
        rating_epochs=s.epochs,
    )


def _dataset(columns, s: Setting, seed: int) -> tf.data.Dataset:
    if s.input == "lean":
        return data.make_dataset(columns, s.batch, seed)
    ds = tf.data.Dataset.from_tensor_slices(columns)
    ds = ds.shuffle(len(columns[features.RATING]), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(s.batch).prefetch(tf.data.AUTOTUNE)


def _optimizer(s: Setting):
    cls = optimizers.LazyAdam if s.optimizer == "lazy" else tf.keras.optimizers.Adam
    return cls(s.lr)


def _new_model(num_users, num_movies, mean, s: Setting) -> model.JointModel:
    config = _config(s)
    tf.keras.utils.set_random_seed(config.seed)
    joint = model.JointModel(num_users, num_movies, np.ones(num_movies + 1), mean, config)
    joint({features.USER_IDX: tf.zeros([1], tf.int64), features.MOVIE_IDX: tf.zeros([1], tf.int64)})
    joint.compile(optimizer=_optimizer(s), steps_per_execution=s.steps_per_execution)
    return joint


def epoch_seconds(columns, num_users, num_movies, s: Setting, repeats: int) -> float:
    """Median seconds of one epoch over ``columns`` (after one warm-up epoch)."""
    joint = _new_model(num_users, num_movies, 3.5, s)
    return trainer_steps.median_epoch(joint, _dataset(columns, s, _DEFAULT.seed), repeats)


def sample(ratings: int, sample_ratings: int = SAMPLE_RATINGS):
    """``(columns of the sample, users, movies, the shape's train ratings)``: the synthetic
    source's first users at ``ratings``' shape up to ``sample_ratings`` ratings."""
    users, movies = scale.shape_of(ratings)
    source = SyntheticSource(num_users=users, num_movies=movies, num_ratings=ratings)
    per_user = ratings / users
    # Twice the users the mean would need (users' counts vary), then the first ratings.
    u, m, r, _ = source.rating_arrays(0, max(1, int(np.ceil(2 * sample_ratings / per_user))))
    u, m, r = u[:sample_ratings], m[:sample_ratings], r[:sample_ratings]
    columns = {
        features.USER_IDX: u.astype(np.int64),
        features.MOVIE_IDX: m.astype(np.int64),
        features.RATING: r.astype(np.float32),
    }
    return columns, users, movies, int(ratings * TRAIN_SHARE)


def bench_speed(
    out, sizes=tuple(scale.SHAPES), settings=SETTINGS, repeats=3, sample_ratings=SAMPLE_RATINGS
):
    """Prints and returns ``{size: [{setting, seconds, shape_seconds, ratings_per_second,
    ratio}, ...]}``."""
    table = {}
    for size in sizes:
        columns, users, movies, train = sample(size, sample_ratings)
        n = len(columns[features.RATING])
        out.write(
            f"\nRating model epochs, the {size:,}-rating shape ({users:,} users x {movies:,} "
            f"movies; {n:,} of its {train:,} train ratings), median of {repeats}:\n"
        )
        rows = []
        for s in settings:
            secs = epoch_seconds(columns, users, movies, s, repeats)
            rows.append(
                {
                    "setting": s.name,
                    "seconds": secs,
                    "shape_seconds": secs * train / n,
                    "ratings_per_second": n / secs,
                    "ratio": rows[0]["seconds"] / secs if rows else 1.0,
                }
            )
            r = rows[-1]
            out.write(
                f"  {s.name:<32} {s.optimizer:<4} {s.input:<10} {s.batch:>5} a step: "
                f"{r['shape_seconds']:8.1f} s an epoch of the shape, "
                f"{r['ratings_per_second']:>10,.0f} ratings/s, {r['ratio']:5.2f}x\n"
            )
            out.flush()
        table[size] = rows
    return table


def protocol_rmse(train_cols, test_cols, num_users, num_movies, s: Setting) -> dict:
    """The Trainer's protocol for one setting: ``{epochs, rmse, seconds}``."""
    config = _config(s)
    fit, cut = run.validation_cut(train_cols, config)
    start = time.perf_counter()
    joint = _new_model(num_users, num_movies, float(np.mean(fit[features.RATING])), s)
    ds = _dataset(fit, s, config.seed)
    best = run._Best(joint, higher_is_better=False)  # the Trainer's patience
    for done in range(1, config.rating_epochs + 1):
        joint.fit(ds, epochs=1, verbose=0)
        if not best.offer(run.rating_rmse(joint, cut), done):
            break
    best_epochs = best.epochs
    joint = _new_model(num_users, num_movies, float(np.mean(train_cols[features.RATING])), s)
    joint.fit(_dataset(train_cols, s, config.seed), epochs=best_epochs, verbose=0)
    return {
        "epochs": best_epochs,
        "rmse": run.rating_rmse(joint, test_cols),
        "seconds": time.perf_counter() - start,
    }


def _ml100k(seed: int):
    from bench.__main__ import load_ml100k

    train_cols, test_cols, vocab = load_ml100k(seed=seed)
    return train_cols, test_cols, len(vocab.users), len(vocab.movies)


def _synthetic_split(ratings: int, seed: int = 42):
    users, movies = scale.shape_of(ratings)
    source = SyntheticSource(num_users=users, num_movies=movies, num_ratings=ratings)
    u, m, r, _ = source.rating_arrays()
    held = np.random.default_rng(seed).random(len(u)) < 0.2
    cols = {
        features.USER_IDX: u.astype(np.int64),
        features.MOVIE_IDX: m.astype(np.int64),
        features.RATING: r.astype(np.float32),
    }
    return (
        {k: v[~held] for k, v in cols.items()},
        {k: v[held] for k, v in cols.items()},
        users,
        movies,
    )


QUALITY_DATA = {
    "ml-100k seed 42": lambda: _ml100k(42),
    "ml-100k seed 7": lambda: _ml100k(7),
    "1M shape": lambda: _synthetic_split(1_000_000),
}


def bench_quality(
    out, datasets=tuple(QUALITY_DATA), settings=SETTINGS, loaders=QUALITY_DATA
) -> dict:
    """Prints and returns ``{dataset: [{setting, epochs, rmse, seconds}, ...]}``."""
    table = {}
    for name in datasets:
        train_cols, test_cols, users, movies = loaders[name]()
        out.write(
            f"\nRating model quality, {name} ({len(train_cols[features.RATING]):,} train, "
            f"{len(test_cols[features.RATING]):,} held out): epochs chosen on the cut, refit, "
            "held-out RMSE\n"
        )
        rows = []
        for s in settings:
            res = protocol_rmse(train_cols, test_cols, users, movies, s)
            rows.append({"setting": s.name, **res})
            out.write(
                f"  {s.name:<32} RMSE {res['rmse']:.4f} ({res['epochs']} epochs, "
                f"choosing and refit {res['seconds']:.1f} s)\n"
            )
            out.flush()
        table[name] = rows
    return table


def run_bench(out, repeats: int = 3) -> dict:
    return {"speed": bench_speed(out, repeats=repeats), "quality": bench_quality(out)}
