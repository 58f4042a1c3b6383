"""Vectorised top-K and rating metrics over the full catalogue (plain numpy, no TFX).

The Evaluator component calls these on embeddings from the trained model's signatures; the
tests call them on hand-worked examples and random data against brute-force references.
Users are streamed in batches, so memory is bounded by ``user_batch x num_movies`` scores.
"""

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

DEFAULT_KS = (1, 10, 100)
_ROW_CHUNK = 1024


def _ranks(scores: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Strictly-greater and tied-other counts of each positive among its user's candidates.

    Args:
      scores: ``[batch_users, num_movies]`` float32 scores.
      rows: ``[n]`` rows of ``scores`` (the users of the positives).
      cols: ``[n]`` columns of ``scores`` (the positive movies).

    Returns:
      Two ``[n]`` int64 arrays: candidates scoring strictly higher, and other candidates
      scoring equal.
    """
    greater = np.empty(len(rows), np.int64)
    ties = np.empty(len(rows), np.int64)
    # Comparing in chunks of rows keeps the boolean temporaries to ~_ROW_CHUNK x num_movies.
    for lo in range(0, len(rows), _ROW_CHUNK):
        r, c = rows[lo : lo + _ROW_CHUNK], cols[lo : lo + _ROW_CHUNK]
        row_scores = scores[r]
        pos = row_scores[np.arange(len(r)), c][:, None]
        greater[lo : lo + len(r)] = (row_scores > pos).sum(axis=1)
        # The positive always ties with itself.
        ties[lo : lo + len(r)] = (row_scores == pos).sum(axis=1) - 1
    return greater, ties


def top_k_metrics(
    user_embeddings: np.ndarray,
    movie_embeddings: np.ndarray,
    eval_users: np.ndarray,
    eval_movies: np.ndarray,
    seen: sp.csr_matrix | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    user_batch: int = 512,
) -> dict[str, float]:
    """Top-K accuracy of held-out (user, movie) pairs, scored against every catalogue movie.

    Two definitions are reported for each K:

    * ``top_k_accuracy_incl_seen@K``: the TFRS ``FactorizedTopK`` categorical accuracy. Every
      catalogue movie is a candidate, the user's train movies included, and ties count in
      the positive's favour (``tf.math.in_top_k`` semantics): a hit when fewer than K
      candidates score strictly higher.
    * ``recall@K``: what a user is shown. The user's train movies are removed from the
      candidates, and ties count against the positive: a hit when fewer than K other
      unseen candidates score higher or equal (a held-out movie the user also rated in
      train is never a hit).

    Both are averaged over the held-out pairs (per interaction).

    Args:
      user_embeddings: ``[num_users, dim]`` float32, row i is user i.
      movie_embeddings: ``[num_movies, dim]`` float32, row j is catalogue movie j.
      eval_users: ``[n]`` int user rows of the held-out pairs.
      eval_movies: ``[n]`` int movie rows of the held-out pairs.
      seen: optional ``[num_users, num_movies]`` sparse matrix, nonzero where the user rated
        the movie in train. Without it nothing is excluded.
      ks: cut-offs.
      user_batch: users scored at once (memory: ``user_batch x num_movies`` float32).

    Returns:
      dict of metric name -> value in [0, 1]; also ``num_eval_pairs``.
    """
    eval_users = np.asarray(eval_users, dtype=np.int64)
    eval_movies = np.asarray(eval_movies, dtype=np.int64)
    n = len(eval_users)
    if n == 0:
        raise ValueError("top_k_metrics: no held-out pairs to evaluate")
    order = np.argsort(eval_users, kind="stable")
    users_sorted = eval_users[order]
    unique_users = np.unique(users_sorted)
    greater_incl = np.empty(n, np.int64)
    greater_excl = np.empty(n, np.int64)
    ties_excl = np.empty(n, np.int64)
    movies_t = np.ascontiguousarray(movie_embeddings.T, dtype=np.float32)
    for start in range(0, len(unique_users), user_batch):
        batch_users = unique_users[start : start + user_batch]
        lo = np.searchsorted(users_sorted, batch_users[0], side="left")
        hi = np.searchsorted(users_sorted, batch_users[-1], side="right")
        idx = order[lo:hi]
        scores = user_embeddings[batch_users].astype(np.float32) @ movies_t
        rows = np.searchsorted(batch_users, eval_users[idx])
        cols = eval_movies[idx]
        greater_incl[idx], _ = _ranks(scores, rows, cols)
        if seen is not None:
            # A held-out movie the user also rated in train is no candidate either: a miss.
            scores[seen[batch_users].toarray().astype(bool)] = -np.inf
        greater_excl[idx], ties_excl[idx] = _ranks(scores, rows, cols)
    result = {"num_eval_pairs": float(n)}
    for k in ks:
        result[f"top_k_accuracy_incl_seen@{k}"] = float(np.mean(greater_incl < k))
        result[f"recall@{k}"] = float(np.mean(greater_excl + ties_excl < k))
    return result


def rating_metrics(predicted: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    """RMSE and MAE of ``[n]`` predicted against ``[n]`` actual ratings."""
    err = np.asarray(predicted, np.float64) - np.asarray(actual, np.float64)
    if len(err) == 0:
        raise ValueError("rating_metrics: no ratings to evaluate")
    return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err)))}


def seen_matrix(users: np.ndarray, movies: np.ndarray, num_users: int, num_movies: int):
    """``[num_users, num_movies]`` CSR matrix with a 1 where a (user, movie) pair occurs."""
    data = np.ones(len(users), dtype=np.int8)
    m = sp.csr_matrix((data, (users, movies)), shape=(num_users, num_movies))
    m.data[:] = 1
    return m
