"""TFLite export of the ranking model, for on-device rating prediction.

``movierec export-tflite`` calls :func:`export_tflite` on the newest pushed ranking model and
then :func:`parity` to check the converted model against the SavedModel. The conversion uses
TFLite builtin ops only (the id lookups are TFLite's builtin hash tables).
"""

from pathlib import Path

import numpy as np
import tensorflow as tf

from trainer import features


def export_tflite(ranking_model_dir: str | Path, out_path: str | Path) -> Path:
    """Converts the ranking SavedModel's ``serving_default`` signature to a .tflite file.

    Returns:
      The written path.
    """
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(ranking_model_dir), signature_keys=[features.SIG_RATING]
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(converter.convert())
    return out_path


def predict_tflite(tflite_path: str | Path, user_ids, movie_ids) -> np.ndarray:
    """``[n]`` ratings from the TFLite model for ``[n]`` user and movie id strings."""
    interpreter = tf.lite.Interpreter(model_path=str(tflite_path))
    runner = interpreter.get_signature_runner(features.SIG_RATING)
    out = runner(
        **{
            features.USER_ID: np.array([str(u).encode() for u in user_ids]),
            features.MOVIE_ID: np.array([str(m).encode() for m in movie_ids]),
        }
    )
    return out["rating"]


def parity(
    ranking_model_dir: str | Path, tflite_path: str | Path, num_pairs: int = 1000, seed: int = 0
) -> float:
    """Max absolute difference between the SavedModel and the TFLite model.

    The pairs are random (user, movie) ids from the model's vocabularies, plus one unknown
    user and one unknown movie (the out-of-vocabulary rows).

    Raises:
      ValueError: when the SavedModel does not carry its vocabularies.
    """
    loaded = tf.saved_model.load(str(ranking_model_dir))
    if not hasattr(loaded, "user_ids"):
        raise ValueError(
            f"{ranking_model_dir} carries no vocabularies (pushed by an older movierec); "
            "run `movierec run` to push a current model"
        )
    users = [u.decode() for u in loaded.user_ids.numpy()] + ["<unknown user>"]
    movies = [m.decode() for m in loaded.movie_ids.numpy()] + ["<unknown movie>"]
    rng = np.random.default_rng(seed)
    user_ids = [users[i] for i in rng.integers(0, len(users), num_pairs)]
    movie_ids = [movies[i] for i in rng.integers(0, len(movies), num_pairs)]
    expected = loaded.signatures[features.SIG_RATING](
        **{features.USER_ID: tf.constant(user_ids), features.MOVIE_ID: tf.constant(movie_ids)}
    )["rating"].numpy()
    got = predict_tflite(tflite_path, user_ids, movie_ids)
    return float(np.max(np.abs(got - expected)))
