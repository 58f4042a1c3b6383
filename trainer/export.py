"""SavedModel export of the trained model: raw string ids in, scores and embeddings out.

``run_fn`` calls :func:`export_serving_model`. The servable builder wraps the exported model's
``user_embedding`` and ``movie_embedding`` with a retrieval index (``publish.retrieval``), the
Evaluator and the server call its ``rerank`` and rating signatures through
``serving.recommender``.

**Seen data is data, not code.** Each user's history (the movies the user tower reads, and
the movies never recommended again) is kept in two asset files of the SavedModel,
:data:`HISTORIES_ASSET` and :data:`SEEN_PAIRS_ASSET`, read into lookup tables when the model
loads. The Trainer writes the train split's histories (what the Evaluator must see); the
Pusher ships the same graph with the files of every ingested rating (:func:`write_histories`
over a copied SavedModel), so a pushed model never recommends a movie a user rated in any
split, and embeds each user from all of them.
"""

import dataclasses
import json
import os
from collections.abc import Iterable

import numpy as np
import tensorflow as tf

from trainer import features
from trainer.data import Vocabularies
from trainer.model import JointModel

_IDS = tf.TensorSpec([None], tf.string)
_ID_MATRIX = tf.TensorSpec([None, None], tf.string)
# How the tf.Example signatures parse ids (the raw features ExampleGen writes).
EXAMPLE_SPEC = {
    features.USER_ID: tf.io.FixedLenFeature([], tf.string),
    features.MOVIE_ID: tf.io.FixedLenFeature([], tf.string, default_value=""),
}

HISTORIES_ASSET = "histories.tsv"  # user id \t movie ids joined by SEPARATOR, one user a line
SEEN_PAIRS_ASSET = "seen_pairs.txt"  # user id SEPARATOR movie id, one rating a line
SEEN_ASSETS = (HISTORIES_ASSET, SEEN_PAIRS_ASSET)
SEPARATOR = "\x1f"
# A table file cannot be empty; this line's key is never looked up (ids cannot hold SEPARATOR).
_PLACEHOLDER_HISTORY = f"{SEPARATOR}\t{SEPARATOR}\n"
_PLACEHOLDER_PAIR = f"{SEPARATOR}{SEPARATOR}\n"
_FORBIDDEN = ("\t", "\n", "\r", SEPARATOR)


@dataclasses.dataclass(frozen=True)
class Histories:
    """Each user's rated movies, in first-rated order, without repeats.

    Attributes:
      by_user: user id -> its movie ids.
    """

    by_user: dict[str, list[str]]

    @classmethod
    def from_ids(cls, user_ids: Iterable, movie_ids: Iterable) -> "Histories":
        """From ``[n]`` aligned user and movie ids (str or bytes), one per rating."""
        by_user: dict[str, dict[str, None]] = {}
        for u, m in zip(user_ids, movie_ids, strict=True):
            u = u.decode() if isinstance(u, bytes) else str(u)
            m = m.decode() if isinstance(m, bytes) else str(m)
            by_user.setdefault(u, {})[m] = None
        return cls({u: list(ms) for u, ms in by_user.items()})

    @classmethod
    def from_indices(cls, user_idx, movie_idx, vocabularies: Vocabularies) -> "Histories":
        """From ``[n]`` vocabulary indices (out-of-vocabulary rows are skipped)."""
        users, movies = np.asarray(user_idx), np.asarray(movie_idx)
        keep = (users < len(vocabularies.users)) & (movies < len(vocabularies.movies))
        user_names = np.asarray(vocabularies.users, dtype=object)
        movie_names = np.asarray(vocabularies.movies, dtype=object)
        return cls.from_ids(user_names[users[keep]], movie_names[movies[keep]])

    def max_length(self) -> int:
        return max((len(ms) for ms in self.by_user.values()), default=0)


def write_histories(histories: Histories, directory: str) -> dict[str, str]:
    """Writes the two seen-data files into ``directory`` (e.g. a SavedModel's assets).

    Returns:
      asset name -> path written.

    Raises:
      ValueError: naming an id that holds a tab, a line break or the separator.
    """
    tf.io.gfile.makedirs(directory)
    for user, movies in histories.by_user.items():
        for value in (user, *movies):
            if any(c in value for c in _FORBIDDEN):
                raise ValueError(
                    f"id {value!r} of user {user!r} holds a tab, a line break or \\x1f, "
                    "which the seen-data files cannot hold"
                )
    paths = {name: os.path.join(directory, name) for name in SEEN_ASSETS}
    with tf.io.gfile.GFile(paths[HISTORIES_ASSET], "w") as f:
        f.write(_PLACEHOLDER_HISTORY)
        for user, movies in histories.by_user.items():
            f.write(f"{user}\t{SEPARATOR.join(movies)}\n")
    with tf.io.gfile.GFile(paths[SEEN_PAIRS_ASSET], "w") as f:
        f.write(_PLACEHOLDER_PAIR)
        for user, movies in histories.by_user.items():
            f.write("".join(f"{user}{SEPARATOR}{m}\n" for m in movies))
    return paths


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
    """Signatures over a trained :class:`JointModel`, its vocabularies and seen data.

    Args:
      model: the trained model.
      vocabularies: its vocabularies.
      asset_dir: a directory holding the :data:`SEEN_ASSETS` files (:func:`write_histories`).
    """

    def __init__(self, model: JointModel, vocabularies: Vocabularies, asset_dir: str):
        super().__init__()
        self.model = model
        self.num_users = len(vocabularies.users)
        self.num_movies = len(vocabularies.movies)
        self.movie_rows = self.num_movies + features.NUM_OOV_BUCKETS
        self.user_table = lookup_table(vocabularies.users)
        self.movie_table = lookup_table(vocabularies.movies)
        # The vocabularies themselves, readable from a loaded model (``.numpy()``) by tools
        # such as the TFLite parity check; no signature uses them.
        self.user_ids = tf.Variable(vocabularies.users, dtype=tf.string, trainable=False)
        self.movie_ids = tf.Variable(vocabularies.movies, dtype=tf.string, trainable=False)
        self.histories_file = tf.saved_model.Asset(os.path.join(asset_dir, HISTORIES_ASSET))
        self.seen_pairs_file = tf.saved_model.Asset(os.path.join(asset_dir, SEEN_PAIRS_ASSET))
        self.histories = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                self.histories_file, tf.string, 0, tf.string, 1, delimiter="\t"
            ),
            default_value="",
        )
        self.seen_pairs = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                self.seen_pairs_file,
                tf.string,
                tf.lookup.TextFileIndex.WHOLE_LINE,
                tf.int64,
                tf.lookup.TextFileIndex.LINE_NUMBER,
            ),
            default_value=tf.constant(-1, tf.int64),
        )

    def _history_ids(self, user_id):
        """``[batch]`` user ids -> ``[batch, None]`` ragged movie ids of their histories."""
        joined = self.histories.lookup(user_id)
        ragged = tf.strings.split(joined, sep=SEPARATOR)
        # "" splits into [""]: an unknown user has no history.
        return tf.ragged.boolean_mask(ragged, tf.strings.length(ragged) > 0)

    def _history_matrix(self, movie_ids: tf.RaggedTensor) -> tf.SparseTensor:
        """``[batch, None]`` ragged movie ids -> ``[batch, movie rows]`` sparse 0/1."""
        idx = self.movie_table.lookup(movie_ids.flat_values)
        rows = movie_ids.value_rowids()
        known = idx < self.num_movies
        key = tf.unique(tf.boolean_mask(rows * self.movie_rows + idx, known)).y
        indices = tf.stack([key // self.movie_rows, key % self.movie_rows], axis=1)
        batch = tf.cast(movie_ids.nrows(), tf.int64)
        return tf.sparse.reorder(
            tf.SparseTensor(
                indices, tf.ones_like(key, tf.float32), tf.stack([batch, self.movie_rows])
            )
        )

    def _embed(self, movie_ids: tf.RaggedTensor):
        history = self._history_matrix(movie_ids)
        count = tf.math.bincount(
            tf.cast(history.indices[:, 0], tf.int32),
            minlength=tf.cast(movie_ids.nrows(), tf.int32),
        )
        return {"embedding": self.model.user_vectors(history), "known": count > 0}

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
        """User ids ``[batch]`` -> ``embedding`` ``[batch, dim]`` from each user's history in
        the seen data, ``known`` ``[batch]`` bool (the user has a history)."""
        return self._embed(self._history_ids(user_id))

    @tf.function(input_signature=[_ID_MATRIX])
    def history_embedding(self, movie_ids):
        """Histories ``[batch, n]`` of movie ids ("" pads; unknown ids are skipped) ->
        ``embedding`` ``[batch, dim]``, ``known`` ``[batch]`` (a known movie was given)."""
        ragged = tf.RaggedTensor.from_tensor(movie_ids, padding="")
        return self._embed(ragged)

    @tf.function(input_signature=[_IDS])
    def movie_embedding(self, movie_id):
        """Movie ids ``[batch]`` -> ``embedding`` ``[batch, dim]``, ``known`` ``[batch]`` bool."""
        idx = self.movie_table.lookup(movie_id)
        return {"embedding": self.model.movie_vectors(idx), "known": idx < self.num_movies}

    @tf.function(input_signature=[_IDS, _ID_MATRIX, tf.TensorSpec([None, None], tf.float32)])
    def rerank(self, user_id, movie_ids, retrieval_scores):
        """The served order of retrieval candidates.

        Args:
          user_id: ``[batch]`` user ids.
          movie_ids: ``[batch, n]`` candidates, best retrieval score first.
          retrieval_scores: ``[batch, n]`` their retrieval scores; -inf marks no candidate.

        Returns:
          ``scores`` ``[batch, n]`` float32 (higher is served first; -inf stays -inf) and
          ``ratings`` ``[batch, n]`` float32 predicted ratings.
        """
        scores, ratings = self.model.rerank(
            self.user_table.lookup(user_id), self.movie_table.lookup(movie_ids), retrieval_scores
        )
        return {"scores": scores, "ratings": ratings}

    @tf.function(input_signature=[_IDS])
    def seen_movies(self, user_id):
        """The movies of each user's history in the seen data.

        Returns:
          ``movie_ids`` ``[batch, max_count]`` string, each row's first ``count`` entries
          the user's movies (first rated first), the rest ``""``; ``count`` ``[batch]`` int64.
        """
        ragged = self._history_ids(user_id)
        return {"movie_ids": ragged.to_tensor(default_value=""), "count": ragged.row_lengths()}

    @tf.function(input_signature=[_IDS, _ID_MATRIX])
    def is_seen(self, user_id, movie_ids):
        """``[batch, n]`` bool: movie ``movie_ids[i, j]`` is in user ``user_id[i]``'s history."""
        users = tf.broadcast_to(tf.expand_dims(user_id, 1), tf.shape(movie_ids))
        pairs = tf.strings.join([users, movie_ids], separator=SEPARATOR)
        return self.seen_pairs.lookup(pairs) >= 0


CHOICES_FILE = "choices.json"  # under assets.extra/: what the Trainer chose (trainer.run)


def export_serving_model(
    model: JointModel,
    vocabularies: Vocabularies,
    histories: Histories,
    path: str,
    choices: dict | None = None,
) -> None:
    """Saves the model with its signatures and ``histories`` as its seen data; ``choices``
    (``trainer.run.Choices.to_dict``) go to ``assets.extra/choices.json`` for a refit."""
    staging = os.path.join(path + ".assets-staging")
    write_histories(histories, staging)
    module = ServingModule(model, vocabularies, staging)
    signatures = {
        features.SIG_RATING: module.rating.get_concrete_function(),
        features.SIG_USER_EMBEDDING: module.user_embedding.get_concrete_function(),
        features.SIG_MOVIE_EMBEDDING: module.movie_embedding.get_concrete_function(),
        features.SIG_EXAMPLES: module.rating_from_examples.get_concrete_function(),
        features.SIG_HISTORY_EMBEDDING: module.history_embedding.get_concrete_function(),
        features.SIG_RERANK: module.rerank.get_concrete_function(),
        features.SIG_SEEN: module.seen_movies.get_concrete_function(),
    }
    tf.saved_model.save(module, path, signatures=signatures)
    tf.io.gfile.rmtree(staging)
    if choices is not None:
        tf.io.gfile.makedirs(os.path.join(path, "assets.extra"))
        with tf.io.gfile.GFile(os.path.join(path, "assets.extra", CHOICES_FILE), "w") as f:
            f.write(json.dumps(choices))


def read_choices(saved_model_dir: str):
    """The ``trainer.run.Choices`` an exported model was trained with.

    Raises:
      FileNotFoundError: naming the file when the model has none (exported without).
    """
    from trainer.run import Choices  # run imports this module

    path = os.path.join(saved_model_dir, "assets.extra", CHOICES_FILE)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path}: the model records no choices to refit with")
    with tf.io.gfile.GFile(path) as f:
        return Choices.from_dict(json.load(f))


def replace_seen_data(saved_model_dir: str, histories: Histories) -> None:
    """Rewrites the seen-data assets of an exported (or derived) SavedModel in place.

    The graph is unchanged: its tables read whatever the files hold when the model loads.

    Raises:
      FileNotFoundError: when the SavedModel has no seen-data assets.
    """
    assets = os.path.join(saved_model_dir, "assets")
    missing = [n for n in SEEN_ASSETS if not tf.io.gfile.exists(os.path.join(assets, n))]
    if missing:
        raise FileNotFoundError(f"{saved_model_dir} has no seen-data assets {missing}")
    write_histories(histories, assets)
