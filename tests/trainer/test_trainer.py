"""Transform vocabularies, the joint model, training and the exported signatures."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from trainer import data, ease, export, features, run, selection
from trainer.config import TrainerConfig, bf16_native, retrieval_length
from trainer.preprocessing import preprocessing_fn
from trainer.run import train

RAW_SPEC = {
    features.USER_ID: tf.io.FixedLenFeature([1], tf.string),
    features.MOVIE_ID: tf.io.FixedLenFeature([1], tf.string),
    features.GENRES: tf.io.VarLenFeature(tf.string),
    features.RATING: tf.io.FixedLenFeature([1], tf.float32),
}


def _raw(user, movie, genres, rating):
    return {
        features.USER_ID: [user],
        features.MOVIE_ID: [movie],
        features.GENRES: genres,
        features.RATING: [rating],
    }


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    """Runs preprocessing_fn with tf.Transform on Beam over 6 hand-written ratings."""
    tmp = tmp_path_factory.mktemp("tft")
    rows = [
        _raw("u1", "m10", ["Drama"], 4.0),
        _raw("u1", "m20", ["Comedy", "Drama"], 3.0),
        _raw("u2", "m10", ["Drama"], 5.0),
        _raw("u3", "m10", ["Drama"], 2.0),
        _raw("u2", "m30", [], 1.0),
        _raw("u1", "m30", [], 2.0),
    ]
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(RAW_SPEC))
    with tft_beam.Context(temp_dir=str(tmp / "tmp")):
        (out, _), transform_fn = (rows, metadata) | tft_beam.AnalyzeAndTransformDataset(
            preprocessing_fn
        )
        _ = transform_fn | tft_beam.WriteTransformFn(str(tmp / "out"))
    return out, tft.TFTransformOutput(str(tmp / "out"))


def test_vocabularies_are_ordered_by_frequency_with_oov_after(transformed):
    out, tft_output = transformed
    vocab = data.read_vocabularies(tft_output)
    # u1 rated 3 times, u2 twice, u3 once; m10 3 times, m30 twice, m20 once.
    assert vocab.users == ["u1", "u2", "u3"]
    assert vocab.movies == ["m10", "m30", "m20"]
    genres = [g.decode() for g in tft_output.vocabulary_by_name(features.GENRE_VOCAB)]
    assert genres == ["Drama", "Comedy"]
    assert [int(r[features.USER_IDX]) for r in out] == [0, 0, 1, 2, 1, 0]
    assert [int(r[features.MOVIE_IDX]) for r in out] == [0, 2, 0, 0, 1, 1]
    assert [list(r[features.GENRE_IDX]) for r in out][:2] == [[0], [1, 0]]
    assert [float(r[features.RATING]) for r in out] == [4.0, 3.0, 5.0, 2.0, 1.0, 2.0]


def test_config_parsing_and_errors():
    cfg = TrainerConfig.from_custom_config({"epochs": "30", "blend_weights": [0.5, 1]})
    assert cfg.epochs == 30 and cfg.blend_weights == (0.5, 1.0)
    assert TrainerConfig.from_custom_config(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown keys \\['epoch'\\]"):
        TrainerConfig.from_custom_config({"epoch": 3})
    with pytest.raises(ValueError, match="batch_size"):
        TrainerConfig(batch_size=0)
    with pytest.raises(ValueError, match="blend_weights=.* is not a tuple"):
        TrainerConfig.from_custom_config({"blend_weights": "0.5"})
    with pytest.raises(ValueError, match="rerank must be one of auto, on, off"):
        TrainerConfig(rerank="maybe")
    with pytest.raises(ValueError, match="learning_rate must be finite"):
        TrainerConfig(learning_rate=float("nan"))
    with pytest.raises(ValueError, match="blend_weights must be in"):
        TrainerConfig(blend_weights=(1.5,))
    # On Vertex AI Training, TFX adds its own keys to custom_config; run_fn drops them.
    vertex = {**cfg.to_dict(), "ai_platform_training_args": {"project": "p"}}
    assert TrainerConfig.from_custom_config(run.hyperparameters(vertex)) == cfg


def _synthetic_columns(num_users=40, num_movies=30, n=3000, seed=0):
    """Ratings with latent structure: users like movies of their own group (0..2)."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, num_users, n)
    movies = (users % 3) + 3 * rng.integers(0, num_movies // 3, n)
    ratings = np.where(rng.random(n) < 0.8, 4.5, 2.0).astype(np.float32)
    return {
        features.USER_IDX: users.astype(np.int64),
        features.MOVIE_IDX: movies.astype(np.int64),
        features.RATING: ratings,
    }


def _vocab(num_users=40, num_movies=30):
    return data.Vocabularies(
        users=[f"u{i}" for i in range(num_users)], movies=[f"m{i}" for i in range(num_movies)]
    )


SMALL = TrainerConfig(
    hidden_dim=16,
    epochs=20,
    validate_every=5,
    batch_size=16,
    ease_rank=8,
    embedding_dim=8,
    rating_epochs=4,
    candidates=20,
    learning_rate=0.01,
)


@pytest.fixture(scope="module")
def trained():
    cols = _synthetic_columns()
    model, summary = train(cols, _vocab(), SMALL)
    return cols, model, summary


def _history(cols, num_users=40, num_movies=30):
    shape = (num_users + 1, num_movies + 1)
    return selection.interactions(cols[features.USER_IDX], cols[features.MOVIE_IDX], shape)


def test_training_learns_the_groups_and_reports_its_choices(trained):
    cols, model, summary = trained
    scores = run.retrieval_scores(model, _history(cols))[:40, :30]
    # Each user's best-scored movie belongs to the user's group.
    assert np.mean(np.argmax(scores, axis=1) % 3 == np.arange(40) % 3) > 0.9
    rating = model.predict_rating(tf.constant([0, 1]), tf.constant([0, 1])).numpy()
    assert 2.0 < float(np.mean(rating)) < 4.6
    chosen = summary["chosen"]
    assert chosen["retrieval_epochs"] % SMALL.validate_every == 0
    assert 0 < chosen["retrieval_epochs"] <= SMALL.epochs
    assert chosen["blend_weight"] in SMALL.blend_weights
    assert chosen["ease_lambda"] in SMALL.ease_lambdas
    assert 1 <= chosen["rating_epochs"] <= SMALL.rating_epochs
    validation = summary["validation"]
    # The choice is the argmax of the validation numbers it reports.
    by_weight = validation["blend_ndcg@100_by_weight"]
    assert by_weight[str(chosen["blend_weight"])] == max(by_weight.values())
    assert validation["num_validation_ratings"] > 0
    assert summary["num_train_examples"] == 3000 and summary["examples_per_second"] > 0
    assert model.use_reranker.numpy() == chosen["use_reranker"]


def test_the_towers_dot_product_is_the_blend_of_standardised_scores(trained):
    cols, model, _ = trained
    x = _history(cols)
    users = np.arange(40)
    dense = x[users].toarray()
    # Reference in numpy: the autoencoder's and EASE's scores over the vocabulary movies,
    # each divided by its standard deviation over those movies, weighted w and 1 - w.
    norm = dense / np.sqrt(np.maximum(dense.sum(axis=1, keepdims=True), 1))
    hidden = np.tanh(
        norm @ model.encoder.embeddings.numpy() + model.encoder_bias.embeddings.numpy()
    )
    dae = hidden @ model.decoder.embeddings.numpy().T + model.decoder_bias.embeddings.numpy()[:, 0]
    ease_scores = dense @ model.ease_left.numpy() @ model.ease_right.numpy().T
    w = float(model.blend_weight.numpy())
    dae, ease_scores = dae[:, :30], ease_scores[:, :30]
    expected = w * dae / dae.std(axis=1, keepdims=True) + (1 - w) * ease_scores / ease_scores.std(
        axis=1, keepdims=True
    )
    got = run.retrieval_scores(model, x[users])[:, :30]
    np.testing.assert_allclose(got, expected, rtol=2e-3, atol=2e-3)


def test_ease_low_rank_is_exact_at_full_rank_and_the_best_truncation_below():
    rng = np.random.default_rng(1)
    x = (rng.random((60, 25)) < 0.3).astype(np.float32)
    b = ease.fit(x, 10.0)
    p = np.linalg.inv(x.T @ x + 10.0 * np.eye(25))
    expected = -p / np.diag(p)
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(b, expected, rtol=1e-4, atol=1e-6)
    left, right = ease.low_rank(b, 25)
    np.testing.assert_allclose(left @ right.T, b, atol=1e-6)
    left, right = ease.low_rank(b, 10)
    u, s, vt = np.linalg.svd(b.astype(np.float64))
    best = (u[:, :10] * s[:10]) @ vt[:10]
    np.testing.assert_allclose(left @ right.T, best, atol=1e-3)


def test_validation_cut_is_a_stable_hash_that_keeps_single_raters_whole():
    users = np.array([0] * 50 + [1] + [2] * 50)
    movies = np.concatenate([np.arange(50), [7], np.arange(50)])
    mask = selection.validation_mask(users, movies, 0.2, seed=3)
    assert not mask[50]  # user 1's only rating stays in the fit part
    assert 10 <= mask.sum() <= 30
    order = np.random.default_rng(0).permutation(len(users))
    np.testing.assert_array_equal(
        selection.validation_mask(users[order], movies[order], 0.2, seed=3), mask[order]
    )
    assert not np.array_equal(selection.validation_mask(users, movies, 0.2, seed=4), mask)


def test_selection_metrics_on_a_hand_worked_example():
    scores = np.array([[0.9, 0.1, 0.5, 0.3], [0.2, 0.8, 0.4, 0.6]])
    seen = selection.interactions(np.array([0]), np.array([0]), (2, 4))
    top = selection.top_unseen(scores, seen, 3)
    assert top.tolist() == [[2, 3, 1], [1, 3, 2]]
    held = selection.interactions(np.array([0, 1, 1]), np.array([1, 3, 0]), (2, 4))
    # user 0: movie 1 at position 2; user 1: movie 3 at position 1, movie 0 not listed.
    assert selection.recall(top, held, 2) == pytest.approx(1 / 3)
    assert selection.recall(top, held, 3) == pytest.approx(2 / 3)
    assert selection.ndcg(top, held, 3) == pytest.approx((1 / np.log2(4) + 1 / np.log2(3)) / 3)


def test_exported_signatures_map_raw_ids(tmp_path, trained):
    cols, model, _ = trained
    vocab = _vocab()
    histories = export.Histories.from_indices(
        cols[features.USER_IDX], cols[features.MOVIE_IDX], vocab
    )
    export.export_serving_model(model, vocab, histories, str(tmp_path / "model"))
    loaded = tf.saved_model.load(str(tmp_path / "model"))
    user = loaded.signatures[features.SIG_USER_EMBEDDING](user_id=tf.constant(["u3", "nobody"]))
    np.testing.assert_allclose(
        user["embedding"][0],
        model.user_vectors(run._sparse(_history(cols)[3:4]))[0],
        rtol=1e-5,
        atol=1e-6,
    )
    assert user["known"].numpy().tolist() == [True, False]
    # The same history given as movie ids embeds the same; unknown ids are skipped.
    history = histories.by_user["u3"] + ["not-a-movie"]
    given = loaded.signatures[features.SIG_HISTORY_EMBEDDING](movie_ids=tf.constant([history]))
    np.testing.assert_allclose(given["embedding"][0], user["embedding"][0], rtol=1e-5, atol=1e-6)
    movie = loaded.signatures[features.SIG_MOVIE_EMBEDDING](movie_id=tf.constant(["m7"]))
    np.testing.assert_allclose(
        movie["embedding"][0], model.movie_vectors(tf.constant([7]))[0], rtol=1e-6
    )
    rating = loaded.signatures[features.SIG_RATING](
        user_id=tf.constant(["u1", "u2"]), movie_id=tf.constant(["m4", "m5"])
    )["rating"].numpy()
    expected = model.predict_rating(tf.constant([1, 2]), tf.constant([4, 5])).numpy()
    np.testing.assert_allclose(rating, expected, rtol=1e-5)
    seen = loaded.signatures[features.SIG_SEEN](user_id=tf.constant(["u3", "nobody"]))
    count = seen["count"].numpy().tolist()
    assert count == [len(histories.by_user["u3"]), 0]
    assert [m.decode() for m in seen["movie_ids"][0][: count[0]].numpy()] == histories.by_user["u3"]
    flags = loaded.is_seen(tf.constant(["u3"]), tf.constant([[history[0], "m-none"]])).numpy()
    assert flags.tolist() == [[True, False]]


def test_rerank_passes_retrieval_scores_through_unless_the_reranker_is_served(tmp_path, trained):
    cols, model, _ = trained
    vocab = _vocab()
    histories = export.Histories.from_indices(
        cols[features.USER_IDX], cols[features.MOVIE_IDX], vocab
    )
    scores = tf.constant([[3.0, 2.0, -np.inf]])
    movies = tf.constant([["m1", "m4", "m7"]])
    for served in (False, True):
        model.use_reranker.assign(served)
        path = str(tmp_path / f"served-{served}")
        export.export_serving_model(model, vocab, histories, path)
        out = tf.saved_model.load(path).signatures[features.SIG_RERANK](
            user_id=tf.constant(["u2"]), movie_ids=movies, retrieval_scores=scores
        )
        got = out["scores"].numpy()[0]
        assert got[2] == -np.inf
        feats, _ = model.rerank_features(
            tf.constant([2], tf.int64), tf.constant([[1, 4, 7]], tf.int64), scores
        )
        learned = model.reranker(feats).numpy()[0, :, 0]
        np.testing.assert_allclose(got[:2], learned[:2] if served else [3.0, 2.0], rtol=1e-5)
        expected = model.predict_rating(tf.constant([2, 2, 2]), tf.constant([1, 4, 7])).numpy()
        np.testing.assert_allclose(out["ratings"].numpy()[0], expected, rtol=1e-5)
    model.use_reranker.assign(False)


def test_replacing_the_seen_data_changes_histories_not_the_graph(tmp_path, trained):
    cols, model, _ = trained
    vocab = _vocab()
    histories = export.Histories.from_indices(
        cols[features.USER_IDX], cols[features.MOVIE_IDX], vocab
    )
    path = str(tmp_path / "model")
    export.export_serving_model(model, vocab, histories, path)
    export.replace_seen_data(path, export.Histories({"u3": ["m2", "m5"], "newcomer": ["m1"]}))
    loaded = tf.saved_model.load(path)
    seen = loaded.signatures[features.SIG_SEEN](user_id=tf.constant(["u3", "newcomer", "u4"]))
    assert seen["count"].numpy().tolist() == [2, 1, 0]
    user = loaded.signatures[features.SIG_USER_EMBEDDING](user_id=tf.constant(["newcomer"]))
    given = loaded.signatures[features.SIG_HISTORY_EMBEDDING](movie_ids=tf.constant([["m1"]]))
    np.testing.assert_allclose(user["embedding"], given["embedding"], rtol=1e-6)
    with pytest.raises(ValueError, match="holds a tab"):
        export.write_histories(export.Histories({"u\t1": ["m1"]}), str(tmp_path / "bad"))


def test_a_refit_trains_the_recorded_choices_on_other_ratings(tmp_path, trained):
    cols, model, summary = trained
    vocab = _vocab()
    histories = export.Histories.from_indices(
        cols[features.USER_IDX], cols[features.MOVIE_IDX], vocab
    )
    path = str(tmp_path / "evaluated")
    export.export_serving_model(model, vocab, histories, path, choices=summary["chosen"])
    choices = export.read_choices(path)
    assert choices.to_dict() == summary["chosen"]
    # Fewer ratings per user than the fixture's (which has every user rate every movie of
    # the group), so the histories differ.
    other = _synthetic_columns(n=400, seed=5)
    refit, refit_summary = run.fit_with(other, vocab, SMALL, choices)
    assert refit_summary["chosen"] == summary["chosen"]
    assert refit_summary["num_train_examples"] == 400 and refit_summary["choose_seconds"] == 0
    assert float(refit.blend_weight.numpy()) == pytest.approx(summary["chosen"]["blend_weight"])
    np.testing.assert_allclose(refit.reranker.kernel.numpy(), model.reranker.kernel.numpy())
    assert bool(refit.use_reranker.numpy()) == summary["chosen"]["use_reranker"]
    # Trained anew on other histories: not the evaluated weights.
    assert not np.allclose(refit.decoder.embeddings.numpy(), model.decoder.embeddings.numpy())
    bare = str(tmp_path / "bare")
    export.export_serving_model(model, vocab, histories, bare)
    with pytest.raises(FileNotFoundError, match="records no choices"):
        export.read_choices(bare)


def test_ease_above_its_catalogue_bound_covers_the_most_rated_movies_only():
    rng = np.random.default_rng(2)
    # Column j is rated with probability falling in j: the most rated are the first ones,
    # but not exactly in order.
    x = (rng.random((200, 25)) < np.linspace(0.6, 0.05, 25)).astype(np.float32)
    counts = x.sum(axis=0)
    movies, b = ease.fit_most_rated(x, 10.0, max_movies=10)
    assert list(movies) == sorted(np.argsort(-counts, kind="stable")[:10])
    np.testing.assert_array_equal(b, ease.fit(x[:, movies], 10.0))
    left, right = ease.low_rank_rows(movies, b, 25, 4)
    assert left.shape == right.shape == (25, 4)
    uncovered = np.setdiff1d(np.arange(25), movies)
    assert not left[uncovered].any() and not right[uncovered].any()
    covered_left, covered_right = ease.low_rank(b, 4)
    np.testing.assert_array_equal(left[movies], covered_left)
    np.testing.assert_array_equal(right[movies], covered_right)
    # Within the bound: every movie, the plain fit.
    movies, b = ease.fit_most_rated(x, 10.0)
    np.testing.assert_array_equal(movies, np.arange(25))
    np.testing.assert_array_equal(b, ease.fit(x, 10.0))


def test_training_above_the_ease_bound_gives_the_rarer_movies_no_ease_part(monkeypatch):
    monkeypatch.setattr(ease, "MAX_MOVIES", 12)
    cols = _synthetic_columns()
    model, summary = train(cols, _vocab(), SMALL)
    x = _history(cols)[:, :30]  # what round 2 fitted EASE on: every train pair, once
    covered = ease.most_rated(x)
    assert len(covered) == 12
    left, right = ease.low_rank_rows(
        *ease.fit_most_rated(x, summary["chosen"]["ease_lambda"]), 30, SMALL.ease_rank, SMALL.seed
    )
    np.testing.assert_allclose(model.ease_left.numpy()[:30], left, atol=1e-6)
    np.testing.assert_allclose(model.ease_right.numpy()[:30], right, atol=1e-6)
    assert not left[np.setdiff1d(np.arange(30), covered)].any()
    assert left[covered].any()
    # The blend still ranks every movie: each user's best-scored one is of the user's group.
    scores = run.retrieval_scores(model, _history(cols))[:40, :30]
    assert np.mean(np.argmax(scores, axis=1) % 3 == np.arange(40) % 3) > 0.9
    assert summary["chosen"]["ease_lambda"] in SMALL.ease_lambdas


def test_top_lists_in_user_batches_are_the_lists_of_all_users_at_once(monkeypatch):
    rng = np.random.default_rng(3)
    x = selection.interactions(rng.integers(0, 50, 400), rng.integers(0, 30, 400), (50, 30))
    weights = rng.standard_normal((30, 30)).astype(np.float32)

    def score(rows):
        return np.asarray(rows @ weights, np.float32)

    users = np.flatnonzero(np.diff(x.indptr))
    expected = selection.top_unseen(score(x[users]), x[users], 8)
    monkeypatch.setattr(run, "_USER_BATCH", 7)
    top, values = run._top_lists(score, x, users, 8)
    np.testing.assert_array_equal(top, expected)
    np.testing.assert_array_equal(values, np.take_along_axis(score(x[users]), expected, axis=1))
    empty, _ = run._top_lists(score, x, np.array([], np.int64), 8)
    assert empty.shape == (0, 8)


def test_the_search_goes_by_epochs_while_they_fit_the_step_budget_and_by_steps_above():
    x = _history(_synthetic_columns())  # 40 users with a history: 3 steps of 16 an epoch
    by_epochs = run._schedule(x, SMALL)  # 20 epochs x 3 = 60 steps <= 3,000
    assert not by_epochs.by_steps and by_epochs.steps_per_epoch == 3
    assert by_epochs.stops == (15, 30, 45, 60)  # every 5 epochs
    # 60 steps do not fit 14: the 4 checks spread over the budget, 3 steps apart.
    by_steps = run._schedule(x, TrainerConfig(**{**SMALL.to_dict(), "max_steps": 14}))
    assert by_steps.by_steps and by_steps.stops == (3, 6, 9, 12)
    odd = TrainerConfig(**{**SMALL.to_dict(), "epochs": 17, "max_steps": 50})
    assert run._schedule(x, odd).stops == (12, 24, 36, 48)  # epochs 5, 10, 15 and the 17th


def test_a_search_by_steps_chooses_steps_and_its_refit_trains_that_many():
    cols = _synthetic_columns()
    budget = TrainerConfig(**{**SMALL.to_dict(), "max_steps": 12, "validation_users": 25})
    model, summary = train(cols, _vocab(), budget)
    chosen, validation = summary["chosen"], summary["validation"]
    assert chosen["retrieval_epochs"] == 0 and chosen["retrieval_steps"] in (3, 6, 9, 12)
    curve = validation["retrieval_ndcg@100_by_steps"]
    assert [steps for steps, _ in curve] == [3, 6, 9, 12][: len(curve)]
    best = max(curve, key=lambda c: c[1])  # the first of equal checks
    assert chosen["retrieval_steps"] == best[0]
    assert "retrieval_ndcg@100_by_epochs" not in validation
    assert retrieval_length(chosen) == f"{chosen['retrieval_steps']} steps"
    assert retrieval_length({"retrieval_epochs": 0, "retrieval_steps": 2400}) == "2,400 steps"
    assert retrieval_length({"retrieval_epochs": 40, "retrieval_steps": 0}) == "40 epochs"
    assert validation["num_validation_users"] == 25
    assert summary["history"]["validation_ndcg@100"] == [v for _, v in curve]
    # The refit trains the chosen steps (the users repeat past an epoch's 3 steps).
    choices = run.Choices.from_dict(chosen)
    fresh, _ = run._new_model(cols, _vocab(), budget, None)
    run._fit_retrieval(fresh, _history(cols), None, budget, choices)
    assert int(fresh.optimizer.iterations.numpy()) == chosen["retrieval_steps"]
    # A model exported before the budget records no steps: its refit goes by epochs.
    old = {k: v for k, v in chosen.items() if k != "retrieval_steps"}
    old["retrieval_epochs"] = 2
    assert run.Choices.from_dict(old).retrieval_steps == 0
    fresh, _ = run._new_model(cols, _vocab(), budget, None)
    run._fit_retrieval(fresh, _history(cols), None, budget, run.Choices.from_dict(old))
    assert int(fresh.optimizer.iterations.numpy()) == 2 * 3


def test_the_choices_are_measured_on_a_seeded_sample_of_the_validation_users():
    rng = np.random.default_rng(4)
    x_val = selection.interactions(rng.integers(0, 90, 300), rng.integers(0, 30, 300), (100, 30))
    everyone = np.flatnonzero(np.diff(x_val.indptr))
    assert len(everyone) > 40
    np.testing.assert_array_equal(run._validation_users(x_val, SMALL), everyone)
    few = TrainerConfig(**{**SMALL.to_dict(), "validation_users": 40})
    sample = run._validation_users(x_val, few)
    assert len(sample) == 40 and np.all(np.diff(sample) > 0)
    assert set(sample) <= set(everyone)
    np.testing.assert_array_equal(sample, run._validation_users(x_val, few))


def test_precision_is_checked_and_auto_takes_bfloat16_where_the_cpu_multiplies_it(tmp_path):
    with pytest.raises(ValueError, match="precision must be one of auto, float32, bfloat16"):
        TrainerConfig(precision="float16")
    assert TrainerConfig(precision="float32").train_precision() == "float32"
    assert TrainerConfig(precision="bfloat16").train_precision() == "bfloat16"
    with_bf16 = tmp_path / "bf16"
    with_bf16.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 fma\n")
    without = tmp_path / "plain"
    without.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f fma\n")
    assert bf16_native(str(with_bf16)) and not bf16_native(str(without))
    assert not bf16_native(str(tmp_path / "missing"))
    auto = TrainerConfig(precision="auto").train_precision()
    assert auto == ("bfloat16" if bf16_native() else "float32")


def test_bfloat16_training_learns_the_groups_and_scores_in_float32():
    cols = _synthetic_columns()
    config = TrainerConfig(**{**SMALL.to_dict(), "precision": "bfloat16"})
    model, summary = train(cols, _vocab(), config)
    assert summary["train_precision"] == "bfloat16"
    assert model.train_dtype == tf.bfloat16
    x = _history(cols)
    scores = run.retrieval_scores(model, x)[:40, :30]
    assert scores.dtype == np.float32
    assert np.mean(np.argmax(scores, axis=1) % 3 == np.arange(40) % 3) > 0.9
    # The training matmul in bfloat16 is the float32 one to bfloat16's 8 bits of mantissa.
    hidden = model.encode(run._sparse(x[:40]))
    exact = model.dae_logits(hidden).numpy()
    low = model.dae_logits(hidden, tf.bfloat16).numpy()
    assert low.dtype == np.float32
    np.testing.assert_allclose(low, exact, atol=0.02 * np.abs(exact).max())
    assert not np.array_equal(low, exact)
