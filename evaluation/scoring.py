"""Two-stage scoring of served models: every eval user served exactly as ``/v1/recommend`` serves.

The servable SavedModels (``publish.servables``) are loaded and every user with held-out
pairs is served through ``serving.recommender`` (retrieve, re-rank), the code behind
``/v1/recommend``, with the train split as the seen data; :func:`ranks_of_lists` says where
each held-out pair landed in its user's list. ``evaluation.evaluate`` measures these ranks.
"""

import numpy as np
import scipy.sparse as sp
import tensorflow as tf

from evaluation import evaluation_data, metrics
from publish import servables as servables_lib
from serving import loading, names, recommender

_USER_BATCH = 256


def _rows(ids: np.ndarray, row_of: dict) -> np.ndarray:
    """Catalogue rows of ``[users, n]`` movie ids; "" (no movie) is -1."""
    flat = [row_of.get(m, -1) if m else -1 for m in ids.ravel()]
    return np.array(flat, np.int64).reshape(ids.shape)


def ranks_of_lists(
    lists: np.ndarray,
    list_users: np.ndarray,
    eval_users: np.ndarray,
    eval_movies: np.ndarray,
    num_movies: int,
    top_n: int = metrics.TOP_N,
) -> metrics.Ranks:
    """Where each held-out pair landed in the list its user was served.

    Args:
      lists: ``[u, n]`` catalogue rows, best first; -1 pads.
      list_users: ``[u]`` the user row of each list.
      eval_users, eval_movies: ``[p]`` the held-out pairs' rows.
      num_movies: catalogue size (the rank of a pair whose movie is not in its list).
      top_n: how much of each list counts for coverage.

    Returns:
      Ranks with ``rank_excl`` the position in the list (``num_movies`` when absent) and
      no seen-included counts (a served list has none).
    """
    u, n = lists.shape
    valid = lists >= 0
    rows = np.repeat(list_users, n)[valid.ravel()]
    position = sp.csr_matrix(
        (np.tile(np.arange(1, n + 1), u)[valid.ravel()], (rows, lists[valid])),
        shape=(int(max(list_users.max(initial=0), eval_users.max(initial=0))) + 1, num_movies),
    )
    found = np.asarray(position[eval_users, eval_movies]).ravel()
    rank = np.where(found > 0, found - 1, num_movies).astype(np.int64)
    return metrics.Ranks(None, rank, list_users, lists[:, : min(top_n, n)])


def serve_eval_users(servables_dir: str, data: evaluation_data.EvaluationData):
    """Serves every user with held-out pairs through ``serving.recommender``.

    The user gets the full candidate list in the served order (its first 10 are exactly
    what ``/v1/recommend`` returns for k=10), with the train split's seen data.

    Returns:
      ``(served Ranks, retrieval-order Ranks, [n_eval] predicted ratings)``.
    """
    rec = recommender.Recommender.from_saved_models(
        loading.load_saved_model(servables_lib.model_dir(servables_dir, names.RETRIEVAL)),
        tf.saved_model.load(servables_lib.model_dir(servables_dir, names.RANKING)),
    )
    users = np.unique(data.eval_users)
    row_of = {m: i for i, m in enumerate(data.movie_ids)}
    served, candidates = [], []
    for lo in range(0, len(users), _USER_BATCH):
        batch = users[lo : lo + _USER_BATCH]
        out = rec.recommend(list(data.user_ids[batch]), rec.k)
        served.append(_rows(out.movie_ids, row_of))
        candidates.append(_rows(out.candidates, row_of))
    num_movies = len(data.movie_ids)
    args = (users, data.eval_users, data.eval_movies, num_movies)
    served_ranks = ranks_of_lists(np.concatenate(served), *args)
    retrieval_ranks = ranks_of_lists(np.concatenate(candidates), *args)
    rate = rec.rate
    predicted = np.concatenate(
        [
            rate(
                user_id=tf.constant(list(data.user_ids[data.eval_users[lo : lo + 8192]])),
                movie_id=tf.constant(list(data.movie_ids[data.eval_movies[lo : lo + 8192]])),
            )["rating"].numpy()
            for lo in range(0, len(data.eval_users), 8192)
        ]
    )
    return served_ranks, retrieval_ranks, predicted
