"""SavedModel export of the trained model: raw string ids in, ratings and embeddings out.

``run_fn`` calls :func:`export_serving_model`. The Evaluator calls the signatures of the
exported model (so it measures what is served), and the Pusher wraps its ``user_embedding``
signature with a retrieval index.
"""

import tensorflow as tf

from trainer import features
from trainer.data import Vocabularies
from trainer.model import JointModel

_IDS = tf.TensorSpec([None], tf.string)
# How the tf.Example signatures parse ids (the raw features ExampleGen writes).
EXAMPLE_SPEC = {
    features.USER_ID: tf.io.FixedLenFeature([], tf.string),
    features.MOVIE_ID: tf.io.FixedLenFeature([], tf.string, default_value=""),
}


def lookup_table(vocabulary: list[str]) -> tf.lookup.StaticHashTable:
    """String id -> vocabulary index, unknown ids -> ``len(vocabulary)`` (the OOV row).

    This matches ``tft.compute_and_apply_vocabulary(..., num_oov_buckets=1)``, so served ids
    hit the same embedding rows as in training.
    """
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(vocabulary, tf.string),
            tf.range(len(vocabulary), dtype=tf.int64),
        ),
        default_value=tf.constant(len(vocabulary), tf.int64),
    )


class ServingModule(tf.Module):
    """Signatures over a trained :class:`JointModel` and its vocabularies."""

    def __init__(self, model: JointModel, vocabularies: Vocabularies):
        super().__init__()
        self.model = model
        self.num_users = len(vocabularies.users)
        self.num_movies = len(vocabularies.movies)
        self.user_table = lookup_table(vocabularies.users)
        self.movie_table = lookup_table(vocabularies.movies)
        # The vocabularies themselves, readable from a loaded model (``.numpy()``) by tools
        # such as the TFLite parity check; no signature uses them.
        self.user_ids = tf.Variable(vocabularies.users, dtype=tf.string, trainable=False)
        self.movie_ids = tf.Variable(vocabularies.movies, dtype=tf.string, trainable=False)

    @tf.function(input_signature=[_IDS, _IDS])
    def rating(self, user_id, movie_id):
        """Predicted ratings: ``[batch]`` string ids -> ``{"rating": [batch] float32}``."""
        user_idx = self.user_table.lookup(user_id)
        movie_idx = self.movie_table.lookup(movie_id)
        return {"rating": self.model.predict_rating(user_idx, movie_idx)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=features.EXAMPLES_INPUT)])
    def rating_from_examples(self, examples):
        """Serialized tf.Examples with ``user_id`` and ``movie_id`` -> ``{"rating": [batch]}``."""
        parsed = tf.io.parse_example(examples, EXAMPLE_SPEC)
        return self.rating(parsed[features.USER_ID], parsed[features.MOVIE_ID])

    @tf.function(input_signature=[_IDS])
    def user_embedding(self, user_id):
        """User ids ``[batch]`` -> ``embedding`` ``[batch, dim]``, ``known`` ``[batch]`` bool."""
        idx = self.user_table.lookup(user_id)
        return {"embedding": self.model.user_tower(idx), "known": idx < self.num_users}

    @tf.function(input_signature=[_IDS])
    def movie_embedding(self, movie_id):
        """Movie ids ``[batch]`` -> ``embedding`` ``[batch, dim]``, ``known`` ``[batch]`` bool."""
        idx = self.movie_table.lookup(movie_id)
        return {"embedding": self.model.movie_tower(idx), "known": idx < self.num_movies}


def export_serving_model(model: JointModel, vocabularies: Vocabularies, path: str) -> None:
    """Saves the model with its rating, user_embedding, movie_embedding and tf.Example
    signatures."""
    module = ServingModule(model, vocabularies)
    signatures = {
        features.SIG_RATING: module.rating.get_concrete_function(),
        features.SIG_USER_EMBEDDING: module.user_embedding.get_concrete_function(),
        features.SIG_MOVIE_EMBEDDING: module.movie_embedding.get_concrete_function(),
        features.SIG_EXAMPLES: module.rating_from_examples.get_concrete_function(),
    }
    tf.saved_model.save(module, path, signatures=signatures)
