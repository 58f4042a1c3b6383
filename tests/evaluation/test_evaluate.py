"""Evaluator: blessing thresholds and evaluate() on the servables of a real trained model."""

import http.client
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from data import examples_io
from evaluation import baselines, evaluation_data, metrics
from evaluation.blessing import Threshold, check_thresholds, parse_thresholds
from evaluation.evaluate import evaluate
from evaluation.scoring import ranks_of_lists
from publish import push, servables, serving_dir
from serving import bundles, loading, names, recommender, server, service
from trainer import data, export, features, run, selection
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


CONFIG = TrainerConfig(
    hidden_dim=16,
    epochs=20,
    validate_every=5,
    batch_size=8,
    ease_rank=8,
    embedding_dim=4,
    rating_epochs=3,
    candidates=15,
    learning_rate=0.01,
    # The tests score the served list against the Keras retrieval order, so the served order
    # is the retrieval order by construction (left to validation, a CPU's rounding decides).
    rerank="off",
)


def _write_split(uri: Path, split: str, rows: list[dict]) -> None:
    """Writes rows as tf.Examples in ExampleGen's layout."""
    examples_io.write_columns(str(uri), split, {k: [r[k] for r in rows] for k in rows[0]})


def _rating_rows(part, r):
    return [
        {features.USER_ID: f"u{u}", features.MOVIE_ID: f"m{m}", features.RATING: float(x)}
        for (u, m), x in zip(part, r, strict=True)
    ]


def _servables(
    tmp: Path, name: str, pairs, ratings, cut, num_users, num_movies, examples, catalogue, **config
):
    vocab = data.Vocabularies(
        users=[f"u{i}" for i in range(num_users)], movies=[f"m{i}" for i in range(num_movies)]
    )
    users = np.array([u for u, _ in pairs[:cut]], np.int64)
    movies = np.array([m for _, m in pairs[:cut]], np.int64)
    cols = {features.USER_IDX: users, features.MOVIE_IDX: movies, features.RATING: ratings[:cut]}
    cfg = TrainerConfig(**{**CONFIG.to_dict(), **config})
    model, _ = train(cols, vocab, cfg)
    trained = str(tmp / f"trained-{name}")
    export.export_serving_model(
        model, vocab, export.Histories.from_indices(users, movies, vocab), trained
    )
    out = str(tmp / f"servables-{name}")
    servables.build_servables(trained, str(examples), str(catalogue), out, retrieval_k=15)
    return model, out


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
    examples, catalogue_uri = tmp / "examples", tmp / "catalogue"
    _write_split(examples, features.TRAIN_SPLIT, _rating_rows(pairs[:cut], ratings[:cut]))
    _write_split(examples, features.EVAL_SPLIT, _rating_rows(pairs[cut:], ratings[cut:]))
    _write_split(
        catalogue_uri,
        features.CATALOGUE_SPLIT,
        [
            {features.MOVIE_ID: f"m{i}", features.MOVIE_TITLE: f"Film {i}"}
            for i in range(num_movies)
        ],
    )
    args = (pairs, ratings, cut, num_users, num_movies, examples, catalogue_uri)
    model, path = _servables(tmp, "main", *args)
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
        args=args,
        num_users=num_users,
        num_movies=num_movies,
    )


def _keras_served_ranks(model, ev, num_movies, k):
    """The served lists from the Keras model (reranker not served): retrieval order of the
    seen-excluded dot products, in numpy."""
    assert not model.use_reranker.numpy()
    history = run._sparse(
        selection.interactions(
            np.array([int(u[1:]) for u in ev.user_ids[ev.train_users]]),
            ev.train_movies,
            (len(ev.user_ids), num_movies + 1),
        )
    )
    users = model.user_vectors(history).numpy()
    movie_idx = [int(m[1:]) for m in ev.movie_ids]
    movies = model.movie_vectors(tf.constant(movie_idx, tf.int64)).numpy()
    scores = users @ movies.T
    # rows of ev are sorted ids; the model's rows are the numeric ids
    order = np.array([int(u[1:]) for u in ev.user_ids])
    scores = scores[order]
    top = selection.top_unseen(scores, ev.seen, k)
    position = {(u, m): i for u in range(len(top)) for i, m in enumerate(top[u])}
    return np.array(
        [
            position.get((u, m), num_movies)
            for u, m in zip(ev.eval_users, ev.eval_movies, strict=True)
        ]
    )


def test_evaluate_scores_the_served_lists(synthetic):
    s = synthetic
    pairs, cut, model, ev = s["pairs"], s["cut"], s["model"], s["data"]
    result = evaluate(s["path"], ev, [Threshold("recall@10", "min", 0.0)])
    # Independent path: the Keras towers directly.
    rank = _keras_served_ranks(model, ev, s["num_movies"], 15)
    for k in (10,):
        for key, values in metrics.per_interaction(rank, k).items():
            assert result["model"][key] == pytest.approx(float(np.mean(values)), abs=1e-9), key
    assert result["model"]["recall@50"] == pytest.approx(float(np.mean(rank < 15)))
    assert "top_k_accuracy_incl_seen@10" not in result["model"]
    # The reranker is not served here: the served list is the retrieval order.
    assert result["retrieval_order"]["recall@10"] == result["model"]["recall@10"]
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


def test_ranks_of_lists_hand_worked():
    # user 0 served [2, 0, -1]; user 1 served [1, 2, 0]; pairs (0,0) (0,1) (1,0) (1,3).
    lists = np.array([[2, 0, -1], [1, 2, 0]])
    ranks = ranks_of_lists(
        lists, np.array([0, 1]), np.array([0, 0, 1, 1]), np.array([0, 1, 0, 3]), 4
    )
    assert ranks.rank_excl.tolist() == [1, 4, 2, 4]
    assert ranks.greater_incl is None and ranks.top_movies.tolist() == lists.tolist()


def test_regression_against_the_previous_model_blocks_the_blessing(synthetic):
    s = synthetic
    # A barely trained model judged against the fitted one as "previous blessed".
    _, weak = _servables(
        s["tmp"], "weak", *s["args"], epochs=1, validate_every=1, blend_weights=[1.0], seed=7
    )
    thresholds = [Threshold("recall@10", "min", 0.0), Threshold("rmse", "max", 10.0)]
    result = evaluate(
        weak, s["data"], thresholds, previous_servables_dir=s["path"], max_relative_regression=0.0
    )
    prev = result["previous_model"]["metrics"]
    assert result["model"]["recall@10"] < prev["recall@10"]
    assert result["blessed"] is False
    assert (
        f"FAIL: recall@10 {result['model']['recall@10']:.4f} >= previous blessed model "
        f"{prev['recall@10']:.4f} x (1 - 0) = {prev['recall@10']:.4f}"
    ) in result["reasons"]
    # The same model against itself passes the change thresholds.
    same = evaluate(s["path"], s["data"], thresholds, previous_servables_dir=s["path"])
    assert same["blessed"] is True


def test_evaluated_lists_are_what_v1_recommend_serves(synthetic, tmp_path):
    """The Evaluator's served metrics equal those of /v1/recommend on a live server over the
    evaluated artefacts (pushed as they are: the train split as the seen data)."""
    s = synthetic
    ev = s["data"]
    result = evaluate(s["path"], ev, [])
    serving_dir = tmp_path / "serving"
    for name in names.MODEL_NAMES:
        push.push_atomically(Path(servables.model_dir(s["path"], name)), serving_dir / name)
    store = service.open_store(serving_dir)
    store.poll()
    httpd = server.make_server(store, "127.0.0.1", 0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        host, port = httpd.server_address[:2]
        lists = {}
        for user in sorted(set(ev.user_ids[ev.eval_users])):
            conn = http.client.HTTPConnection(host, port, timeout=30)
            conn.request("POST", "/v1/recommend", json.dumps({"user_id": user, "k": 10}))
            body = json.loads(conn.getresponse().read())
            conn.close()
            lists[user] = [r["movie_id"] for r in body["recommendations"]]
    finally:
        httpd.shutdown()
        httpd.server_close()
    pairs = list(zip(ev.user_ids[ev.eval_users], ev.movie_ids[ev.eval_movies], strict=True))
    position = [lists[u].index(m) if m in lists[u] else 10**6 for u, m in pairs]
    for key, values in metrics.per_interaction(np.array(position), 10).items():
        assert result["model"][key] == pytest.approx(float(np.mean(values)), abs=1e-12), key
    assert result["model"]["user_recall@10"] == pytest.approx(
        metrics.per_user(ev.eval_users, np.array(position), 10)["user_recall@10"], abs=1e-12
    )


def test_the_pusher_ships_every_ingested_rating_as_seen(synthetic, tmp_path):
    s = synthetic
    ev = s["data"]
    pushed = servables.push_servables(
        s["path"], str(tmp_path / "staging"), str(tmp_path / "serving")
    )
    assert pushed[names.RETRIEVAL]["version"] == 1
    assert pushed["bundle"] == 1
    assert bundles.read_bundle(tmp_path / "serving", 1).versions == dict.fromkeys(
        names.MODEL_NAMES, 1
    )
    rec = recommender.Recommender.from_saved_models(
        loading.load_saved_model(pushed[names.RETRIEVAL]["path"]),
        tf.saved_model.load(pushed[names.RANKING]["path"]),
    )
    users = sorted(set(ev.user_ids))
    served = rec.recommend(users, rec.k)
    rated = {}
    for u, m in zip(
        ev.user_ids[np.r_[ev.train_users, ev.eval_users]],
        ev.movie_ids[np.r_[ev.train_movies, ev.eval_movies]],
        strict=True,
    ):
        rated.setdefault(u, set()).add(m)
    held_out_listed = 0
    for row, user in enumerate(users):
        listed = set(served.movie_ids[row]) - {""}
        assert not listed & rated[user], user
        held_out_listed += len(listed)
    assert held_out_listed > 0
    # The evaluated servables themselves still list eval movies (train-only seen data).
    evaluated = recommender.Recommender.from_saved_models(
        loading.load_saved_model(servables.model_dir(s["path"], names.RETRIEVAL)),
        tf.saved_model.load(servables.model_dir(s["path"], names.RANKING)),
    ).recommend(users, rec.k)
    eval_pairs = set(zip(ev.user_ids[ev.eval_users], ev.movie_ids[ev.eval_movies], strict=True))
    assert any(
        (u, m) in eval_pairs for row, u in enumerate(users) for m in evaluated.movie_ids[row]
    )


def test_the_pusher_pushes_a_bundle_to_gs(synthetic, gcs_bucket, tmp_path):
    """The Pusher's push (``push_servables``) into ``gs://`` on a Cloud Storage emulator,
    with a remote staging URI as on Vertex (a local temporary directory replaces it)."""
    uri = f"gs://{gcs_bucket}/serving"
    pushed = servables.push_servables(synthetic["path"], "gs://elsewhere/staging", uri)
    assert pushed["bundle"] == 1
    for name in names.MODEL_NAMES:
        assert pushed[name] == {"version": 1, "path": f"{uri}/{name}/1"}
    assert pushed["models_config"] == f"{uri}/models.config"
    target = serving_dir.open_serving_dir(uri)
    assert all(target.list_versions(name) == [1] for name in names.MODEL_NAMES)
    ranking = target.fetch(names.RANKING, 1, tmp_path / "ranking")
    local = servables.model_dir(synthetic["path"], names.RANKING)
    assert bundles.fingerprints(ranking) == bundles.fingerprints(local)
    store = service.open_store(uri)
    store.poll()
    assert store.snapshot.bundle == 1
    assert store.snapshot.versions() == dict.fromkeys(names.MODEL_NAMES, 1)


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
