"""Servable builder component: the exact models a user would be served, before evaluation.

The pipeline wires ``MovieRecServables`` between the Trainer and the Evaluator; its executor
is ``publish.servables.build_servables`` (which documents what it writes).
"""

from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types.standard_artifacts import Examples, Model
from tfx.utils import path_utils

from publish.servables import build_servables
from serving import names


@component
def MovieRecServables(  # noqa: N802 (TFX component names are classes)
    model: InputArtifact[Model],
    examples: InputArtifact[Examples],
    catalogue: InputArtifact[Examples],
    servables: OutputArtifact[Model],
    index_kind: Parameter[str] = names.INDEX_SCANN,
    retrieval_k: Parameter[int] = names.DEFAULT_RETRIEVAL_K,
):
    """Writes the servable models of ``model`` into ``servables`` (see the module docstring)."""
    info = build_servables(
        path_utils.serving_model_path(model.uri),
        examples.uri,
        catalogue.uri,
        servables.uri,
        index_kind=index_kind,
        retrieval_k=retrieval_k,
    )
    servables.set_string_custom_property("trained_model_uri", model.uri)
    servables.set_int_custom_property("trained_model_id", model.id)
    servables.set_int_custom_property("num_catalogue", info["num_catalogue"])
