"""TFLite ranking model: same predictions as the SavedModel on 1,000 random pairs."""

import numpy as np
import tensorflow as tf

from publish import tflite
from trainer import data, export, features
from trainer.config import TrainerConfig
from trainer.run import train


def test_tflite_matches_the_saved_model(tmp_path):
    rng = np.random.default_rng(1)
    cols = {
        features.USER_IDX: rng.integers(0, 40, 2000),
        features.MOVIE_IDX: rng.integers(0, 30, 2000),
        features.RATING: rng.choice([1.0, 3.0, 5.0], 2000).astype(np.float32),
    }
    vocab = data.Vocabularies(
        users=[f"u{i}" for i in range(40)], movies=[f"m{i}" for i in range(30)]
    )
    config = TrainerConfig(
        hidden_dim=8, epochs=2, validate_every=1, batch_size=16, ease_rank=4, candidates=5
    )
    model, _ = train(cols, vocab, config)
    saved = tmp_path / "ranking"
    histories = export.Histories.from_indices(
        cols[features.USER_IDX], cols[features.MOVIE_IDX], vocab
    )
    export.export_serving_model(model, vocab, histories, str(saved))
    path = tflite.export_tflite(saved, tmp_path / "ranking.tflite")
    assert path.stat().st_size > 10_000
    assert tflite.parity(saved, path, num_pairs=1000) < 1e-4
    # Direct comparison with the Keras model on known and unknown ids (OOV row = 40 / 30).
    got = tflite.predict_tflite(path, ["u3", "u39", "nobody"], ["m0", "zzz", "m29"])
    expected = model.predict_rating(tf.constant([3, 39, 40]), tf.constant([0, 30, 29])).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)
