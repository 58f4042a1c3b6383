"""The retrieval SavedModel: raw user ids in, top-k unseen movies (ids, titles, scores) out.

The Pusher calls :func:`export_retrieval_model` on a blessed trained model, the full
catalogue and the train ratings. Baked into the SavedModel: the index over every catalogue
movie, the movie titles, and each user's rated (seen) movies, which ``serving_default`` never
returns. ``movierec serve`` (``serving.service``) also calls :data:`SIG_INCLUDING_SEEN` (the
same top-k with seen movies allowed) and :data:`SIG_SEEN` (a user's rated movies), and reads
the catalogue variables (:data:`CATALOGUE_VARIABLES`): ids, titles and each movie's number of
train ratings, its popularity fallback for users the model does not know.
"""

import numpy as np
import tensorflow as tf

from serving import index as index_lib
from trainer import export, features

_PAIR_SEPARATOR = "\x1f"  # joins user and movie ids into one key of the seen table

# Signatures beside serving_default (top-k unseen) and serving_examples.
SIG_INCLUDING_SEEN = "recommend_including_seen"  # user_id -> top-k, rated movies allowed
SIG_SEEN = "seen_movies"  # user_id -> the movies each user rated in train
# Attributes of the saved module holding [num_movies] catalogue tensors, aligned.
CATALOGUE_IDS = "catalogue_movie_ids"  # string
CATALOGUE_TITLES = "catalogue_titles"  # string
CATALOGUE_NUM_RATINGS = "catalogue_num_ratings"  # int64, train ratings of each movie
CATALOGUE_VARIABLES = (CATALOGUE_IDS, CATALOGUE_TITLES, CATALOGUE_NUM_RATINGS)


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
      seen_users, seen_movies: ``[n]`` the train (user id, movie id) pairs, one per rating;
        a movie's number of pairs is its popularity (``catalogue_num_ratings``).
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
        by_user = {}
        for u, m in zip(seen_users, seen_movies, strict=True):
            by_user.setdefault(str(u), {})[str(m)] = None  # a dict keeps order, drops repeats
        # One joined string per user: a table maps a key to one scalar, and an empty table
        # cannot be built, hence the placeholder when nobody has rated anything.
        self.seen_by_user = _string_table(
            list(by_user) or [_PAIR_SEPARATOR],
            [_PAIR_SEPARATOR.join(movies) for movies in by_user.values()] or [""],
            "",
        )
        rated, counts = np.unique(np.asarray(seen_movies, dtype=str), return_counts=True)
        num_ratings = dict(zip(rated, counts, strict=True))
        # Read by name from the loaded SavedModel (CATALOGUE_VARIABLES); no signature uses them.
        self.catalogue_movie_ids = tf.Variable(list(ids), dtype=tf.string, trainable=False)
        self.catalogue_titles = tf.Variable(list(titles), dtype=tf.string, trainable=False)
        self.catalogue_num_ratings = tf.Variable(
            np.array([num_ratings.get(str(m), 0) for m in ids], np.int64), trainable=False
        )

    def _top(self, user_id, mask_seen: bool):
        user = self.trained.user_embedding(user_id)
        scores, movie_ids = self.index(user["embedding"], k=self.num_candidates)
        if mask_seen:
            users = tf.broadcast_to(tf.expand_dims(user_id, 1), tf.shape(movie_ids))
            pair = tf.strings.join([users, movie_ids], separator=_PAIR_SEPARATOR)
            masked = tf.where(self.seen.lookup(pair) > 0, tf.constant(-np.inf), scores)
            scores, position = tf.math.top_k(masked, k=self.k)
            movie_ids = tf.gather(movie_ids, position, batch_dims=1)
        else:  # the index returns its candidates best first
            scores, movie_ids = scores[:, : self.k], movie_ids[:, : self.k]
        return {
            "scores": scores,
            "movie_ids": movie_ids,
            "titles": self.titles.lookup(movie_ids),
            "known_user": user["known"],
        }

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
        return self._top(user_id, mask_seen=True)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def recommend_including_seen(self, user_id):
        """As :meth:`recommend`, but movies the user rated in train may be returned.

        Args:
          user_id: ``[batch]`` string user ids.

        Returns:
          ``scores`` ``[batch, k]`` float32 descending, ``movie_ids`` and ``titles``
          ``[batch, k]`` string, ``known_user`` ``[batch]`` bool.
        """
        return self._top(user_id, mask_seen=False)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def seen_movies(self, user_id):
        """The movies each user rated in train.

        Args:
          user_id: ``[batch]`` string user ids.

        Returns:
          ``movie_ids`` ``[batch, max_count]`` string, each row's first ``count`` entries
          the user's rated movies (in train order), the rest ``""``; ``count`` ``[batch]``
          int64 (0 for an unknown user).
        """
        joined = self.seen_by_user.lookup(user_id)
        movies = tf.strings.split(joined, sep=_PAIR_SEPARATOR)
        count = tf.where(joined == "", tf.zeros(tf.shape(joined), tf.int64), movies.row_lengths())
        return {"movie_ids": movies.to_tensor(default_value=""), "count": count}

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
            SIG_INCLUDING_SEEN: module.recommend_including_seen.get_concrete_function(),
            SIG_SEEN: module.seen_movies.get_concrete_function(),
        },
        options=index_lib.SCANN_SAVE_OPTIONS if index_kind == index_lib.SCANN else None,
    )
