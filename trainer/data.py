"""Reads the Transform output (transformed examples and vocabularies) for ``run_fn``.

The transformed train split is small next to memory (three numbers per rating), so it is read
once into arrays and fed from memory each epoch instead of re-parsing TFRecords
(:func:`make_dataset`).
"""

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from trainer import features

_COLUMNS = {
    features.USER_IDX: tf.io.FixedLenFeature([], tf.int64),
    features.MOVIE_IDX: tf.io.FixedLenFeature([], tf.int64),
    features.RATING: tf.io.FixedLenFeature([], tf.float32),
}


@dataclasses.dataclass(frozen=True)
class Vocabularies:
    """The Transform vocabularies, in index order.

    Attributes:
      users: ``[num_users]`` user ids; user ``users[i]`` has index i.
      movies: ``[num_movies]`` movie ids; movie ``movies[i]`` has index i.
    """

    users: list[str]
    movies: list[str]


def read_vocabularies(tf_transform_output: tft.TFTransformOutput) -> Vocabularies:
    """Reads the user and movie vocabularies written by ``preprocessing_fn``."""

    def read(name):
        return [v.decode("utf-8") for v in tf_transform_output.vocabulary_by_name(name)]

    return Vocabularies(users=read(features.USER_VOCAB), movies=read(features.MOVIE_VOCAB))


def read_transformed(file_pattern: str | list[str]) -> dict[str, np.ndarray]:
    """Reads transformed examples into arrays.

    Args:
      file_pattern: glob(s) of GZIP TFRecord files of transformed examples.

    Returns:
      dict of ``user_idx`` and ``movie_idx`` (``[n]`` int64) and ``rating`` (``[n]`` float32).

    Raises:
      FileNotFoundError: when the pattern matches no file.
    """
    patterns = [file_pattern] if isinstance(file_pattern, str) else list(file_pattern)
    files = [f for p in patterns for f in tf.io.gfile.glob(p)]
    if not files:
        raise FileNotFoundError(f"no transformed examples match {patterns}")
    return read_records(sorted(files), _COLUMNS)


def read_records(
    files: Sequence[str], spec: Mapping[str, tf.io.FixedLenFeature]
) -> dict[str, np.ndarray]:
    """Parses GZIP TFRecord files of tf.Examples into one ``[n]`` array per key of ``spec``.

    The one TFRecord-to-numpy reader of the project: :func:`read_transformed` here and
    ``data.examples_io.read_columns`` (ExampleGen's raw examples) call it. String features
    stay ``bytes``.

    Args:
      files: the TFRecord files, read in this order.
      spec: feature key -> its scalar ``FixedLenFeature``.
    """
    ds = tf.data.TFRecordDataset(list(files), compression_type="GZIP")
    ds = ds.batch(65536).map(lambda x: tf.io.parse_example(x, dict(spec)))
    parts = {k: [] for k in spec}
    for batch in ds:
        for k in spec:
            parts[k].append(batch[k].numpy())
    return {
        k: np.concatenate(v) if v else np.array([], spec[k].dtype.as_numpy_dtype)
        for k, v in parts.items()
    }


def make_dataset(columns: dict[str, np.ndarray], batch_size: int, seed: int) -> tf.data.Dataset:
    """Batches in-memory columns into a dataset of feature dicts, in a new order every epoch.

    Each pass draws one seed (``tf.data.Dataset.random``, re-drawn on every iteration, so
    each Keras epoch gets its own order; the same orders in every run with the same global
    seed) and batch ``i`` gathers rows ``i * batch_size`` to ``(i + 1) * batch_size - 1`` of that
    seed's permutation of all rows (``index_shuffle``). Only batches pass through ``tf.data``:
    a per-rating shuffle buffer and per-rating batching (``from_tensor_slices(columns)
    .shuffle(n).batch(b)``) ran at about 100,000 ratings a second on 2 cores and was the
    rating model's bound at the 5M scale shape; this feeds about 1.7M a second.
    """
    n = len(columns[features.RATING])
    tensors = {k: tf.constant(v) for k, v in columns.items()}
    if n == 0:
        return tf.data.Dataset.from_tensor_slices(tensors).batch(batch_size)

    def one_pass(pass_seed):
        key = tf.stack([tf.constant(seed, tf.int64), pass_seed])

        def gather(start):
            positions = tf.range(start, tf.minimum(start + batch_size, n))
            rows = tf.random.experimental.index_shuffle(positions, key, n - 1)
            return {k: tf.gather(t, rows) for k, t in tensors.items()}

        starts = tf.data.Dataset.range(0, n, batch_size)
        return starts.map(gather, num_parallel_calls=tf.data.AUTOTUNE)

    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
    steps = -(-n // batch_size)  # told to Keras (flat_map hides it; steps_per_execution needs it)
    ds = seeds.flat_map(one_pass).apply(tf.data.experimental.assert_cardinality(steps))
    return ds.prefetch(tf.data.AUTOTUNE)
