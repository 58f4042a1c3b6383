"""EASE (Steck, 2019), the item-item linear model, and its low-rank form for the towers.

``B = I - P diagMat(1 / diag(P))`` with ``P = (X^T X + lambda I)^-1`` and a zero diagonal, so a
user's scores are ``x_u B``. The Trainer keeps a rank-r factorisation ``B ~ L R^T`` inside the
retrieval towers (user side ``x_u L``, movie side row j of ``R``), so EASE stays one dot
product that a ScaNN index can serve; on MovieLens 100k rank 128 loses nothing (recall@10
0.173 exact and at ranks 64 to 512). The Evaluator's EASE baseline
(``evaluation.baselines``) calls :func:`fit_most_rated` too.

EASE is the one piece of the model that grows with the square of the catalogue (an n x n
inverse: O(n^3) time and several n x n float64 copies). Above :data:`MAX_MOVIES` movies it is
fitted on the most-rated ones only (:func:`fit_most_rated`); the others get zero EASE
weights, so the autoencoder alone scores them. Plain numpy/scipy.
"""

import numpy as np
import scipy.sparse as sp

# Measured on 2 cores (one fit, float64 inverse): 4,000 movies 4.0 s and 0.65 GB peak; 8,000
# 24.9 s, 2.2 GB; 10,000 45.8 s, 3.2 GB (time grows as n^2.6-2.8). A ml-20m catalogue (27k)
# would be ~12 minutes and ~25 GB per penalty tried; the Trainer fits it 5 times.
MAX_MOVIES = 10_000


def fit(x: sp.spmatrix, lam: float) -> np.ndarray:
    """EASE weights of a binary ``[num_users, num_movies]`` matrix.

    Args:
      x: 0/1 user x movie interactions.
      lam: ridge penalty (> 0).

    Returns:
      ``[num_movies, num_movies]`` float32 ``B`` with a zero diagonal.
    """
    x = sp.csr_matrix(x, dtype=np.float64)
    gram = (x.T @ x).toarray()
    gram[np.diag_indices_from(gram)] += lam
    p = np.linalg.inv(gram)
    b = -p / np.diag(p)
    b[np.diag_indices_from(b)] = 0.0
    return b.astype(np.float32)


def most_rated(x: sp.spmatrix, max_movies: int | None = None) -> np.ndarray:
    """Sorted column indices of the ``max_movies`` (default :data:`MAX_MOVIES`) most-rated
    columns of ``x`` (ties: the lower index); every column when ``x`` has no more."""
    max_movies = MAX_MOVIES if max_movies is None else max_movies
    n = x.shape[1]
    if n <= max_movies:
        return np.arange(n)
    counts = np.asarray(x.sum(axis=0)).ravel()
    return np.sort(np.argsort(-counts, kind="stable")[:max_movies])


def fit_most_rated(
    x: sp.spmatrix, lam: float, max_movies: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """EASE on the ``max_movies`` (default :data:`MAX_MOVIES`) most-rated columns of ``x``.

    Returns:
      ``(movies [m] sorted column indices covered, B [m, m] float32)``.
    """
    movies = most_rated(x, max_movies)
    x = sp.csr_matrix(x)
    return movies, fit(x if len(movies) == x.shape[1] else x[:, movies], lam)


def low_rank_rows(
    movies: np.ndarray, b: np.ndarray, num_movies: int, rank: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`low_rank` of the covered movies' ``B``, laid into ``[num_movies, r]`` factors
    whose rows of uncovered movies are zero (those movies get no EASE score)."""
    left, right = low_rank(b, rank, seed)
    if len(movies) == num_movies:
        return left, right
    full_left = np.zeros((num_movies, left.shape[1]), np.float32)
    full_right = np.zeros((num_movies, right.shape[1]), np.float32)
    full_left[movies], full_right[movies] = left, right
    return full_left, full_right


def low_rank(b: np.ndarray, rank: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A rank-``rank`` factorisation ``B ~ L @ R.T`` by randomised SVD (Halko et al.).

    Args:
      b: ``[n, n]`` float32 weights.
      rank: kept rank; at least ``n`` keeps ``B`` exactly (``L = B``, ``R = I``).
      seed: seed of the random range finder.

    Returns:
      ``(L [n, r], R [n, r])`` float32 with ``r = min(rank, n)``.
    """
    n = b.shape[0]
    if rank >= n:
        return b.astype(np.float32), np.eye(n, dtype=np.float32)
    rng = np.random.default_rng(seed)
    b64 = b.astype(np.float64)
    q, _ = np.linalg.qr(b64 @ rng.standard_normal((n, min(n, rank + 16))))
    for _ in range(3):  # power iterations sharpen the leading subspace
        q, _ = np.linalg.qr(b64.T @ q)
        q, _ = np.linalg.qr(b64 @ q)
    u, s, vt = np.linalg.svd(q.T @ b64, full_matrices=False)
    left = (q @ u[:, :rank]) * s[:rank]
    return left.astype(np.float32), vt[:rank].T.astype(np.float32)
