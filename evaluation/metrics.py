"""Vectorised top-K and rating metrics over the full catalogue (plain numpy, no TFX).

The Evaluator component ranks every held-out (user, movie) pair against the whole catalogue
for the model and for each baseline through the same functions here; the tests check them
against hand-worked examples and brute-force references. Users are streamed in batches, so
memory is bounded by ``user_batch x num_movies`` scores whatever the number of users.

Definitions (the README repeats them):

* ``top_k_accuracy_incl_seen@K``: the TFRS ``FactorizedTopK`` accuracy. Every catalogue
  movie is a candidate, the user's train movies included; ties count in the held-out movie's
  favour (``tf.math.in_top_k``): a hit when fewer than K candidates score strictly higher.
* Seen-excluded ranking: the user's train movies are removed from the candidates. The rank of
  a held-out movie is the number of other unseen candidates scoring higher or equal (ties
  count against it). A held-out movie the user also rated in train is never a hit.
* Per interaction (``recall@K``, ``ndcg@K``, ``map@K``), averaged over held-out pairs: hit =
  rank < K; NDCG = 1 / log2(rank + 2) for a hit; MAP (one relevant item) = 1 / (rank + 1).
* Per user (``user_recall@K``, ``user_ndcg@K``, ``user_map@K``), averaged over users with at
  least one held-out pair; R = the user's held-out movies, hits = those ranked < K:
  recall = |hits| / min(K, |R|); NDCG = DCG / ideal DCG with binary relevance; MAP@K = the sum
  over hits of precision at the hit's position, divided by min(K, |R|).
* ``coverage@N``: share of the catalogue appearing in at least one user's seen-excluded
  top-N list; ``popularity_percentile@N``: mean train-popularity percentile (100 = most
  rated movie) of the movies in those lists.
"""

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp
from scipy.stats import rankdata

TFRS_KS = (1, 10, 100)
DEFAULT_KS = (10, 50, 100)
CURVE_KS = (1, 5, 10, 20, 50, 100)
TOP_N = 10
_ROW_CHUNK = 1024

# [batch] user rows -> [batch, num_movies] float32 scores.
ScoreFn = Callable[[np.ndarray], np.ndarray]


def factorized_scores(user_embeddings: np.ndarray, movie_embeddings: np.ndarray) -> ScoreFn:
    """Dot-product scores of a two-tower model.

    Args:
      user_embeddings: ``[num_users, dim]`` float32, row i is user i.
      movie_embeddings: ``[num_movies, dim]`` float32, row j is catalogue movie j.
    """
    movies_t = np.ascontiguousarray(movie_embeddings.T, dtype=np.float32)
    users = np.asarray(user_embeddings, dtype=np.float32)
    return lambda rows: users[rows] @ movies_t


@dataclasses.dataclass(frozen=True)
class Ranks:
    """Where each held-out pair landed.

    Attributes:
      greater_incl: ``[n]`` candidates scoring strictly higher, seen movies included; None
        for a served list (it ranks no seen movie).
      rank_excl: ``[n]`` seen-excluded rank (ties against); ``num_movies`` when the held-out
        movie was seen in train.
      top_users: ``[u]`` user rows that have held-out pairs.
      top_movies: ``[u, top_n]`` movie rows of each such user's seen-excluded top-N, best
        first; -1 pads a list when the user has fewer unseen movies than top_n.
    """

    greater_incl: np.ndarray | None
    rank_excl: np.ndarray
    top_users: np.ndarray
    top_movies: np.ndarray


def _compare(scores, rows, cols):
    """Strictly-greater and tied-other counts of each positive among its row's candidates."""
    greater = np.empty(len(rows), np.int64)
    ties = np.empty(len(rows), np.int64)
    # Chunks of rows keep the boolean temporaries at ~_ROW_CHUNK x num_movies.
    for lo in range(0, len(rows), _ROW_CHUNK):
        r, c = rows[lo : lo + _ROW_CHUNK], cols[lo : lo + _ROW_CHUNK]
        row_scores = scores[r]
        pos = row_scores[np.arange(len(r)), c][:, None]
        greater[lo : lo + len(r)] = (row_scores > pos).sum(axis=1)
        ties[lo : lo + len(r)] = (row_scores == pos).sum(axis=1) - 1  # minus the positive
    return greater, ties


def _seen_at_or_above(scores, batch_seen: sp.csr_matrix, rows, cols):
    """Per positive: its user's other seen movies scoring >= it, and whether it was seen.

    Works on the sparse seen entries only, so the seen-excluded rank costs no second dense
    pass: rank_excl = (others scoring >= positive) - (seen others scoring >= positive).
    """
    nnz = np.diff(batch_seen.indptr)[rows]
    owner = np.repeat(np.arange(len(rows)), nnz)
    offsets = np.arange(nnz.sum()) - np.repeat(np.cumsum(nnz) - nnz, nnz)
    items = batch_seen.indices[np.repeat(batch_seen.indptr[rows], nnz) + offsets]
    positive = scores[rows, cols]
    is_positive = items == cols[owner]
    at_or_above = (scores[rows[owner], items] >= positive[owner]) & ~is_positive
    seen_ge = np.bincount(owner, at_or_above, minlength=len(rows)).astype(np.int64)
    positive_seen = np.bincount(owner, is_positive, minlength=len(rows)) > 0
    return seen_ge, positive_seen


def rank_eval_pairs(
    score_fn: ScoreFn,
    eval_users: np.ndarray,
    eval_movies: np.ndarray,
    seen: sp.csr_matrix | None,
    num_movies: int,
    top_n: int = TOP_N,
    user_batch: int = 512,
) -> Ranks:
    """Ranks every held-out pair against the whole catalogue.

    Args:
      score_fn: scores of a batch of user rows against every movie.
      eval_users: ``[n]`` int user rows of the held-out pairs.
      eval_movies: ``[n]`` int movie rows of the held-out pairs.
      seen: ``[num_users, num_movies]`` sparse, nonzero where the user rated the movie in
        train; None excludes nothing.
      num_movies: catalogue size.
      top_n: length of the per-user top lists kept for coverage.
      user_batch: users scored at once.

    Raises:
      ValueError: when there is no held-out pair.
    """
    eval_users = np.asarray(eval_users, dtype=np.int64)
    eval_movies = np.asarray(eval_movies, dtype=np.int64)
    n = len(eval_users)
    if n == 0:
        raise ValueError("no held-out pairs to evaluate")
    order = np.argsort(eval_users, kind="stable")
    users_sorted = eval_users[order]
    unique_users = np.unique(users_sorted)
    top_n = min(top_n, num_movies)
    greater_incl = np.empty(n, np.int64)
    rank_excl = np.empty(n, np.int64)
    top_movies = np.empty((len(unique_users), top_n), np.int64)
    for start in range(0, len(unique_users), user_batch):
        batch_users = unique_users[start : start + user_batch]
        lo = np.searchsorted(users_sorted, batch_users[0], side="left")
        hi = np.searchsorted(users_sorted, batch_users[-1], side="right")
        idx = order[lo:hi]
        scores = np.array(score_fn(batch_users), dtype=np.float32, copy=True)
        rows = np.searchsorted(batch_users, eval_users[idx])
        cols = eval_movies[idx]
        greater, ties = _compare(scores, rows, cols)
        greater_incl[idx] = greater
        if seen is not None:
            batch_seen = seen[batch_users]
            seen_ge, positive_seen = _seen_at_or_above(scores, batch_seen, rows, cols)
            rank_excl[idx] = np.where(positive_seen, num_movies, greater + ties - seen_ge)
            coo = batch_seen.tocoo()
            scores[coo.row, coo.col] = -np.inf  # no seen movie in the top lists
        else:
            rank_excl[idx] = greater + ties
        part = np.argpartition(scores, num_movies - top_n, axis=1)[:, num_movies - top_n :]
        part_scores = np.take_along_axis(scores, part, axis=1)
        best_first = np.argsort(-part_scores, axis=1, kind="stable")
        top = np.take_along_axis(part, best_first, axis=1)
        # Fewer unseen movies than top_n: the excluded ones are no recommendation.
        top[np.take_along_axis(part_scores, best_first, axis=1) == -np.inf] = -1
        top_movies[start : start + len(batch_users)] = top
    return Ranks(greater_incl, rank_excl, unique_users, top_movies)


def per_interaction(rank_excl: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Per held-out pair ``[n]`` values of recall, ndcg and map at K (see module docstring)."""
    hit = rank_excl < k
    return {
        f"recall@{k}": hit.astype(np.float64),
        f"ndcg@{k}": np.where(hit, 1.0 / np.log2(rank_excl + 2.0), 0.0),
        f"map@{k}": np.where(hit, 1.0 / (rank_excl + 1.0), 0.0),
    }


def per_user(eval_users: np.ndarray, rank_excl: np.ndarray, k: int) -> dict[str, float]:
    """User-averaged recall, NDCG and MAP at K (see module docstring)."""
    order = np.lexsort((rank_excl, eval_users))
    users, ranks = np.asarray(eval_users)[order], rank_excl[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    sizes = np.diff(np.r_[starts, len(users)])
    group = np.repeat(np.arange(len(starts)), sizes)
    position = np.arange(len(users)) - starts[group]  # index among the user's relevant items
    hit = ranks < k
    denom = np.minimum(sizes, k).astype(np.float64)
    hits = np.bincount(group, hit, minlength=len(starts))
    dcg = np.bincount(group, np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0), minlength=len(starts))
    ideal_gains = np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))
    idcg = ideal_gains[np.minimum(sizes, k) - 1]
    precision = np.where(hit, (position + 1.0) / (ranks + 1.0), 0.0)
    ap = np.bincount(group, precision, minlength=len(starts)) / denom
    return {
        f"user_recall@{k}": float(np.mean(hits / denom)),
        f"user_ndcg@{k}": float(np.mean(dcg / idcg)),
        f"user_map@{k}": float(np.mean(ap)),
    }


def popularity_percentiles(train_counts: np.ndarray) -> np.ndarray:
    """``[num_movies]`` percentile (0..100, 100 = most rated) of each movie's train count."""
    if len(train_counts) == 1:
        return np.array([100.0])
    return (rankdata(train_counts, method="average") - 1.0) / (len(train_counts) - 1.0) * 100.0


def ranking_metrics(
    ranks: Ranks,
    eval_users: np.ndarray,
    train_counts: np.ndarray,
    ks: Sequence[int] = DEFAULT_KS,
    tfrs_ks: Sequence[int] = TFRS_KS,
) -> dict[str, float]:
    """All top-K metrics of one scorer from its :class:`Ranks`.

    Args:
      ranks: from :func:`rank_eval_pairs`.
      eval_users: ``[n]`` user rows of the held-out pairs (same order as for the ranks).
      train_counts: ``[num_movies]`` train ratings per movie (for popularity percentiles).
      ks: cut-offs of the seen-excluded metrics.
      tfrs_ks: cut-offs of the TFRS accuracy.
    """
    result = {"num_eval_pairs": float(len(ranks.rank_excl))}
    for k in tfrs_ks if ranks.greater_incl is not None else ():
        result[f"top_k_accuracy_incl_seen@{k}"] = float(np.mean(ranks.greater_incl < k))
    for k in ks:
        for name, values in per_interaction(ranks.rank_excl, k).items():
            result[name] = float(np.mean(values))
        result.update(per_user(eval_users, ranks.rank_excl, k))
    n = ranks.top_movies.shape[1]
    shown = ranks.top_movies[ranks.top_movies >= 0]
    result[f"coverage@{n}"] = float(len(np.unique(shown)) / len(train_counts))
    pct = popularity_percentiles(train_counts)
    result[f"popularity_percentile@{n}"] = float(np.mean(pct[shown])) if len(shown) else 0.0
    return result


def recall_curve(rank_excl: np.ndarray, ks: Sequence[int] = CURVE_KS) -> list[float]:
    """Per-interaction recall at each K of ``ks``."""
    return [float(np.mean(rank_excl < k)) for k in ks]


def rating_metrics(predicted: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    """RMSE and MAE of ``[n]`` predicted against ``[n]`` actual ratings."""
    err = np.asarray(predicted, np.float64) - np.asarray(actual, np.float64)
    if len(err) == 0:
        raise ValueError("no ratings to evaluate")
    return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err)))}


def seen_matrix(users: np.ndarray, movies: np.ndarray, num_users: int, num_movies: int):
    """``[num_users, num_movies]`` CSR matrix with a 1 where a (user, movie) pair occurs."""
    data = np.ones(len(users), dtype=np.int8)
    m = sp.csr_matrix((data, (users, movies)), shape=(num_users, num_movies))
    m.data[:] = 1
    return m
