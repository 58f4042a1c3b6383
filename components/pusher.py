"""Pusher component: the blessed servables into a TensorFlow Serving directory, atomically.

The pipeline wires ``MovieRecPusher`` after the Evaluator. For a blessed model it copies the
servable SavedModels the Evaluator measured (``publish.servables``: ScaNN retrieval,
brute-force retrieval, ranking) into the artifact's own directory, swapping only their
seen-data assets for those of every ingested rating, then pushes them as new integer versions
under ``<serving_dir>/{retrieval,retrieval_brute_force,ranking}/`` and rewrites
``models.config``. Nothing is rebuilt here. An unblessed model leaves the serving directory
untouched, so the last good model keeps serving.
"""

import json
import os

import tensorflow as tf
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types.standard_artifacts import Model, ModelBlessing, PushedModel

from components.evaluator import BLESSED_PROPERTY
from publish.servables import push_servables
from serving import names

PUSH_FILE = "push.json"


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
