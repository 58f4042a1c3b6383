"""tf.Transform preprocessing_fn: the user, movie and genre vocabularies.

The TFX Transform component calls ``preprocessing_fn`` (by module path) over the train split.
The vocabularies it writes are the only ones the Trainer and the serving exporters use, so an
id means the same embedding row in training, evaluation and serving.
"""

import tensorflow as tf
import tensorflow_transform as tft

from trainer import features


def _vocabulary_indices(values, vocab_name):
    """Maps strings to vocabulary indices; unknown strings go to index == vocabulary size."""
    return tft.compute_and_apply_vocabulary(
        values, num_oov_buckets=features.NUM_OOV_BUCKETS, vocab_filename=vocab_name
    )


def preprocessing_fn(inputs):
    """Builds vocabularies and maps ids to indices.

    Args:
      inputs: dict of raw features from ExampleGen. Scalars are dense ``[batch, 1]`` tensors,
        ``genres`` is a ``[batch, None]`` tf.SparseTensor of strings.

    Returns:
      dict with ``user_idx`` and ``movie_idx`` (``[batch]`` int64), ``genre_idx``
      (``[batch, None]`` sparse int64) and the ``rating`` label (``[batch]`` float32).
    """
    user_id = tf.reshape(inputs[features.USER_ID], [-1])
    movie_id = tf.reshape(inputs[features.MOVIE_ID], [-1])
    return {
        features.USER_IDX: _vocabulary_indices(user_id, features.USER_VOCAB),
        features.MOVIE_IDX: _vocabulary_indices(movie_id, features.MOVIE_VOCAB),
        features.GENRE_IDX: _vocabulary_indices(inputs[features.GENRES], features.GENRE_VOCAB),
        features.RATING: tf.reshape(tf.cast(inputs[features.RATING], tf.float32), [-1]),
    }
