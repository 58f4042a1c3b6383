"""Transform vocabularies, the joint model, training and the exported signatures."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from trainer import data, export, features, run
from trainer.config import TrainerConfig
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
    cfg = TrainerConfig.from_custom_config({"epochs": "3", "rating_hidden_units": [8, 4]})
    assert cfg.epochs == 3 and cfg.rating_hidden_units == (8, 4)
    assert TrainerConfig.from_custom_config(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown keys \\['epoch'\\]"):
        TrainerConfig.from_custom_config({"epoch": 3})
    with pytest.raises(ValueError, match="batch_size"):
        TrainerConfig(batch_size=0)
    with pytest.raises(ValueError, match="both 0"):
        TrainerConfig(retrieval_weight=0, ranking_weight=0)
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


@pytest.mark.parametrize(
    "weights", [(1.0, 1.0), (1.0, 0.0), (0.0, 1.0)], ids=["joint", "retrieval", "ranking"]
)
def test_training_learns_and_weights_select_tasks(weights):
    cols = _synthetic_columns()
    cfg = TrainerConfig(
        embedding_dim=8,
        epochs=15,
        batch_size=128,
        learning_rate=0.02,
        retrieval_weight=weights[0],
        ranking_weight=weights[1],
    )
    model, summary = train(cols, _vocab(), cfg)
    loss = summary["history"]["epoch_loss"]
    assert len(loss) == 15 and loss[-1] < loss[0]
    assert summary["num_train_examples"] == 3000 and summary["examples_per_second"] > 0
    user_emb = model.user_tower(tf.range(41)).numpy()
    movie_emb = model.movie_tower(tf.range(31)).numpy()
    assert user_emb.shape == (41, 8) and movie_emb.shape == (31, 8)
    rating = model.predict_rating(tf.constant([0, 1]), tf.constant([0, 1])).numpy()
    assert rating.shape == (2,)
    if weights[0]:
        # Each user's best-scored movie belongs to the user's group.
        best = np.argmax(user_emb[:40] @ movie_emb[:30].T, axis=1)
        assert np.mean(best % 3 == np.arange(40) % 3) > 0.9
    if weights[1]:
        assert 2.5 < float(np.mean(rating)) < 4.5


def test_exported_signatures_map_raw_ids(tmp_path):
    cols = _synthetic_columns()
    vocab = _vocab()
    model, _ = train(cols, vocab, TrainerConfig(embedding_dim=8, epochs=2, batch_size=256))
    export.export_serving_model(model, vocab, str(tmp_path / "model"))
    loaded = tf.saved_model.load(str(tmp_path / "model"))
    user = loaded.signatures[features.SIG_USER_EMBEDDING](user_id=tf.constant(["u3", "nobody"]))
    np.testing.assert_allclose(
        user["embedding"][0], model.user_tower(tf.constant([3]))[0], rtol=1e-6
    )
    # An unknown user gets the OOV row, index == vocabulary size.
    np.testing.assert_allclose(
        user["embedding"][1], model.user_tower(tf.constant([40]))[0], rtol=1e-6
    )
    assert user["known"].numpy().tolist() == [True, False]
    movie = loaded.signatures[features.SIG_MOVIE_EMBEDDING](movie_id=tf.constant(["m7"]))
    np.testing.assert_allclose(
        movie["embedding"][0], model.movie_tower(tf.constant([7]))[0], rtol=1e-6
    )
    rating = loaded.signatures[features.SIG_RATING](
        user_id=tf.constant(["u1", "u2"]), movie_id=tf.constant(["m4", "m5"])
    )["rating"].numpy()
    expected = model.predict_rating(tf.constant([1, 2]), tf.constant([4, 5])).numpy()
    np.testing.assert_allclose(rating, expected, rtol=1e-5)
