"""Evaluator: blessing thresholds and evaluate() on a real exported model."""

import numpy as np
import pytest
import tensorflow as tf

from components import baselines, metrics
from components.evaluator import Threshold, check_thresholds, evaluate, parse_thresholds
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


def test_evaluate_matches_an_independent_computation(tmp_path):
    rng = np.random.default_rng(3)
    num_users, num_movies = 25, 20
    # Movie "m19" is in the catalogue but never rated: it must still be a candidate.
    users = rng.integers(0, num_users, 800)
    movies = (users % 4) + 4 * rng.integers(0, 4, 800)
    pairs = sorted(set(zip(users.tolist(), movies.tolist(), strict=True)))
    rng.shuffle(pairs)
    ratings = rng.choice([1.0, 3.0, 5.0], len(pairs)).astype(np.float32)
    cut = int(0.8 * len(pairs))
    vocab = data.Vocabularies(
        users=[f"u{i}" for i in range(num_users)], movies=[f"m{i}" for i in range(num_movies)]
    )
    cols = {
        features.USER_IDX: np.array([u for u, _ in pairs[:cut]], np.int64),
        features.MOVIE_IDX: np.array([m for _, m in pairs[:cut]], np.int64),
        features.RATING: ratings[:cut],
    }
    model, _ = train(cols, vocab, TrainerConfig(embedding_dim=4, epochs=3, batch_size=64))
    export.export_serving_model(model, vocab, str(tmp_path / "model"))

    def raw(part, r):
        return {
            features.USER_ID: np.array([f"u{u}" for u, _ in part], dtype=object),
            features.MOVIE_ID: np.array([f"m{m}" for _, m in part], dtype=object),
            features.RATING: r,
        }

    catalogue = np.array([f"m{i}" for i in range(num_movies)], dtype=object)
    result = evaluate(
        str(tmp_path / "model"),
        raw(pairs[:cut], ratings[:cut]),
        raw(pairs[cut:], ratings[cut:]),
        catalogue,
        [Threshold("recall@10", "min", 0.0)],
        ks=(1, 10),
    )
    # Independent path: the Keras towers directly, rows in the evaluator's order (sorted ids).
    user_ids = sorted({f"u{u}" for u, _ in pairs})
    user_idx = [int(u[1:]) for u in user_ids]
    row = {u: i for i, u in enumerate(user_ids)}
    ue = model.user_tower(tf.constant(user_idx)).numpy()
    me = model.movie_tower(tf.range(num_movies)).numpy()
    tr_u = np.array([row[f"u{u}"] for u, _ in pairs[:cut]])
    tr_m = np.array([m for _, m in pairs[:cut]])
    ev_u = np.array([row[f"u{u}"] for u, _ in pairs[cut:]])
    ev_m = np.array([m for _, m in pairs[cut:]])
    seen = metrics.seen_matrix(tr_u, tr_m, len(user_ids), num_movies)
    expected = metrics.top_k_metrics(ue, me, ev_u, ev_m, seen, ks=(1, 10))
    for key, value in expected.items():
        assert result["model"][key] == pytest.approx(value, abs=1e-9), key
    pred = model.predict_rating(
        tf.constant([u for u, _ in pairs[cut:]]), tf.constant([m for _, m in pairs[cut:]])
    ).numpy()
    assert result["model"]["rmse"] == pytest.approx(
        float(np.sqrt(np.mean((pred - ratings[cut:]) ** 2))), rel=1e-5
    )
    pop_u, pop_m = baselines.popularity_embeddings(tr_m, len(user_ids), num_movies)
    pop = metrics.top_k_metrics(pop_u, pop_m, ev_u, ev_m, seen, ks=(1, 10))
    assert result["baselines"]["popularity"]["recall@10"] == pytest.approx(pop["recall@10"])
    assert result["ratios"]["popularity/recall@10"] == pytest.approx(
        result["model"]["recall@10"] / pop["recall@10"]
    )
    assert result["blessed"] is True
    assert result["num_catalogue"] == num_movies


def test_bias_baseline_recovers_planted_biases():
    # rating = 3 + user bias + movie bias exactly; with no shrinkage the fit is exact.
    rng = np.random.default_rng(0)
    bu, bm = rng.normal(size=30), rng.normal(size=20)
    users, movies = np.meshgrid(np.arange(30), np.arange(20), indexing="ij")
    users, movies = users.ravel(), movies.ravel()
    ratings = 3 + bu[users] + bm[movies]
    fit = baselines.fit_biases(users, movies, ratings, 30, 20, reg=0.0, iterations=50)
    np.testing.assert_allclose(baselines.predict_biases(fit, users, movies), ratings, atol=1e-6)
