"""The retrieval SavedModel: raw user ids in, top-k unseen movies (ids, titles, scores) out.

The servable builder (``components.servables``) calls :func:`export_retrieval_model` on a
trained model and the whole catalogue. The SavedModel wraps the trained model's towers with
an index over every catalogue movie; the user tower and the seen filter read the trained
model's seen-data assets (``trainer.export``), which this SavedModel carries too, so the
Pusher swaps in the histories of every ingested rating without changing the graph. Besides
``serving_default`` (top-k unseen) it has :data:`names.SIG_INCLUDING_SEEN`,
:data:`names.SIG_SEEN`, :data:`names.SIG_FROM_HISTORY` (a new user's stated favourites in,
the rest of the catalogue ranked) and the catalogue variables
(:data:`names.CATALOGUE_VARIABLES`) that ``serving.recommender`` reads.
"""

import numpy as np
import tensorflow as tf

from publish import index as index_lib
from serving import names, service
from trainer import export, features


def _string_table(keys, values, default) -> tf.lookup.StaticHashTable:
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(keys, tf.string), tf.constant(values)),
        default_value=default,
    )


class RetrievalModule(tf.Module):
    """Wraps the trained model's towers with a top-k index and the catalogue.

    Args:
      trained: the loaded Trainer SavedModel (``trainer.export`` signatures and functions).
      topk: an index (``publish.index``) returning ``num_candidates`` movies per query.
      ids: ``[num_movies]`` catalogue movie ids; titles: ``[num_movies]`` their titles;
        num_ratings: ``[num_movies]`` int64 train ratings of each (the popularity fallback).
      k: movies returned per user.
      num_candidates: movies retrieved before the seen ones are dropped: ``k`` plus the
        longest history the seen data may hold (capped at the catalogue), so every user
        gets k unseen movies whenever the catalogue has them.
    """

    def __init__(self, trained, topk, ids, titles, num_ratings, k, num_candidates):
        super().__init__()
        self.trained = trained
        self.index = topk
        self.k = k
        self.num_candidates = num_candidates
        self.titles = _string_table(list(ids), list(titles), "")
        # Read by name from the loaded SavedModel; no signature uses them.
        self.catalogue_movie_ids = tf.Variable(list(ids), dtype=tf.string, trainable=False)
        self.catalogue_titles = tf.Variable(list(titles), dtype=tf.string, trainable=False)
        self.catalogue_num_ratings = tf.Variable(np.asarray(num_ratings, np.int64), trainable=False)

    def _top(self, embedding, seen):
        """Top-k of ``[batch, dim]`` queries; ``seen(movie_ids)`` -> ``[batch, n]`` bool or None."""
        scores, movie_ids = self.index(embedding, k=self.num_candidates)
        if seen is not None:
            masked = tf.where(seen(movie_ids), tf.constant(-np.inf), scores)
            scores, position = tf.math.top_k(masked, k=self.k)
            movie_ids = tf.gather(movie_ids, position, batch_dims=1)
        else:  # the index returns its candidates best first
            scores, movie_ids = scores[:, : self.k], movie_ids[:, : self.k]
        return scores, movie_ids

    def _result(self, scores, movie_ids, known):
        return {
            "scores": scores,
            "movie_ids": movie_ids,
            "titles": self.titles.lookup(movie_ids),
            "known_user": known,
        }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def recommend(self, user_id):
        """Top-k movies per user, without the movies of the user's history.

        Args:
          user_id: ``[batch]`` string user ids (a user without a history gets the embedding
            of an empty history; ``known_user`` is false).

        Returns:
          ``scores`` ``[batch, k]`` float32 (descending; -inf pads a user who has seen all
          but fewer than k movies), ``movie_ids`` and ``titles`` ``[batch, k]`` string,
          ``known_user`` ``[batch]`` bool.
        """
        user = self.trained.user_embedding(user_id)
        scores, movie_ids = self._top(
            user["embedding"], lambda movies: self.trained.is_seen(user_id, movies)
        )
        return self._result(scores, movie_ids, user["known"])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def recommend_including_seen(self, user_id):
        """As :meth:`recommend`, but movies of the user's history may be returned."""
        user = self.trained.user_embedding(user_id)
        scores, movie_ids = self._top(user["embedding"], None)
        return self._result(scores, movie_ids, user["known"])

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.string)])
    def recommend_from_history(self, movie_ids):
        """Top-k for users described by movies they like (a new user's stated favourites).

        Args:
          movie_ids: ``[batch, n]`` movie ids ("" pads); unknown ids are skipped.

        Returns:
          As :meth:`recommend`; the given movies are never returned; ``known_user`` is
          whether any given movie is known to the model.
        """
        user = self.trained.history_embedding(movie_ids)

        def given(candidates):
            return tf.reduce_any(candidates[:, :, None] == movie_ids[:, None, :], axis=2)

        scores, top = self._top(user["embedding"], given)
        return self._result(scores, top, user["known"])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def seen_movies(self, user_id):
        """The movies of each user's history: ``movie_ids`` ``[batch, n]``, ``count``."""
        return self.trained.seen_movies(user_id)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=features.EXAMPLES_INPUT)])
    def recommend_from_examples(self, examples):
        """Serialized tf.Examples with a ``user_id`` feature -> as :meth:`recommend`."""
        parsed = tf.io.parse_example(examples, export.EXAMPLE_SPEC)
        return self.recommend(parsed[features.USER_ID])


def export_retrieval_model(
    trained_model_dir: str,
    movie_ids: np.ndarray,
    titles: np.ndarray,
    num_ratings: np.ndarray,
    max_history: int,
    path: str,
    index_kind: str = "scann",
    k: int = 100,
) -> None:
    """Builds the index over the catalogue and saves the retrieval SavedModel to ``path``.

    Args:
      trained_model_dir: the Trainer's SavedModel (``trainer.export`` signatures).
      movie_ids: ``[num_movies]`` str ids of the whole catalogue.
      titles: ``[num_movies]`` str titles, aligned with ``movie_ids``.
      num_ratings: ``[num_movies]`` train ratings of each movie.
      max_history: the longest history the served seen data holds (sizes the candidates).
      path: output directory.
      index_kind: ``"scann"`` or ``"brute_force"``.
      k: movies returned per user (capped at the catalogue size).
    """
    trained = tf.saved_model.load(trained_model_dir)
    num_movies = len(movie_ids)
    k = min(k, num_movies)
    num_candidates = min(num_movies, k + int(max_history))
    embeddings = service.movie_embeddings(trained, movie_ids)
    topk = index_lib.build_index(
        index_kind, np.asarray(movie_ids, dtype=object), embeddings, num_candidates
    )
    module = RetrievalModule(trained, topk, movie_ids, titles, num_ratings, k, num_candidates)
    tf.saved_model.save(
        module,
        path,
        signatures={
            "serving_default": module.recommend.get_concrete_function(),
            features.SIG_EXAMPLES: module.recommend_from_examples.get_concrete_function(),
            names.SIG_INCLUDING_SEEN: module.recommend_including_seen.get_concrete_function(),
            names.SIG_SEEN: module.seen_movies.get_concrete_function(),
            names.SIG_FROM_HISTORY: module.recommend_from_history.get_concrete_function(),
        },
        options=index_lib.SCANN_SAVE_OPTIONS if index_kind == index_lib.SCANN else None,
    )
