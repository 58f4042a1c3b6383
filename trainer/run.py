"""TFX Trainer entry point: ``run_fn`` trains the joint model and exports it.

The Trainer component calls ``trainer.run.run_fn`` by module path. It parses the typed
config, reads the Transform output, trains (warm-started from the Trainer's base model when
the pipeline gives it one), and writes the serving SavedModel plus a ``training.json``
(config, loss history, durations, what the warm start carried over) beside it in the model
run directory.
"""

import json
import os
import time

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from absl import logging

from trainer import data, export, features, warm_start
from trainer.config import TrainerConfig
from trainer.model import JointModel, movie_log_frequency

TRAINING_SUMMARY = "training.json"


def train(
    train_columns: dict[str, np.ndarray],
    vocabularies: data.Vocabularies,
    config: TrainerConfig,
    eval_columns: dict[str, np.ndarray] | None = None,
    previous: warm_start.PreviousModel | None = None,
    callbacks: list[tf.keras.callbacks.Callback] | None = None,
) -> tuple[JointModel, dict]:
    """Trains a JointModel on in-memory transformed columns.

    Args:
      train_columns: ``user_idx``, ``movie_idx`` (``[n]`` int64) and ``rating`` (``[n]``).
      vocabularies: the Transform vocabularies (sizes the embedding tables).
      config: hyperparameters.
      eval_columns: optional eval columns; their loss and RMSE are logged per epoch.
      previous: a model to warm-start from (``warm_start.read_previous_model``); None
        trains from a fresh initialisation.
      callbacks: Keras callbacks of ``fit``, e.g. an evaluation after every epoch.

    Returns:
      The trained model and a summary dict (per-epoch history, examples/s, and under
      ``"warm_start"`` what ``warm_start.warm_start`` carried over, or None).
    """
    tf.keras.utils.set_random_seed(config.seed)
    num_users, num_movies = len(vocabularies.users), len(vocabularies.movies)
    ratings = train_columns[features.RATING]
    model = JointModel(
        num_users=num_users,
        num_movies=num_movies,
        movie_log_frequency=movie_log_frequency(train_columns[features.MOVIE_IDX], num_movies),
        global_mean=float(ratings.mean()),
        config=config,
    )
    carried = warm_start.warm_start(model, vocabularies, previous) if previous else None
    model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate))
    train_ds = data.make_dataset(train_columns, config.batch_size, config.seed)
    eval_ds = (
        data.make_dataset(eval_columns, 8192, config.seed, shuffle=False)
        if eval_columns is not None
        else None
    )
    start = time.perf_counter()
    history = model.fit(
        train_ds, epochs=config.epochs, validation_data=eval_ds, callbacks=callbacks, verbose=0
    )
    seconds = time.perf_counter() - start
    summary = {
        "config": config.to_dict(),
        "num_train_examples": int(len(ratings)),
        "num_users": num_users,
        "num_movies": num_movies,
        "train_seconds": seconds,
        "examples_per_second": len(ratings) * config.epochs / seconds,
        "history": {k: [float(x) for x in v] for k, v in history.history.items()},
        "warm_start": carried,
    }
    return model, summary


# Keys TFX's Vertex AI Training Trainer adds to custom_config for its own use.
_VERTEX_KEY_PREFIX = "ai_platform_"


def hyperparameters(custom_config: dict | None) -> dict:
    """The Trainer's custom_config without the keys the Vertex AI Training executor adds
    (``ai_platform_training_args``, ``ai_platform_training_enable_vertex``, ...)."""
    return {k: v for k, v in (custom_config or {}).items() if not k.startswith(_VERTEX_KEY_PREFIX)}


def run_fn(fn_args) -> None:
    """Trains and exports the model (called by the TFX Trainer).

    Args:
      fn_args: tfx.components.FnArgs with ``train_files``, ``eval_files``,
        ``transform_output``, ``serving_model_dir``, ``model_run_dir``, ``custom_config``
        and ``base_model`` (the serving SavedModel to warm-start from, or None).
    """
    config = TrainerConfig.from_custom_config(hyperparameters(fn_args.custom_config))
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    vocabularies = data.read_vocabularies(tf_transform_output)
    train_columns = data.read_transformed(fn_args.train_files)
    eval_columns = data.read_transformed(fn_args.eval_files)
    logging.info(
        "training on %d examples, %d users, %d movies, config %s",
        len(train_columns[features.RATING]),
        len(vocabularies.users),
        len(vocabularies.movies),
        config,
    )
    previous = warm_start.read_previous_model(fn_args.base_model) if fn_args.base_model else None
    model, summary = train(train_columns, vocabularies, config, eval_columns, previous)
    if summary["warm_start"]:
        logging.info("warm start: %s", summary["warm_start"])
    export.export_serving_model(model, vocabularies, fn_args.serving_model_dir)
    tf.io.gfile.makedirs(fn_args.model_run_dir)
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, TRAINING_SUMMARY), "w") as f:
        json.dump(summary, f, indent=2)
