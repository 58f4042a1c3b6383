"""The autoencoder's training speed by batch size and precision: ``make bench
ARGS=trainer_steps``.

The Trainer's retrieval autoencoder (``trainer.model.JointModel``, its softmax over the whole
catalogue) trained on synthetic histories at the catalogue sizes of the scale benchmark's
shapes (``bench.scale.SHAPES``: 3,000, 12,000 and 27,000 movies), a sample of each shape's
users (an epoch's time grows linearly with the users, so seconds per epoch of the whole
shape are the sample's scaled up). For each ``(users a step, learning rate, precision of the
catalogue matmul)`` setting: the
median seconds of an epoch over repeats, train ratings per second per epoch, and the ratio to
the first setting (the previous default, 128 users at Adam 1e-3), all in one run. Quality is
not measured here: ``make bench ARGS=quality`` measures the served lists of the default.
Nothing is asserted.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # TFRS needs Keras 2: set before TensorFlow loads

import statistics
import time

import numpy as np
import tensorflow as tf

from bench import scale
from data.sources.synthetic import SyntheticSource
from trainer import features, model, run, selection
from trainer.config import TrainerConfig

# (users a step, Adam learning rate, the catalogue matmul's type in training)
SETTINGS = (
    (128, 1e-3, "float32"),
    (512, 2e-3, "float32"),
    (1024, 3e-3, "float32"),
    (512, 2e-3, "bfloat16"),
)
SAMPLE_USERS = 10_240


def histories(ratings: int, sample_users: int = SAMPLE_USERS):
    """``(x, users of the whole shape)``: the first ``sample_users`` users' sparse histories
    (``[users, movies + OOV]``) of the synthetic source at ``ratings``' scale shape."""
    users, movies = scale.shape_of(ratings)
    source = SyntheticSource(num_users=users, num_movies=movies, num_ratings=ratings)
    sample = min(sample_users, users)
    rows, cols = source.rating_arrays(0, sample)[:2]
    shape = (sample, movies + features.NUM_OOV_BUCKETS)
    return selection.interactions(rows, cols, shape), users


def epoch_seconds(
    x, batch_size: int, learning_rate: float, repeats: int, precision: str = "float32"
) -> float:
    """Median seconds of one autoencoder epoch over ``x`` (after one warm-up epoch)."""
    config = TrainerConfig(batch_size=batch_size, learning_rate=learning_rate, precision=precision)
    num_movies = x.shape[1] - features.NUM_OOV_BUCKETS
    tf.keras.utils.set_random_seed(config.seed)
    joint = model.JointModel(x.shape[0], num_movies, np.ones(x.shape[1]), 3.5, config)
    joint.compile(optimizer=tf.keras.optimizers.Adam(learning_rate))
    return median_epoch(joint, run._history_dataset(x, config), repeats)


def median_epoch(joint, ds, repeats: int) -> float:
    """Median seconds of ``repeats`` epochs of a compiled model over ``ds`` after one warm-up
    epoch (which traces the step)."""
    joint.fit(ds, epochs=1, verbose=0)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        joint.fit(ds, epochs=1, verbose=0)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_bench(
    out, sizes=tuple(scale.SHAPES), settings=SETTINGS, repeats: int = 3, sample_users=SAMPLE_USERS
) -> dict:
    """Prints and returns ``{size: [{batch, lr, precision, seconds, ratings_per_second,
    ratio}, ...]}``."""
    table = {}
    for size in sizes:
        x, users = histories(size, sample_users)
        out.write(
            f"\nAutoencoder epochs, the {size:,}-rating shape ({users:,} users x "
            f"{x.shape[1] - features.NUM_OOV_BUCKETS:,} movies), {x.shape[0]:,} users sampled "
            f"({x.nnz:,} ratings), median of {repeats}:\n"
        )
        rows = []
        for batch, lr, precision in settings:
            secs = epoch_seconds(x, batch, lr, repeats, precision)
            rows.append(
                {
                    "batch": batch,
                    "lr": lr,
                    "precision": precision,
                    "seconds": secs,
                    "ratings_per_second": x.nnz / secs,
                    "ratio": rows[0]["seconds"] / secs if rows else 1.0,
                }
            )
            r = rows[-1]
            out.write(
                f"  {batch:>5} users a step, Adam {lr:g}, {precision:<8}: {secs:7.2f} s an epoch "
                f"({secs * users / x.shape[0]:7.1f} s for the whole shape), "
                f"{r['ratings_per_second']:>10,.0f} ratings/s, {r['ratio']:.2f}x\n"
            )
            out.flush()
        table[size] = rows
    return table
