"""The validation cut of the train split and the numbers the Trainer chooses settings by.

``trainer.run`` holds out a share of each user's train ratings (:func:`validation_mask`),
trains on the rest, and picks epochs, EASE's penalty, the blend weight and whether to
re-rank by the recall@10 of :func:`top_unseen` lists on the held-out ratings
(:func:`recall`). The eval split is never read here. Plain numpy.
"""

import numpy as np
import scipy.sparse as sp

_MIX = np.uint64(0x9E3779B97F4A7C15)


def _splitmix(x: np.ndarray) -> np.ndarray:
    x = (x + _MIX).astype(np.uint64)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def validation_mask(
    user_idx: np.ndarray, movie_idx: np.ndarray, fraction: float, seed: int
) -> np.ndarray:
    """``[n]`` bool: which train ratings form the validation cut.

    A hash of (seed, user, movie): the same pairs in every run over the same vocabularies,
    whatever the order of the examples. A user's only rating stays in the fit part.
    """
    with np.errstate(over="ignore"):
        key = _splitmix(
            _splitmix(np.asarray(user_idx, np.uint64) + np.uint64(seed) * _MIX)
            ^ np.asarray(movie_idx, np.uint64)
        )
    mask = (key >> np.uint64(11)).astype(np.float64) / float(1 << 53) < fraction
    counts = np.bincount(user_idx)
    return mask & (counts[user_idx] > 1)


def interactions(users: np.ndarray, movies: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """``[num_users, num_movies]`` 0/1 CSR matrix of (user, movie) pairs."""
    m = sp.csr_matrix((np.ones(len(users), np.float32), (users, movies)), shape=shape)
    m.data[:] = 1.0
    return m


def top_unseen(scores: np.ndarray, seen: sp.csr_matrix, k: int) -> np.ndarray:
    """``[batch, k]`` column indices of each row's best scores, seen columns excluded.

    Args:
      scores: ``[batch, num_movies]`` float.
      seen: ``[batch, num_movies]`` sparse, nonzero where the column is excluded.
      k: list length (at most num_movies).
    """
    scores = np.array(scores, np.float32, copy=True)
    coo = seen.tocoo()
    scores[coo.row, coo.col] = -np.inf
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def recall(lists: np.ndarray, held_out: sp.csr_matrix, k: int) -> float:
    """Per held-out pair recall@k: the share of held-out pairs in their user's first k.

    Args:
      lists: ``[batch, >= k]`` movie columns per user, best first.
      held_out: ``[batch, num_movies]`` sparse, nonzero at each held-out pair.
    """
    held_out = sp.csr_matrix(held_out)
    total = held_out.nnz
    if total == 0:
        return 0.0
    k = min(k, lists.shape[1])
    rows = np.repeat(np.arange(len(lists)), k)
    hits = np.asarray(held_out[rows, lists[:, :k].ravel()]).ravel()
    return float(hits.sum() / total)


def ndcg(lists: np.ndarray, held_out: sp.csr_matrix, k: int) -> float:
    """Per held-out pair NDCG@k: ``1 / log2(position + 2)`` for a pair in its user's first
    k, 0 otherwise, averaged over the held-out pairs."""
    held_out = sp.csr_matrix(held_out)
    if held_out.nnz == 0:
        return 0.0
    k = min(k, lists.shape[1])
    rows = np.repeat(np.arange(len(lists)), k)
    hits = np.asarray(held_out[rows, lists[:, :k].ravel()]).reshape(len(lists), k)
    gains = 1.0 / np.log2(np.arange(k) + 2.0)
    return float((hits * gains).sum() / held_out.nnz)
