"""Pusher component: the blessed servables into a TensorFlow Serving directory, atomically.

The pipeline wires ``MovieRecPusher`` after the Evaluator. For a blessed model it copies the
servable SavedModels the Evaluator measured (``components.servables``: ScaNN retrieval,
brute-force retrieval, ranking) into the artifact's own directory, swapping only their
seen-data assets for those of every ingested rating, then pushes them as new integer versions
under ``<serving_dir>/{retrieval,retrieval_brute_force,ranking}/`` and rewrites
``models.config``. Nothing is rebuilt here. An unblessed model leaves the serving directory
untouched, so the last good model keeps serving.
"""

import json
import os
from pathlib import Path

import tensorflow as tf
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types.standard_artifacts import Model, ModelBlessing, PushedModel

from components import servables as servables_lib
from components.evaluator import BLESSED_PROPERTY
from serving import names, push

PUSH_FILE = "push.json"


def push_servables(servables_dir: str, staging_dir: str, serving_dir: str) -> dict:
    """Stages the servables with the shipped seen data and pushes them into ``serving_dir``.

    Returns:
      ``{name: {"version", "path"}}`` for every model of ``serving.names.MODEL_NAMES``, and
      ``"models_config": path``.
    """
    staging = Path(staging_dir)
    for name in names.MODEL_NAMES:
        servables_lib.stage_for_push(servables_dir, name, str(staging / name))
    serving = Path(serving_dir)
    result = {}
    for name in names.MODEL_NAMES:
        version, path = push.push_atomically(staging / name, serving / name)
        result[name] = {"version": version, "path": str(path)}
    result["models_config"] = str(
        push.write_models_config(serving, {n: serving / n for n in names.MODEL_NAMES})
    )
    return result


@component
def MovieRecPusher(  # noqa: N802 (TFX component names are classes)
    servables: InputArtifact[Model],
    model_blessing: InputArtifact[ModelBlessing],
    pushed_model: OutputArtifact[PushedModel],
    serving_dir: Parameter[str],
    evaluated_servables: InputArtifact[Model] = None,
):
    """Pushes a blessed model; records ``pushed`` (0/1) and the versions on the artifact.

    ``evaluated_servables``, when given, are the servables the Evaluator measured and
    ``servables`` their refit on every ingested rating (recorded as such)."""
    tf.io.gfile.makedirs(pushed_model.uri)
    blessed = model_blessing.get_int_custom_property(BLESSED_PROPERTY) == 1
    if not blessed:
        result = {"pushed": False, "reason": "model not blessed"}
    else:
        result = push_servables(servables.uri, pushed_model.uri, serving_dir)
        result["pushed"] = True
        result["servables"] = servables.uri
        if evaluated_servables is not None and evaluated_servables.uri != servables.uri:
            result["refit_of"] = evaluated_servables.uri
            pushed_model.set_string_custom_property("evaluated_servables", evaluated_servables.uri)
        for name in names.MODEL_NAMES:
            pushed_model.set_int_custom_property(f"{name}_version", result[name]["version"])
            pushed_model.set_string_custom_property(f"{name}_path", result[name]["path"])
    pushed_model.set_int_custom_property("pushed", int(result["pushed"]))
    with tf.io.gfile.GFile(os.path.join(pushed_model.uri, PUSH_FILE), "w") as f:
        json.dump(result, f, indent=2)
