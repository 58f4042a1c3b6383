"""Pusher component: blessed models into a TensorFlow Serving directory, atomically.

The pipeline wires ``MovieRecPusher`` after the Evaluator. For a blessed model it writes the
retrieval SavedModel (index over the whole catalogue; each user's train movies are never
returned) and copies the ranking SavedModel into the artifact's own directory, then pushes
both as new integer versions under
``<serving_dir>/{retrieval,ranking}/`` and rewrites ``models.config``. An unblessed model
leaves the serving directory untouched, so the last good model keeps serving.
"""

import json
import os
from pathlib import Path

import tensorflow as tf
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types.standard_artifacts import Examples, Model, ModelBlessing, PushedModel
from tfx.utils import path_utils

from components import examples_io
from components.evaluator import BLESSED_PROPERTY
from serving import push, retrieval
from serving.index import BRUTE_FORCE
from trainer import features

PUSH_FILE = "push.json"


def push_models(
    trained_model_dir: str,
    examples_uri: str,
    catalogue_uri: str,
    staging_dir: str,
    serving_dir: str,
    index_kind: str = "scann",
    retrieval_k: int = 100,
) -> dict:
    """Builds the serving models in ``staging_dir`` and pushes them into ``serving_dir``.

    Returns:
      ``{name: {"version", "path"}}`` for ``retrieval`` (``index_kind``),
      ``retrieval_brute_force`` and ``ranking``, and ``"models_config": path``.
    """
    catalogue = examples_io.read_columns(
        catalogue_uri, features.CATALOGUE_SPLIT, (features.MOVIE_ID, features.MOVIE_TITLE)
    )
    seen = examples_io.read_columns(
        examples_uri, features.TRAIN_SPLIT, (features.USER_ID, features.MOVIE_ID)
    )
    staging = Path(staging_dir)
    for name, kind in ((push.RETRIEVAL, index_kind), (push.RETRIEVAL_BRUTE_FORCE, BRUTE_FORCE)):
        retrieval.export_retrieval_model(
            trained_model_dir,
            catalogue[features.MOVIE_ID],
            catalogue[features.MOVIE_TITLE],
            seen[features.USER_ID],
            seen[features.MOVIE_ID],
            str(staging / name),
            index_kind=kind,
            k=retrieval_k,
        )
    # The trained SavedModel already is the ranking model (rating as serving_default).
    tf.io.gfile.makedirs(str(staging))
    _copy_tree(trained_model_dir, str(staging / push.RANKING))
    serving = Path(serving_dir)
    result = {}
    for name in push.MODEL_NAMES:
        version, path = push.push_atomically(staging / name, serving / name)
        result[name] = {"version": version, "path": str(path)}
    result["models_config"] = str(
        push.write_models_config(serving, {n: serving / n for n in push.MODEL_NAMES})
    )
    return result


def _copy_tree(src: str, dst: str) -> None:
    for dirpath, _, filenames in tf.io.gfile.walk(src):
        rel = os.path.relpath(dirpath, src)
        target = os.path.normpath(os.path.join(dst, rel))
        tf.io.gfile.makedirs(target)
        for name in filenames:
            tf.io.gfile.copy(os.path.join(dirpath, name), os.path.join(target, name), True)


@component
def MovieRecPusher(  # noqa: N802 (TFX component names are classes)
    model: InputArtifact[Model],
    examples: InputArtifact[Examples],
    catalogue: InputArtifact[Examples],
    model_blessing: InputArtifact[ModelBlessing],
    pushed_model: OutputArtifact[PushedModel],
    serving_dir: Parameter[str],
    index_kind: Parameter[str] = "scann",
    retrieval_k: Parameter[int] = 100,
):
    """Pushes a blessed model; records ``pushed`` (0/1) and the versions on the artifact."""
    tf.io.gfile.makedirs(pushed_model.uri)
    blessed = model_blessing.get_int_custom_property(BLESSED_PROPERTY) == 1
    if not blessed:
        result = {"pushed": False, "reason": "model not blessed"}
    else:
        result = push_models(
            path_utils.serving_model_path(model.uri),
            examples.uri,
            catalogue.uri,
            pushed_model.uri,
            serving_dir,
            index_kind=index_kind,
            retrieval_k=retrieval_k,
        )
        result["pushed"] = True
        for name in push.MODEL_NAMES:
            pushed_model.set_int_custom_property(f"{name}_version", result[name]["version"])
            pushed_model.set_string_custom_property(f"{name}_path", result[name]["path"])
    pushed_model.set_int_custom_property("pushed", int(result["pushed"]))
    with tf.io.gfile.GFile(os.path.join(pushed_model.uri, PUSH_FILE), "w") as f:
        json.dump(result, f, indent=2)
