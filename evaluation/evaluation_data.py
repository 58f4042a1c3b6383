"""The Evaluator's inputs as row-indexed arrays: users, catalogue, train/eval pairs, slices.

Built by the ``MovieRecEvaluator`` executor from ExampleGen's splits (and by tests from
hand-made columns); ``evaluation.evaluate.evaluate`` scores everything against it.
"""

import dataclasses
import functools

import numpy as np
import scipy.sparse as sp

from data import examples_io
from evaluation import metrics
from trainer import features

RATING_KEYS = (features.USER_ID, features.MOVIE_ID, features.RATING)
EVAL_KEYS = RATING_KEYS + (features.USER_AGE, features.USER_GENDER)

# Slice buckets as (exclusive upper bound, label), in display order; None: no bound.
HISTORY_BUCKETS = ((21, "<=20"), (101, "21-100"), (None, ">100"))
AGE_BUCKETS = (
    (1, "unknown"),
    (18, "<18"),
    (25, "18-24"),
    (35, "25-34"),
    (45, "35-44"),
    (55, "45-54"),
    (None, "55+"),
)
_ORDER = {
    "user_history": [label for _, label in HISTORY_BUCKETS],
    "age": [label for _, label in AGE_BUCKETS],
    "movie_popularity_decile": [str(d) for d in range(1, 11)],
}


def _bucket(values: np.ndarray, buckets) -> np.ndarray:
    """Label of the first bucket whose exclusive upper bound exceeds each value."""
    out = np.empty(len(values), dtype=object)
    out[:] = buckets[-1][1]
    for bound, label in reversed(buckets[:-1]):
        out[values < bound] = label
    return out


def ordered_labels(family: str, labels: np.ndarray) -> list[str]:
    """The labels present in ``labels``, in display order."""
    present = set(labels.tolist())
    order = _ORDER.get(family, sorted(present))
    return [label for label in order if label in present]


def _rows(ids: np.ndarray, row_of: dict, what: str) -> np.ndarray:
    try:
        return np.fromiter((row_of[i] for i in ids), dtype=np.int64, count=len(ids))
    except KeyError as e:
        raise ValueError(
            f"a rating names {what} id {e.args[0]!r}, which is not in the catalogue"
        ) from e


@dataclasses.dataclass(frozen=True)
class EvaluationData:
    """Train and eval pairs as rows into ``user_ids`` and ``movie_ids``.

    Attributes:
      user_ids: ``[num_users]`` str, every user of either split (sorted).
      movie_ids: ``[num_movies]`` str, the whole catalogue.
      train_users, train_movies: ``[n_train]`` int rows; train_ratings: ``[n_train]`` float.
      eval_users, eval_movies: ``[n_eval]`` int rows; eval_ratings: ``[n_eval]`` float.
      eval_ages: ``[n_eval]`` int (0 unknown); eval_genders: ``[n_eval]`` str ("" unknown).
    """

    user_ids: np.ndarray
    movie_ids: np.ndarray
    train_users: np.ndarray
    train_movies: np.ndarray
    train_ratings: np.ndarray
    eval_users: np.ndarray
    eval_movies: np.ndarray
    eval_ratings: np.ndarray
    eval_ages: np.ndarray
    eval_genders: np.ndarray

    @classmethod
    def from_columns(cls, train: dict, eval_: dict, catalogue_ids: np.ndarray) -> "EvaluationData":
        """Maps raw string columns (``examples_io.read_columns`` output) to rows.

        Raises:
          ValueError: naming a movie id of the ratings missing from the catalogue, or when
            the eval split is empty.
        """
        if len(eval_[features.USER_ID]) == 0:
            raise ValueError("the eval split is empty: nothing to evaluate")
        movie_ids = np.asarray(catalogue_ids, dtype=object)
        movie_row = {m: i for i, m in enumerate(movie_ids)}
        user_ids = np.array(
            sorted(set(train[features.USER_ID]) | set(eval_[features.USER_ID])), dtype=object
        )
        user_row = {u: i for i, u in enumerate(user_ids)}
        n_eval = len(eval_[features.USER_ID])
        return cls(
            user_ids=user_ids,
            movie_ids=movie_ids,
            train_users=_rows(train[features.USER_ID], user_row, "user"),
            train_movies=_rows(train[features.MOVIE_ID], movie_row, "movie"),
            train_ratings=np.asarray(train[features.RATING], np.float64),
            eval_users=_rows(eval_[features.USER_ID], user_row, "user"),
            eval_movies=_rows(eval_[features.MOVIE_ID], movie_row, "movie"),
            eval_ratings=np.asarray(eval_[features.RATING], np.float64),
            eval_ages=np.asarray(eval_.get(features.USER_AGE, np.zeros(n_eval)), np.int64),
            eval_genders=np.asarray(eval_.get(features.USER_GENDER, [""] * n_eval), dtype=object),
        )

    @classmethod
    def read(cls, examples_uri: str, catalogue_uri: str) -> "EvaluationData":
        """Reads ExampleGen's train and eval splits and catalogue, as the Evaluator does.

        Raises:
          ValueError: as :meth:`from_columns`.
          FileNotFoundError: naming a split directory that holds no examples.
        """
        return cls.from_columns(
            train=examples_io.read_columns(examples_uri, features.TRAIN_SPLIT, RATING_KEYS),
            eval_=examples_io.read_columns(examples_uri, features.EVAL_SPLIT, EVAL_KEYS),
            catalogue_ids=examples_io.read_columns(
                catalogue_uri, features.CATALOGUE_SPLIT, (features.MOVIE_ID,)
            )[features.MOVIE_ID],
        )

    @functools.cached_property
    def seen(self) -> sp.csr_matrix:
        """``[num_users, num_movies]`` 0/1 matrix of the train pairs."""
        return metrics.seen_matrix(
            self.train_users, self.train_movies, len(self.user_ids), len(self.movie_ids)
        )

    @functools.cached_property
    def train_counts(self) -> np.ndarray:
        """``[num_movies]`` train ratings per catalogue movie."""
        return np.bincount(self.train_movies, minlength=len(self.movie_ids))

    def slice_labels(self) -> dict[str, np.ndarray]:
        """Slice family -> ``[n_eval]`` label of each eval pair.

        Families: ``user_history`` (the user's train ratings: <=20, 21-100, >100), ``age``,
        ``gender`` and ``movie_popularity_decile`` (1 = least rated tenth of the catalogue,
        10 = most rated).
        """
        history = np.bincount(self.train_users, minlength=len(self.user_ids))[self.eval_users]
        pct = metrics.popularity_percentiles(self.train_counts)[self.eval_movies]
        decile = np.minimum(10, np.floor(pct / 10.0).astype(int) + 1)
        genders = np.where(self.eval_genders == "", "unknown", self.eval_genders)
        return {
            "user_history": _bucket(history, HISTORY_BUCKETS),
            "age": _bucket(self.eval_ages, AGE_BUCKETS),
            "gender": genders.astype(object),
            "movie_popularity_decile": np.array([str(d) for d in decile], dtype=object),
        }
