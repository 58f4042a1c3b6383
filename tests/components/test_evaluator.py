"""Evaluator: blessing thresholds and evaluate() on a real exported model."""

import numpy as np
import pytest
import tensorflow as tf

from components import baselines, evaluation_data, metrics
from components.blessing import Threshold, check_thresholds, parse_thresholds
from components.evaluator import evaluate
from trainer import data, export, features
from trainer.config import TrainerConfig
from trainer.run import train

MODEL = {"recall@10": 0.12, "rmse": 0.95}
BASELINES = {"popularity": {"recall@10": 0.10}, "bias": {"rmse": 0.94}}


def test_thresholds_bless_and_explain():
    ok, reasons = check_thresholds(
        MODEL,
        BASELINES,
        [
            Threshold("recall@10", "min", 1.1, "popularity"),  # 0.12 >= 0.11: pass
            Threshold("rmse", "max", 1.0),  # 0.95 <= 1.0: pass
        ],
    )
    assert ok
    assert reasons == [
        "pass: recall@10 0.1200 >= 1.1 x popularity 0.1000 = 0.1100",
        "pass: rmse 0.9500 <= 1.0000",
    ]


def test_a_failing_threshold_refuses_the_blessing():
    ok, reasons = check_thresholds(MODEL, BASELINES, [Threshold("rmse", "max", 1.0, "bias")])
    assert not ok
    assert reasons == ["FAIL: rmse 0.9500 <= 1 x bias 0.9400 = 0.9400"]


def test_threshold_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown metric 'ndcg'"):
        check_thresholds(MODEL, BASELINES, [Threshold("ndcg", "min", 0.1)])
    with pytest.raises(ValueError, match="baseline 'ease'"):
        check_thresholds(MODEL, BASELINES, [Threshold("recall@10", "min", 1.0, "ease")])
    with pytest.raises(ValueError, match="direction"):
        Threshold("rmse", "below", 1.0)
    with pytest.raises(ValueError, match="malformed"):
        parse_thresholds('[{"metric": "rmse"}]')
    assert parse_thresholds('[{"metric": "rmse", "direction": "max", "value": 1}]') == [
        Threshold("rmse", "max", 1.0)
    ]


def _trained_model(tmp_path, pairs, ratings, cut, num_users, num_movies, **config):
    vocab = data.Vocabularies(
        users=[f"u{i}" for i in range(num_users)], movies=[f"m{i}" for i in range(num_movies)]
    )
    cols = {
        features.USER_IDX: np.array([u for u, _ in pairs[:cut]], np.int64),
        features.MOVIE_IDX: np.array([m for _, m in pairs[:cut]], np.int64),
        features.RATING: ratings[:cut],
    }
    cfg = TrainerConfig(**{"embedding_dim": 4, "epochs": 20, "batch_size": 64, **config})
    model, _ = train(cols, vocab, cfg)
    path = str(tmp_path / f"model-{abs(hash(cfg))}")
    export.export_serving_model(model, vocab, path)
    return model, path


def _raw(part, r, genders=False):
    cols = {
        features.USER_ID: np.array([f"u{u}" for u, _ in part], dtype=object),
        features.MOVIE_ID: np.array([f"m{m}" for _, m in part], dtype=object),
        features.RATING: r,
    }
    if genders:
        cols[features.USER_AGE] = np.array([20 + u for u, _ in part])
        cols[features.USER_GENDER] = np.array(
            ["F" if u % 2 else "M" for u, _ in part], dtype=object
        )
    return cols


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """25 users x 20 movies with group structure; movie m19 is in the catalogue only."""
    rng = np.random.default_rng(3)
    num_users, num_movies = 25, 20
    users = rng.integers(0, num_users, 800)
    movies = (users % 4) + 4 * rng.integers(0, 4, 800)
    pairs = sorted(set(zip(users.tolist(), movies.tolist(), strict=True)))
    rng.shuffle(pairs)
    ratings = rng.choice([1.0, 3.0, 5.0], len(pairs)).astype(np.float32)
    cut = int(0.8 * len(pairs))
    tmp = tmp_path_factory.mktemp("eval")
    model, path = _trained_model(tmp, pairs, ratings, cut, num_users, num_movies)
    catalogue = np.array([f"m{i}" for i in range(num_movies)], dtype=object)
    ev = evaluation_data.EvaluationData.from_columns(
        _raw(pairs[:cut], ratings[:cut]), _raw(pairs[cut:], ratings[cut:], genders=True), catalogue
    )
    return dict(
        pairs=pairs,
        ratings=ratings,
        cut=cut,
        model=model,
        path=path,
        data=ev,
        tmp=tmp,
        num_users=num_users,
        num_movies=num_movies,
    )


def test_evaluate_matches_an_independent_computation(synthetic):
    s = synthetic
    pairs, cut, model, ev = s["pairs"], s["cut"], s["model"], s["data"]
    result = evaluate(s["path"], ev, [Threshold("recall@10", "min", 0.0)])
    # Independent path: the Keras towers directly, rows in the evaluator's order (sorted ids).
    user_idx = [int(u[1:]) for u in ev.user_ids]
    ue = model.user_tower(tf.constant(user_idx)).numpy()
    me = model.movie_tower(tf.range(s["num_movies"])).numpy()
    ranks = metrics.rank_eval_pairs(
        metrics.factorized_scores(ue, me), ev.eval_users, ev.eval_movies, ev.seen, s["num_movies"]
    )
    expected = metrics.ranking_metrics(ranks, ev.eval_users, ev.train_counts)
    for key, value in expected.items():
        assert result["model"][key] == pytest.approx(value, abs=1e-9), key
    pred = model.predict_rating(
        tf.constant([u for u, _ in pairs[cut:]]), tf.constant([m for _, m in pairs[cut:]])
    ).numpy()
    err = pred - s["ratings"][cut:]
    assert result["model"]["rmse"] == pytest.approx(float(np.sqrt(np.mean(err**2))), rel=1e-5)
    pop = metrics.rank_eval_pairs(
        baselines.popularity_scores(ev.train_counts),
        ev.eval_users,
        ev.eval_movies,
        ev.seen,
        s["num_movies"],
    )
    pop_recall = float(np.mean(pop.rank_excl < 10))
    assert result["baselines"]["popularity"]["recall@10"] == pytest.approx(pop_recall)
    assert result["ratios"]["popularity/recall@10"] == pytest.approx(
        result["model"]["recall@10"] / pop_recall
    )
    assert set(result["baselines"]) == {"popularity", "ease", "bias"}
    assert result["curves"]["ks"] == [1, 5, 10, 20, 50, 100]
    assert result["curves"]["recall"]["model"][2] == pytest.approx(result["model"]["recall@10"])
    assert result["blessed"] is True and result["previous_model"] is None
    assert result["num_catalogue"] == s["num_movies"]
    # Slices partition the eval pairs and their recall averages back to the total.
    for family, slices in result["slices"].items():
        counts = [v["count"] for v in slices.values()]
        assert sum(counts) == result["num_eval"], family
        total = sum(v["count"] * v["model"]["recall@10"] for v in slices.values())
        assert total / result["num_eval"] == pytest.approx(result["model"]["recall@10"]), family
    assert set(result["slices"]["gender"]) == {"F", "M"}
    assert set(result["slices"]["age"]) == {"18-24", "25-34", "35-44"}


def test_regression_against_the_previous_model_blocks_the_blessing(synthetic):
    s = synthetic
    # A model never trained for retrieval, judged against the joint one as "previous blessed".
    _, weak = _trained_model(
        s["tmp"],
        s["pairs"],
        s["ratings"],
        s["cut"],
        s["num_users"],
        s["num_movies"],
        epochs=1,
        retrieval_weight=0.0,
        seed=7,
    )
    thresholds = [Threshold("recall@10", "min", 0.0), Threshold("rmse", "max", 10.0)]
    result = evaluate(
        weak, s["data"], thresholds, previous_model_dir=s["path"], max_relative_regression=0.0
    )
    prev = result["previous_model"]["metrics"]
    assert result["model"]["recall@10"] < prev["recall@10"]
    assert result["blessed"] is False
    assert (
        f"FAIL: recall@10 {result['model']['recall@10']:.4f} >= previous blessed model "
        f"{prev['recall@10']:.4f} x (1 - 0) = {prev['recall@10']:.4f}"
    ) in result["reasons"]
    # The same model against itself passes the change thresholds.
    same = evaluate(s["path"], s["data"], thresholds, previous_model_dir=s["path"])
    assert same["blessed"] is True


def test_ease_baseline_matches_its_closed_form():
    # X = [[1,1,0],[0,1,1]], lambda = 1: G = X^T X + I; B = I - P / diag(P), diag(B) = 0.
    x = np.array([[1, 1, 0], [0, 1, 1]], np.float32)
    seen = metrics.seen_matrix(*np.nonzero(x), 2, 3)
    movies, b = baselines.fit_ease(seen, lam=1.0)
    p = np.linalg.inv(x.T @ x + np.eye(3))
    expected = -p / np.diag(p)
    np.fill_diagonal(expected, 0.0)
    assert movies.tolist() == [0, 1, 2]
    np.testing.assert_allclose(b, expected, rtol=1e-5)
    scores = baselines.ease_scores(seen, (movies, b))(np.array([0]))
    np.testing.assert_allclose(scores, x[:1] @ expected, rtol=1e-5)
    # Restricted to the 2 most rated movies (1, then 0 by id), movie 2 is never recommended.
    movies, _ = baselines.fit_ease(seen, lam=1.0, max_movies=2)
    assert movies.tolist() == [0, 1]
    assert (
        baselines.ease_scores(seen, baselines.fit_ease(seen, 1.0, 2))(np.array([1]))[0, 2]
        == -np.inf
    )


def test_bias_baseline_recovers_planted_biases():
    # rating = 3 + user bias + movie bias exactly; with no shrinkage the fit is exact.
    rng = np.random.default_rng(0)
    bu, bm = rng.normal(size=30), rng.normal(size=20)
    users, movies = np.meshgrid(np.arange(30), np.arange(20), indexing="ij")
    users, movies = users.ravel(), movies.ravel()
    ratings = 3 + bu[users] + bm[movies]
    fit = baselines.fit_biases(users, movies, ratings, 30, 20, reg=0.0, iterations=50)
    np.testing.assert_allclose(baselines.predict_biases(fit, users, movies), ratings, atol=1e-6)
