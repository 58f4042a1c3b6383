"""The retrieval SavedModel: raw user ids in, top-k unseen movies (ids, titles, scores) out.

The Pusher calls :func:`export_retrieval_model` on a blessed trained model, the full
catalogue and the train ratings. Baked into the SavedModel: the index over every catalogue
movie, the movie titles, and each user's rated (seen) movies, which are never returned.
"""

import numpy as np
import tensorflow as tf

from serving import index as index_lib
from trainer import export, features

_PAIR_SEPARATOR = "\x1f"  # joins user and movie ids into one key of the seen table


def _string_table(keys, values, default) -> tf.lookup.StaticHashTable:
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(keys, tf.string), tf.constant(values)),
        default_value=default,
    )


class RetrievalModule(tf.Module):
    """Wraps the trained model's user tower with a top-k index, titles and seen movies.

    Args:
      trained: the loaded Trainer SavedModel (``user_embedding`` signature).
      topk: an index (``serving.index``) returning ``num_candidates`` movies per query.
      ids: ``[num_movies]`` catalogue movie ids; titles: ``[num_movies]`` their titles.
      seen_users, seen_movies: ``[n]`` the train (user id, movie id) pairs.
      k: movies returned per user.
      num_candidates: movies retrieved before the seen ones are dropped; ``k`` plus the
        largest number of movies one user has seen (capped at the catalogue), so every user
        gets k unseen movies whenever the catalogue has them.
    """

    def __init__(self, trained, topk, ids, titles, seen_users, seen_movies, k, num_candidates):
        super().__init__()
        self.trained = trained
        self.index = topk
        self.k = k
        self.num_candidates = num_candidates
        self.titles = _string_table(list(ids), list(titles), "")
        keys = [f"{u}{_PAIR_SEPARATOR}{m}" for u, m in zip(seen_users, seen_movies, strict=True)]
        if not keys:  # a table cannot be empty; this key can never be looked up
            keys = [_PAIR_SEPARATOR]
        self.seen = _string_table(keys, np.ones(len(keys), np.int64), np.int64(0))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def recommend(self, user_id):
        """Top-k movies per user, without the movies the user rated in train.

        Args:
          user_id: ``[batch]`` string user ids (unknown ids get the out-of-vocabulary user).

        Returns:
          ``scores`` ``[batch, k]`` float32 (descending; -inf pads a user who has seen all
          but fewer than k movies), ``movie_ids`` and ``titles`` ``[batch, k]`` string,
          ``known_user`` ``[batch]`` bool.
        """
        user = self.trained.user_embedding(user_id)
        scores, movie_ids = self.index(user["embedding"], k=self.num_candidates)
        users = tf.broadcast_to(tf.expand_dims(user_id, 1), tf.shape(movie_ids))
        pair = tf.strings.join([users, movie_ids], separator=_PAIR_SEPARATOR)
        scores = tf.where(self.seen.lookup(pair) > 0, tf.constant(-np.inf, tf.float32), scores)
        top_scores, position = tf.math.top_k(scores, k=self.k)
        top_ids = tf.gather(movie_ids, position, batch_dims=1)
        return {
            "scores": top_scores,
            "movie_ids": top_ids,
            "titles": self.titles.lookup(top_ids),
            "known_user": user["known"],
        }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=features.EXAMPLES_INPUT)])
    def recommend_from_examples(self, examples):
        """Serialized tf.Examples with a ``user_id`` feature -> as :meth:`recommend`."""
        parsed = tf.io.parse_example(examples, export.EXAMPLE_SPEC)
        return self.recommend(parsed[features.USER_ID])


def movie_embeddings(trained, movie_ids: np.ndarray, batch: int = 8192) -> np.ndarray:
    """``[n]`` str movie ids -> ``[n, dim]`` float32 embeddings from the trained model."""
    fn = trained.signatures[features.SIG_MOVIE_EMBEDDING]
    parts = [
        fn(**{features.MOVIE_ID: tf.constant(list(movie_ids[lo : lo + batch]))})[
            "embedding"
        ].numpy()
        for lo in range(0, len(movie_ids), batch)
    ]
    return np.concatenate(parts)


def export_retrieval_model(
    trained_model_dir: str,
    movie_ids: np.ndarray,
    titles: np.ndarray,
    seen_users: np.ndarray,
    seen_movies: np.ndarray,
    path: str,
    index_kind: str = "scann",
    k: int = 100,
) -> None:
    """Builds the index over the catalogue and saves the retrieval SavedModel to ``path``.

    Args:
      trained_model_dir: the Trainer's SavedModel (``trainer.export`` signatures).
      movie_ids: ``[num_movies]`` str ids of the whole catalogue.
      titles: ``[num_movies]`` str titles, aligned with ``movie_ids``.
      seen_users, seen_movies: ``[n]`` str ids of the train ratings (never recommended).
      path: output directory.
      index_kind: ``"scann"`` or ``"brute_force"``.
      k: movies returned per user (capped at the catalogue size).
    """
    trained = tf.saved_model.load(trained_model_dir)
    num_movies = len(movie_ids)
    k = min(k, num_movies)
    _, per_user = np.unique(np.asarray(seen_users, dtype=str), return_counts=True)
    num_candidates = min(num_movies, k + int(per_user.max(initial=0)))
    embeddings = movie_embeddings(trained, movie_ids)
    topk = index_lib.build_index(
        index_kind, np.asarray(movie_ids, dtype=object), embeddings, num_candidates
    )
    module = RetrievalModule(
        trained, topk, movie_ids, titles, seen_users, seen_movies, k, num_candidates
    )
    tf.saved_model.save(
        module,
        path,
        signatures={
            "serving_default": module.recommend.get_concrete_function(),
            features.SIG_EXAMPLES: module.recommend_from_examples.get_concrete_function(),
        },
        options=index_lib.SCANN_SAVE_OPTIONS if index_kind == index_lib.SCANN else None,
    )
