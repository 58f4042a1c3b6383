"""Warm start: rows carried over by id string, the rest fresh; read back from a SavedModel."""

import json

import numpy as np
import pytest
import tensorflow as tf

from trainer import data, export, features, warm_start
from trainer.config import TrainerConfig
from trainer.model import JointModel, movie_counts
from trainer.run import train

USER_TABLE = "user_factors/embeddings"
MOVIE_TABLE = "decoder/embeddings"


def test_carry_rows_hand_worked():
    # old "a"->row 0, "b"->1, "c"->2, OOV row 3; new "c"->0, "x"->1, "a"->2, OOV row 3.
    old = np.array([[1.0], [2.0], [3.0], [9.0]])
    fresh = np.zeros((4, 1))
    rows, count = warm_start.carry_rows(["a", "b", "c"], old, ["c", "x", "a"], fresh)
    np.testing.assert_array_equal(rows, [[3.0], [0.0], [1.0], [0.0]])
    assert count == 2
    np.testing.assert_array_equal(fresh, np.zeros((4, 1)))  # the input is not modified


@pytest.mark.parametrize("seed", range(6))
def test_carry_rows_matches_a_reference(seed):
    rng = np.random.default_rng(seed)
    universe = [f"id{i}" for i in range(50)]
    old_ids = list(rng.choice(universe, rng.integers(1, 40), replace=False))
    new_ids = list(rng.choice(universe, rng.integers(1, 40), replace=False))
    old = rng.normal(size=(len(old_ids) + 1, 3))
    new = rng.normal(size=(len(new_ids) + 1, 3))
    rows, count = warm_start.carry_rows(old_ids, old, new_ids, new)
    expected = new.copy()
    for j, name in enumerate(new_ids):
        for i, old_name in enumerate(old_ids):
            if name == old_name:
                expected[j] = old[i]
    np.testing.assert_array_equal(rows, expected)
    assert count == len(set(old_ids) & set(new_ids))


def _columns(vocab: data.Vocabularies, n: int, seed: int) -> dict[str, np.ndarray]:
    """Users like movies of their own group: group of ``u<k>``/``m<k>`` is k % 3."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, len(vocab.users), n)
    group = np.array([int(u[1:]) % 3 for u in vocab.users])[users]
    by_group = [
        np.array([i for i, m in enumerate(vocab.movies) if int(m[1:]) % 3 == g]) for g in range(3)
    ]
    movies = np.array([rng.choice(by_group[g]) for g in group])
    return {
        features.USER_IDX: users.astype(np.int64),
        features.MOVIE_IDX: movies.astype(np.int64),
        features.RATING: np.where(rng.random(n) < 0.8, 4.5, 2.0).astype(np.float32),
    }


OLD_VOCAB = data.Vocabularies(
    users=[f"u{i}" for i in range(30)], movies=[f"m{i}" for i in range(24)]
)
# Recomputed by Transform: another order, some ids gone, new ones.
NEW_VOCAB = data.Vocabularies(
    users=[f"u{i}" for i in (list(range(29, 4, -1)) + [30, 31, 32, 33])],
    movies=[f"m{i}" for i in (list(range(20, -1, -1)) + [24, 25, 26])],
)
CONFIG = TrainerConfig(
    hidden_dim=16,
    epochs=10,
    validate_every=5,
    batch_size=16,
    ease_rank=8,
    embedding_dim=8,
    rating_epochs=3,
    candidates=10,
)


def _histories(columns, vocab):
    return export.Histories.from_indices(
        columns[features.USER_IDX], columns[features.MOVIE_IDX], vocab
    )


@pytest.fixture(scope="module")
def previous(tmp_path_factory):
    columns = _columns(OLD_VOCAB, 2000, 0)
    model, _ = train(columns, OLD_VOCAB, CONFIG)
    path = str(tmp_path_factory.mktemp("warm") / "model")
    export.export_serving_model(model, OLD_VOCAB, _histories(columns, OLD_VOCAB), path)
    return model, path


def _fresh(vocab: data.Vocabularies, config: TrainerConfig = CONFIG) -> JointModel:
    tf.keras.utils.set_random_seed(config.seed)
    movies = np.arange(len(vocab.movies))
    model = JointModel(
        len(vocab.users), len(vocab.movies), movie_counts(movies, len(movies)), 3.5, config
    )
    model({features.USER_IDX: tf.zeros([1], tf.int64), features.MOVIE_IDX: tf.zeros([1], tf.int64)})
    return model


def test_read_previous_model_gives_vocabularies_and_weights(previous):
    model, path = previous
    prev = warm_start.read_previous_model(path)
    assert prev.users == OLD_VOCAB.users and prev.movies == OLD_VOCAB.movies
    np.testing.assert_array_equal(prev.weights[USER_TABLE], model.id_tables()["users"][0].numpy())
    np.testing.assert_array_equal(
        prev.weights["movie_bias/embeddings"], model.movie_bias.embeddings.numpy()
    )
    np.testing.assert_array_equal(prev.weights["reranker/kernel"], model.reranker.kernel.numpy())
    with pytest.raises(ValueError, match="not a movierec model"):
        tf.saved_model.save(tf.Module(), path + "-empty")
        warm_start.read_previous_model(path + "-empty")


def test_warm_start_carries_shared_ids_and_keeps_new_rows_fresh(previous):
    old_model, path = previous
    model = _fresh(NEW_VOCAB)
    cold = _fresh(NEW_VOCAB)  # same seed: the initialisation warm start starts from
    summary = warm_start.warm_start(model, NEW_VOCAB, warm_start.read_previous_model(path))
    # Shared ids: u5..u29 (25 users) and m0..m20 (21 movies).
    assert summary["rows_carried_over"] == {"users": 25, "movies": 21}
    assert summary["rows_new"] == {"users": 4, "movies": 3}
    assert summary["variables_skipped"] == []
    # encoder, its bias, decoder, its bias, 2 factor tables, 2 bias tables, the re-ranker's
    # kernel and bias
    assert len(summary["variables_copied"]) == 10
    json.dumps(summary)  # goes into training.json
    # Independently of the checkpoint reader: the old model's served movie embeddings start
    # with its decoder rows, by id.
    loaded = tf.saved_model.load(path)
    shared = [i for i, name in enumerate(NEW_VOCAB.movies) if name in OLD_VOCAB.movies]
    new = [i for i, name in enumerate(NEW_VOCAB.movies) if name not in OLD_VOCAB.movies]
    served = loaded.signatures[features.SIG_MOVIE_EMBEDDING](
        movie_id=tf.constant([NEW_VOCAB.movies[i] for i in shared])
    )["embedding"].numpy()
    rows = model.decoder.embeddings.numpy()
    np.testing.assert_array_equal(rows[shared], served[:, : CONFIG.hidden_dim])
    new.append(len(NEW_VOCAB.movies))  # the OOV row stays fresh too
    np.testing.assert_array_equal(rows[new], cold.decoder.embeddings.numpy()[new])
    for table in ("user_factors", "user_bias"):
        old = getattr(old_model, table).embeddings.numpy()
        now = getattr(model, table).embeddings.numpy()
        np.testing.assert_array_equal(
            now[NEW_VOCAB.users.index("u7")], old[OLD_VOCAB.users.index("u7")]
        )
    np.testing.assert_array_equal(model.reranker.kernel.numpy(), old_model.reranker.kernel.numpy())


def test_changed_shapes_are_skipped_not_forced(previous):
    _, path = previous
    wider = TrainerConfig(**{**CONFIG.to_dict(), "embedding_dim": 4})
    model = _fresh(NEW_VOCAB, wider)
    summary = warm_start.warm_start(model, NEW_VOCAB, warm_start.read_previous_model(path))
    # Factor tables of another width start fresh; the autoencoder and biases carry over.
    assert summary["rows_carried_over"] == {"users": 0, "movies": 21}
    assert summary["variables_skipped"] == ["movie_factors/embeddings", USER_TABLE]
    assert "user_bias/embeddings" in summary["variables_copied"]


def test_warm_started_training_starts_where_the_previous_model_ended(previous):
    _, path = previous
    columns = _columns(NEW_VOCAB, 2000, 1)
    short = TrainerConfig(**{**CONFIG.to_dict(), "epochs": 1, "validate_every": 1})
    prev = warm_start.read_previous_model(path)
    _, warm = train(columns, NEW_VOCAB, short, previous=prev)
    _, cold = train(columns, NEW_VOCAB, short)
    assert warm["warm_start"]["rows_carried_over"] == {"users": 25, "movies": 21}
    assert cold["warm_start"] is None
    # Most examples are of known users and movies: the first epoch starts far along.
    assert warm["history"]["validation_rmse"][0] < cold["history"]["validation_rmse"][0]
    assert warm["history"]["validation_ndcg@100"][0] > cold["history"]["validation_ndcg@100"][0]
