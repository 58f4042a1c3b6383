"""LazyAdam (Adam's rule on the rows a sparse gradient has, nothing on the others) and the
rating model's lean input (trainer.data.make_dataset)."""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # TFRS needs Keras 2: set before TensorFlow loads

import numpy as np
import tensorflow as tf

from trainer.optimizers import LazyAdam

B1, B2, EPS, LR = 0.9, 0.999, 1e-7, 0.1


def _sparse_step(optimizer, table, rows, values):
    grad = tf.IndexedSlices(
        tf.constant(values, tf.float32), tf.constant(rows, tf.int64), tf.shape(table)
    )
    optimizer.apply_gradients([(grad, table)])


def _adam_rows(start, grads):
    """Adam's rule by hand for one row's successive gradients (None: no gradient)."""
    x, m, v = np.array(start, np.float64), 0.0, 0.0
    for t, g in enumerate(grads, start=1):
        if g is None:
            continue
        m = B1 * m + (1 - B1) * np.asarray(g)
        v = B2 * v + (1 - B2) * np.square(g)
        alpha = LR * np.sqrt(1 - B2**t) / (1 - B1**t)
        x = x - alpha * m / (np.sqrt(v) + EPS)
    return x


def test_untouched_rows_stay_and_touched_rows_follow_adam():
    start = np.arange(8, dtype=np.float32).reshape(4, 2)
    table = tf.Variable(start)
    opt = LazyAdam(LR, beta_1=B1, beta_2=B2, epsilon=EPS)
    _sparse_step(opt, table, [0, 2], [[1.0, -1.0], [0.5, 0.5]])
    _sparse_step(opt, table, [2, 3], [[0.25, 1.0], [-2.0, 0.0]])
    got = table.numpy()
    np.testing.assert_allclose(got[0], _adam_rows(start[0], [[1.0, -1.0], None]), rtol=1e-6)
    np.testing.assert_array_equal(got[1], start[1])  # never in a batch: never moves
    np.testing.assert_allclose(got[2], _adam_rows(start[2], [[0.5, 0.5], [0.25, 1.0]]), rtol=1e-6)
    np.testing.assert_allclose(got[3], _adam_rows(start[3], [None, [-2.0, 0.0]]), rtol=1e-6)
    # Keras's Adam moves row 0 at the second step too (its moment decays, not to zero).
    dense = tf.Variable(start)
    adam = tf.keras.optimizers.Adam(LR, beta_1=B1, beta_2=B2, epsilon=EPS)
    _sparse_step(adam, dense, [0, 2], [[1.0, -1.0], [0.5, 0.5]])
    first = dense.numpy()[0].copy()
    _sparse_step(adam, dense, [2, 3], [[0.25, 1.0], [-2.0, 0.0]])
    assert not np.allclose(dense.numpy()[0], first)


def test_duplicate_rows_are_summed_before_the_update():
    table = tf.Variable(np.zeros((3, 1), np.float32))
    once = tf.Variable(np.zeros((3, 1), np.float32))
    _sparse_step(LazyAdam(LR), table, [1, 1], [[0.5], [1.5]])
    _sparse_step(LazyAdam(LR), once, [1], [[2.0]])
    np.testing.assert_allclose(table.numpy(), once.numpy())


def test_dense_gradients_get_keras_adam():
    lazy, plain = tf.Variable([1.0, -2.0]), tf.Variable([1.0, -2.0])
    opt_lazy, opt_plain = LazyAdam(LR), tf.keras.optimizers.Adam(LR)
    for g in ([0.3, -0.7], [1.0, 0.2]):
        opt_lazy.apply_gradients([(tf.constant(g), lazy)])
        opt_plain.apply_gradients([(tf.constant(g), plain)])
    np.testing.assert_allclose(lazy.numpy(), plain.numpy())


def test_the_rating_input_passes_every_row_once_an_epoch_in_a_new_seeded_order():
    from trainer import data, features

    n, batch = 1_003, 100
    columns = {
        features.USER_IDX: np.arange(n, dtype=np.int64),
        features.MOVIE_IDX: np.arange(n, dtype=np.int64) % 7,
        features.RATING: np.arange(n, dtype=np.float32) / 10,
    }

    def epochs(count):
        tf.keras.utils.set_random_seed(42)
        ds = data.make_dataset(columns, batch, seed=42)
        return [[{k: v.numpy() for k, v in b.items()} for b in ds] for _ in range(count)]

    first, second = epochs(2)
    for batches in (first, second):
        assert [len(b[features.RATING]) for b in batches] == [100] * 10 + [3]
        users = np.concatenate([b[features.USER_IDX] for b in batches])
        assert sorted(users.tolist()) == list(range(n))  # each row once
        for b in batches:  # rows stay whole: a row's columns travel together
            np.testing.assert_array_equal(b[features.MOVIE_IDX], b[features.USER_IDX] % 7)
            np.testing.assert_allclose(b[features.RATING], b[features.USER_IDX] / 10)
    order = [np.concatenate([b[features.USER_IDX] for b in e]) for e in (first, second)]
    assert not np.array_equal(order[0], order[1])  # reshuffled every epoch
    assert not np.array_equal(order[0], np.arange(n))
    again = epochs(2)  # the same orders in a run with the same seeds
    for e, f in zip((first, second), again, strict=True):
        np.testing.assert_array_equal(
            np.concatenate([b[features.USER_IDX] for b in e]),
            np.concatenate([b[features.USER_IDX] for b in f]),
        )
