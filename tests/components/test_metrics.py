"""Top-K and rating metrics against hand-worked examples and a brute-force reference."""

import numpy as np
import pytest

from components import metrics


def _brute_force(user_emb, movie_emb, eval_users, eval_movies, seen_pairs, k):
    """Loops over pairs one by one: the definitions written out plainly."""
    incl, excl = [], []
    for u, m in zip(eval_users, eval_movies, strict=True):
        scores = movie_emb @ user_emb[u]
        pos = scores[m]
        others = [j for j in range(len(scores)) if j != m]
        incl.append(sum(scores[j] > pos for j in others) < k)
        unseen = [j for j in others if (u, j) not in seen_pairs]
        excl.append((u, m) not in seen_pairs and sum(scores[j] >= pos for j in unseen) < k)
    return float(np.mean(incl)), float(np.mean(excl))


def test_hand_worked_example():
    # One user, 5 movies scored 5,4,3,2,1 (movie j has score 5 - j). The user rated movie 0
    # in train; the held-out movie is 2 (score 3).
    # incl. seen: movies 0 and 1 score higher -> rank 2 -> miss at K=1,2; hit at K=3.
    # excl. seen: movie 0 is removed, only movie 1 is higher -> hit at K=2, miss at K=1.
    user = np.array([[1.0]], np.float32)
    movies = np.array([[5.0], [4.0], [3.0], [2.0], [1.0]], np.float32)
    seen = metrics.seen_matrix(np.array([0]), np.array([0]), 1, 5)
    m = metrics.top_k_metrics(user, movies, np.array([0]), np.array([2]), seen, ks=(1, 2, 3))
    assert m["top_k_accuracy_incl_seen@1"] == 0.0
    assert m["top_k_accuracy_incl_seen@2"] == 0.0
    assert m["top_k_accuracy_incl_seen@3"] == 1.0
    assert m["recall@1"] == 0.0
    assert m["recall@2"] == 1.0
    assert m["num_eval_pairs"] == 1.0


def test_ties_count_for_tfrs_metric_and_against_recall():
    # All 4 movies score the same. TFRS (in_top_k) semantics: nobody is strictly higher,
    # a hit at K=1. Recall: 3 other candidates tie, so a hit only at K >= 4.
    user = np.ones((1, 2), np.float32)
    movies = np.ones((4, 2), np.float32)
    m = metrics.top_k_metrics(user, movies, np.array([0]), np.array([1]), None, ks=(1, 3, 4))
    assert m["top_k_accuracy_incl_seen@1"] == 1.0
    assert m["recall@3"] == 0.0
    assert m["recall@4"] == 1.0


def test_seen_exclusion_gives_no_credit_for_seen_items():
    # A model that scores the user's train movies highest: with exclusion they are gone, so
    # the held-out movie (next best) is first; without exclusion it is behind 3 seen movies.
    user = np.array([[1.0]], np.float32)
    movies = np.array([[10.0], [9.0], [8.0], [7.0], [1.0]], np.float32)
    seen = metrics.seen_matrix(np.array([0, 0, 0]), np.array([0, 1, 2]), 1, 5)
    m = metrics.top_k_metrics(user, movies, np.array([0]), np.array([3]), seen, ks=(1, 3))
    assert m["recall@1"] == 1.0
    assert m["top_k_accuracy_incl_seen@3"] == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("quantize", [False, True])
def test_matches_brute_force_on_random_data(seed, quantize):
    rng = np.random.default_rng(seed)
    num_users, num_movies, dim = 30, 40, 4
    user_emb = rng.normal(size=(num_users, dim)).astype(np.float32)
    movie_emb = rng.normal(size=(num_movies, dim)).astype(np.float32)
    if quantize:  # integer embeddings make many exact ties
        user_emb, movie_emb = np.round(user_emb), np.round(movie_emb)
    # Users 25..29 have no held-out pairs; a batch smaller than the user count is exercised.
    eval_users = rng.integers(0, 25, size=200)
    eval_movies = rng.integers(0, num_movies, size=200)
    train_users = rng.integers(0, num_users, size=300)
    train_movies = rng.integers(0, num_movies, size=300)
    seen_pairs = set(zip(train_users.tolist(), train_movies.tolist(), strict=True))
    seen = metrics.seen_matrix(train_users, train_movies, num_users, num_movies)
    got = metrics.top_k_metrics(
        user_emb, movie_emb, eval_users, eval_movies, seen, ks=(1, 5, 10), user_batch=7
    )
    for k in (1, 5, 10):
        incl, excl = _brute_force(user_emb, movie_emb, eval_users, eval_movies, seen_pairs, k)
        assert got[f"top_k_accuracy_incl_seen@{k}"] == pytest.approx(incl)
        assert got[f"recall@{k}"] == pytest.approx(excl)


def test_rating_metrics():
    # errors: +1, -2, 0 -> RMSE sqrt(5/3), MAE 1
    m = metrics.rating_metrics(np.array([4.0, 1.0, 3.0]), np.array([3.0, 3.0, 3.0]))
    assert m["rmse"] == pytest.approx(np.sqrt(5 / 3))
    assert m["mae"] == pytest.approx(1.0)


def test_empty_inputs_are_errors():
    with pytest.raises(ValueError, match="no held-out pairs"):
        metrics.top_k_metrics(np.ones((1, 1)), np.ones((1, 1)), np.array([]), np.array([]))
    with pytest.raises(ValueError, match="no ratings"):
        metrics.rating_metrics(np.array([]), np.array([]))
