"""Baselines the Evaluator scores beside the model, on the same split and metric code.

Popularity ranks every movie by its train count; the user+item bias model predicts
``mean + b_user + b_movie`` fitted by regularised alternating least squares. Both are plain
numpy so the Evaluator and the tests share them.
"""

import numpy as np


def popularity_embeddings(train_movies: np.ndarray, num_users: int, num_movies: int):
    """Popularity as a factorised model: score(user, movie) = train count of the movie.

    Args:
      train_movies: ``[n]`` int movie rows of the train pairs.
      num_users: number of user rows.
      num_movies: number of catalogue movies.

    Returns:
      ``([num_users, 1], [num_movies, 1])`` float32 user and movie "embeddings", ready for
      ``metrics.top_k_metrics``.
    """
    counts = np.bincount(train_movies, minlength=num_movies).astype(np.float32)
    return np.ones((num_users, 1), np.float32), counts[:, None]


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
