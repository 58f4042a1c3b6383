"""Top-K and rating metrics against hand-worked examples and a brute-force reference."""

import numpy as np
import pytest

from evaluation import metrics


def _rank(user_emb, movie_emb, users, movies, seen=None, **kw):
    return metrics.rank_eval_pairs(
        metrics.factorized_scores(user_emb, movie_emb),
        np.asarray(users),
        np.asarray(movies),
        seen,
        len(movie_emb),
        **kw,
    )


def test_hand_worked_ranks():
    # One user, 5 movies scored 5,4,3,2,1 (movie j scores 5 - j). Train: movie 0.
    # Held out: movie 2 (score 3).
    # incl. seen: movies 0 and 1 score higher -> 2 strictly greater.
    # excl. seen: movie 0 is removed, only movie 1 is higher -> rank 1.
    user = np.array([[1.0]], np.float32)
    movies = np.array([[5.0], [4.0], [3.0], [2.0], [1.0]], np.float32)
    seen = metrics.seen_matrix(np.array([0]), np.array([0]), 1, 5)
    r = _rank(user, movies, [0], [2], seen, top_n=3)
    assert r.greater_incl.tolist() == [2]
    assert r.rank_excl.tolist() == [1]
    assert r.top_movies.tolist() == [[1, 2, 3]]  # unseen, best first
    m = metrics.ranking_metrics(
        r, np.array([0]), np.array([9, 5, 3, 1, 0]), ks=(1, 2), tfrs_ks=(2, 3)
    )
    assert m["top_k_accuracy_incl_seen@2"] == 0.0 and m["top_k_accuracy_incl_seen@3"] == 1.0
    assert m["recall@1"] == 0.0 and m["recall@2"] == 1.0
    # rank 1: NDCG = 1/log2(3), MAP = 1/2
    assert m["ndcg@2"] == pytest.approx(1 / np.log2(3))
    assert m["map@2"] == pytest.approx(0.5)
    # coverage: movies {1,2,3} of 5; popularity percentiles of counts [9,5,3,1,0] are
    # [100, 75, 50, 25, 0] -> mean over movies 1,2,3 = 50.
    assert m["coverage@3"] == pytest.approx(3 / 5)
    assert m["popularity_percentile@3"] == pytest.approx(50.0)


def test_hand_worked_per_user_metrics():
    # User 0 has held-out ranks 0 and 3 at K=2: hits {0}; recall = 1/min(2,2) = 0.5;
    # DCG = 1; IDCG = 1 + 1/log2(3); AP = (1/1) / 2 = 0.5.
    # User 1 has one held-out rank 1: recall 1; NDCG = (1/log2 3) / 1; AP = 1/2.
    users = np.array([0, 0, 1])
    ranks = np.array([3, 0, 1])
    m = metrics.per_user(users, ranks, 2)
    assert m["user_recall@2"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["user_ndcg@2"] == pytest.approx((1 / (1 + 1 / np.log2(3)) + 1 / np.log2(3)) / 2)
    assert m["user_map@2"] == pytest.approx((0.5 + 0.5) / 2)
    # Two hits at ranks 0 and 1: AP = (1/1 + 2/2) / 2 = 1, NDCG = 1.
    m = metrics.per_user(np.array([0, 0]), np.array([1, 0]), 5)
    assert m["user_map@5"] == pytest.approx(1.0) and m["user_ndcg@5"] == pytest.approx(1.0)


def test_ties_count_for_tfrs_metric_and_against_recall():
    # All 4 movies score the same: nobody is strictly higher (TFRS: a hit at K=1), but 3
    # other candidates tie (seen-excluded rank 3: a hit only at K >= 4).
    r = _rank(np.ones((1, 2), np.float32), np.ones((4, 2), np.float32), [0], [1])
    assert r.greater_incl.tolist() == [0]
    assert r.rank_excl.tolist() == [3]


def test_seen_exclusion_gives_no_credit_for_seen_items():
    # A model that scores the user's train movies highest: with exclusion they are gone.
    user = np.array([[1.0]], np.float32)
    movies = np.array([[10.0], [9.0], [8.0], [7.0], [1.0]], np.float32)
    seen = metrics.seen_matrix(np.array([0, 0, 0]), np.array([0, 1, 2]), 1, 5)
    r = _rank(user, movies, [0, 0], [3, 1], seen)
    assert r.greater_incl.tolist() == [3, 1]
    # Held-out movie 3 is first among unseen; held-out movie 1 was seen in train: a miss.
    assert r.rank_excl.tolist() == [0, 5]
    # Only movies 3 and 4 are unseen; the rest of the top-5 list is padding.
    assert r.top_movies.tolist() == [[3, 4, -1, -1, -1]]


def _brute_force(scores, eval_users, eval_movies, seen_pairs):
    incl, excl = [], []
    for u, m in zip(eval_users, eval_movies, strict=True):
        s = scores[u]
        others = [j for j in range(len(s)) if j != m]
        incl.append(sum(s[j] > s[m] for j in others))
        unseen = [j for j in others if (u, j) not in seen_pairs]
        excl.append(len(s) if (u, m) in seen_pairs else sum(s[j] >= s[m] for j in unseen))
    return np.array(incl), np.array(excl)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("quantize", [False, True])
def test_matches_brute_force_on_random_data(seed, quantize):
    rng = np.random.default_rng(seed)
    num_users, num_movies, dim = 30, 40, 4
    user_emb = rng.normal(size=(num_users, dim)).astype(np.float32)
    movie_emb = rng.normal(size=(num_movies, dim)).astype(np.float32)
    if quantize:  # integer embeddings make many exact ties
        user_emb, movie_emb = np.round(user_emb), np.round(movie_emb)
    # Users 25..29 have no held-out pairs; batches of 7 users exercise the streaming.
    eval_users = rng.integers(0, 25, size=200)
    eval_movies = rng.integers(0, num_movies, size=200)
    train_users = rng.integers(0, num_users, size=300)
    train_movies = rng.integers(0, num_movies, size=300)
    seen_pairs = set(zip(train_users.tolist(), train_movies.tolist(), strict=True))
    seen = metrics.seen_matrix(train_users, train_movies, num_users, num_movies)
    r = _rank(user_emb, movie_emb, eval_users, eval_movies, seen, user_batch=7, top_n=5)
    incl, excl = _brute_force(user_emb @ movie_emb.T, eval_users, eval_movies, seen_pairs)
    np.testing.assert_array_equal(r.greater_incl, incl)
    np.testing.assert_array_equal(r.rank_excl, excl)
    # Top-5 lists: unseen movies whose scores are the 5 best unseen scores, in order.
    scores = user_emb @ movie_emb.T
    for u, top in zip(r.top_users, r.top_movies, strict=True):
        unseen = np.array([j for j in range(num_movies) if (u, j) not in seen_pairs])
        best = np.sort(scores[u, unseen])[::-1][:5]
        assert not np.isin(top, [j for j in range(num_movies) if (u, j) in seen_pairs]).any()
        np.testing.assert_allclose(scores[u, top], best)
    # Per-interaction metrics from the brute-force ranks.
    m = metrics.ranking_metrics(r, eval_users, np.ones(num_movies), ks=(1, 5, 10))
    for k in (1, 5, 10):
        assert m[f"recall@{k}"] == pytest.approx(np.mean(excl < k))
        assert m[f"ndcg@{k}"] == pytest.approx(
            np.mean(np.where(excl < k, 1 / np.log2(excl + 2), 0))
        )
        assert m[f"map@{k}"] == pytest.approx(np.mean(np.where(excl < k, 1 / (excl + 1), 0)))


def test_per_user_matches_a_loop_on_random_ranks():
    rng = np.random.default_rng(7)
    users = rng.integers(0, 20, 150)
    ranks = rng.integers(0, 30, 150)
    k = 10
    recall, ndcg, ap = [], [], []
    for u in np.unique(users):
        r = np.sort(ranks[users == u])
        n = min(k, len(r))
        hits = r[r < k]
        recall.append(len(hits) / n)
        ndcg.append(
            sum(1 / np.log2(h + 2) for h in hits) / sum(1 / np.log2(i + 2) for i in range(n))
        )
        ap.append(sum((i + 1) / (h + 1) for i, h in enumerate(r) if h < k) / n)
    m = metrics.per_user(users, ranks, k)
    assert m["user_recall@10"] == pytest.approx(np.mean(recall))
    assert m["user_ndcg@10"] == pytest.approx(np.mean(ndcg))
    assert m["user_map@10"] == pytest.approx(np.mean(ap))


def test_rating_metrics():
    # errors: +1, -2, 0 -> RMSE sqrt(5/3), MAE 1
    m = metrics.rating_metrics(np.array([4.0, 1.0, 3.0]), np.array([3.0, 3.0, 3.0]))
    assert m["rmse"] == pytest.approx(np.sqrt(5 / 3))
    assert m["mae"] == pytest.approx(1.0)


def test_empty_inputs_are_errors():
    with pytest.raises(ValueError, match="no held-out pairs"):
        _rank(np.ones((1, 1)), np.ones((1, 1)), [], [])
    with pytest.raises(ValueError, match="no ratings"):
        metrics.rating_metrics(np.array([]), np.array([]))
