"""Baselines the Evaluator scores beside the model, on the same split and metric code.

* popularity: every user gets movies ranked by train count;
* EASE (Steck, 2019): an item-item linear model with a closed form (``trainer.ease.fit``,
  which the model's towers use too);
* user+item bias: ``mean + b_user + b_movie`` by regularised alternating least squares, the
  rating baseline.

Plain numpy/scipy, shared by the Evaluator and the tests.
"""

import numpy as np
import scipy.sparse as sp

from evaluation.metrics import ScoreFn
from trainer import ease

EASE_LAMBDA = 300.0


def popularity_scores(train_counts: np.ndarray) -> ScoreFn:
    """Scores every user's candidates by ``[num_movies]`` train counts."""
    counts = np.asarray(train_counts, np.float32)
    return lambda rows: np.broadcast_to(counts, (len(rows), len(counts)))


def fit_ease(
    seen: sp.csr_matrix, lam: float = EASE_LAMBDA, max_movies: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Fits EASE on the binary ``[num_users, num_movies]`` train matrix; above
    ``max_movies`` (default ``trainer.ease.MAX_MOVIES``, the model's own bound) movies, on
    the most rated ones only, and the rest are never recommended.

    Returns:
      ``(movies [m] int rows the model covers, B [m, m] float32 item-item weights)``.
    """
    return ease.fit_most_rated(seen, lam, max_movies)


def ease_scores(seen: sp.csr_matrix, ease: tuple[np.ndarray, np.ndarray]) -> ScoreFn:
    """Scores ``X[rows] @ B``; movies outside the fitted set get -inf."""
    movies, b = ease
    x = seen[:, movies].astype(np.float32).tocsr()
    num_movies = seen.shape[1]

    def score(rows):
        out = np.full((len(rows), num_movies), -np.inf, np.float32)
        out[:, movies] = x[rows] @ b
        return out

    return score


def fit_biases(
    users: np.ndarray,
    movies: np.ndarray,
    ratings: np.ndarray,
    num_users: int,
    num_movies: int,
    reg: float = 5.0,
    iterations: int = 10,
) -> tuple[float, np.ndarray, np.ndarray]:
    """Fits ``rating ~ mean + b_user + b_movie`` with L2 penalty ``reg`` on the biases.

    Args:
      users: ``[n]`` int user rows; movies: ``[n]`` int movie rows; ratings: ``[n]`` float.
      num_users, num_movies: table sizes.
      reg: shrinkage towards zero, in pseudo-ratings.
      iterations: alternating updates.

    Returns:
      ``(mean, user_bias [num_users], movie_bias [num_movies])``.
    """
    ratings = np.asarray(ratings, np.float64)
    mean = float(ratings.mean())
    bu = np.zeros(num_users)
    bm = np.zeros(num_movies)
    nu = np.bincount(users, minlength=num_users)
    nm = np.bincount(movies, minlength=num_movies)
    for _ in range(iterations):
        bm = np.bincount(movies, ratings - mean - bu[users], minlength=num_movies) / (nm + reg)
        bu = np.bincount(users, ratings - mean - bm[movies], minlength=num_users) / (nu + reg)
    return mean, bu, bm


def predict_biases(model, users: np.ndarray, movies: np.ndarray) -> np.ndarray:
    """Predictions ``[n]`` of a ``fit_biases`` result for user and movie rows ``[n]``."""
    mean, bu, bm = model
    return mean + bu[users] + bm[movies]
