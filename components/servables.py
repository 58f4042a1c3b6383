"""Servable builder component: the exact models a user would be served, before evaluation.

The pipeline wires ``MovieRecServables`` between the Trainer and the Evaluator. Its executor
calls :func:`build_servables`, a plain function the Evaluator also calls for the previous
blessed model. It writes, into the ``servables`` artifact::

    <uri>/retrieval/               ScaNN retrieval SavedModel over the whole catalogue
    <uri>/retrieval_brute_force/   the same with brute force (stock TF Serving ops)
    <uri>/ranking/                 the trained model (rating, rerank, embeddings)
    <uri>/shipped_seen/            the seen data of every ingested rating (train and eval)
    <uri>/servables.json           what was built, from what

The three SavedModels carry the train split's seen data (``trainer.export``): that is what
the Evaluator scores through ``serving.recommender``, since the eval ratings must stay
unseen. The Pusher copies these same SavedModels and only swaps their seen-data assets for
``shipped_seen/``, so a pushed model never recommends any movie a user rated.
"""

import json
import os

import numpy as np
import tensorflow as tf
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types.standard_artifacts import Examples, Model
from tfx.utils import path_utils

from components import examples_io
from serving import index as index_lib
from serving import names, retrieval
from trainer import export, features

SERVABLES_FILE = "servables.json"
SHIPPED_SEEN = "shipped_seen"
_INDEX_OF = {names.RETRIEVAL: None, names.RETRIEVAL_BRUTE_FORCE: index_lib.BRUTE_FORCE}


def model_dir(servables_dir: str, name: str) -> str:
    """The SavedModel of model ``name`` (``serving.names.MODEL_NAMES``) in a servables dir."""
    return os.path.join(servables_dir, name)


def copy_tree(src: str, dst: str) -> None:
    """Copies the directory ``src`` to ``dst`` (any TensorFlow file system)."""
    for dirpath, _, filenames in tf.io.gfile.walk(src):
        target = os.path.normpath(os.path.join(dst, os.path.relpath(dirpath, src)))
        tf.io.gfile.makedirs(target)
        for name in filenames:
            tf.io.gfile.copy(os.path.join(dirpath, name), os.path.join(target, name), True)


def build_servables(
    trained_model_dir: str,
    examples_uri: str,
    catalogue_uri: str,
    out_dir: str,
    index_kind: str = index_lib.SCANN,
    retrieval_k: int = 100,
) -> dict:
    """Builds the retrieval and ranking SavedModels of a trained model into ``out_dir``.

    Args:
      trained_model_dir: the Trainer's SavedModel.
      examples_uri: ExampleGen's rating examples (train and eval splits).
      catalogue_uri: ExampleGen's catalogue examples.
      out_dir: the servables directory to write (see the module docstring).
      index_kind: index of the ``retrieval`` model, ``"scann"`` or ``"brute_force"``.
      retrieval_k: candidates the retrieval models return per user.

    Returns:
      The ``servables.json`` contents.
    """
    catalogue = examples_io.read_columns(
        catalogue_uri, features.CATALOGUE_SPLIT, (features.MOVIE_ID, features.MOVIE_TITLE)
    )
    keys = (features.USER_ID, features.MOVIE_ID)
    train = examples_io.read_columns(examples_uri, features.TRAIN_SPLIT, keys)
    held_out = examples_io.read_columns(examples_uri, features.EVAL_SPLIT, keys)
    shipped = export.Histories.from_ids(
        np.concatenate([train[features.USER_ID], held_out[features.USER_ID]]),
        np.concatenate([train[features.MOVIE_ID], held_out[features.MOVIE_ID]]),
    )
    ids = catalogue[features.MOVIE_ID]
    rated, counts = np.unique(train[features.MOVIE_ID].astype(str), return_counts=True)
    num_ratings = dict(zip(rated, counts, strict=True))
    ranking_dir = model_dir(out_dir, names.RANKING)
    copy_tree(trained_model_dir, ranking_dir)
    for name, kind in _INDEX_OF.items():
        retrieval.export_retrieval_model(
            ranking_dir,
            ids,
            catalogue[features.MOVIE_TITLE],
            np.array([num_ratings.get(str(m), 0) for m in ids], np.int64),
            shipped.max_length(),
            model_dir(out_dir, name),
            index_kind=kind or index_kind,
            k=retrieval_k,
        )
    export.write_histories(shipped, os.path.join(out_dir, SHIPPED_SEEN))
    info = {
        "models": {n: model_dir(out_dir, n) for n in names.MODEL_NAMES},
        "trained_model": trained_model_dir,
        "index_kind": index_kind,
        "retrieval_k": int(min(retrieval_k, len(ids))),
        "num_catalogue": int(len(ids)),
        "evaluated_seen": "train split",
        "shipped_seen": {
            "path": os.path.join(out_dir, SHIPPED_SEEN),
            "users": len(shipped.by_user),
            "ratings": int(sum(len(m) for m in shipped.by_user.values())),
        },
    }
    with tf.io.gfile.GFile(os.path.join(out_dir, SERVABLES_FILE), "w") as f:
        json.dump(info, f, indent=2)
    return info


def stage_for_push(servables_dir: str, name: str, staging_dir: str) -> str:
    """Copies one servable SavedModel to ``staging_dir`` with the shipped seen data.

    Returns:
      The staged SavedModel directory.
    """
    copy_tree(model_dir(servables_dir, name), staging_dir)
    shipped = os.path.join(servables_dir, SHIPPED_SEEN)
    for asset in export.SEEN_ASSETS:
        target = os.path.join(staging_dir, "assets", asset)
        if not tf.io.gfile.exists(target):
            raise FileNotFoundError(f"{model_dir(servables_dir, name)} has no seen-data {asset}")
        tf.io.gfile.copy(os.path.join(shipped, asset), target, overwrite=True)
    return staging_dir


@component
def MovieRecServables(  # noqa: N802 (TFX component names are classes)
    model: InputArtifact[Model],
    examples: InputArtifact[Examples],
    catalogue: InputArtifact[Examples],
    servables: OutputArtifact[Model],
    index_kind: Parameter[str] = index_lib.SCANN,
    retrieval_k: Parameter[int] = 100,
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
