"""The servables: the exact models a user would be served, built before evaluation, pushed after.

:func:`build_servables` runs in the ``MovieRecServables`` component (``components/servables.py``)
and in the Evaluator for the previous blessed model; :func:`push_servables` runs in the
Pusher. A servables directory holds::

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

import contextlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from data import examples_io
from publish import index as index_lib
from publish import push, retrieval
from publish import serving_dir as serving_dir_lib
from serving import bundles, names
from trainer import export, features

SERVABLES_FILE = "servables.json"
SHIPPED_SEEN = "shipped_seen"
_INDEX_OF = {names.RETRIEVAL: None, names.RETRIEVAL_BRUTE_FORCE: index_lib.BRUTE_FORCE}


def model_dir(servables_dir: str, name: str) -> str:
    """The SavedModel of model ``name`` (``serving.names.MODEL_NAMES``) in a servables dir."""
    return os.path.join(servables_dir, name)


def build_servables(
    trained_model_dir: str,
    examples_uri: str,
    catalogue_uri: str,
    out_dir: str,
    index_kind: str = names.INDEX_SCANN,
    retrieval_k: int = names.DEFAULT_RETRIEVAL_K,
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
    push.copy_tree(trained_model_dir, ranking_dir)
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
    push.copy_tree(model_dir(servables_dir, name), staging_dir)
    shipped = os.path.join(servables_dir, SHIPPED_SEEN)
    for asset in export.SEEN_ASSETS:
        target = os.path.join(staging_dir, "assets", asset)
        if not tf.io.gfile.exists(target):
            raise FileNotFoundError(f"{model_dir(servables_dir, name)} has no seen-data {asset}")
        tf.io.gfile.copy(os.path.join(shipped, asset), target, overwrite=True)
    return staging_dir


def push_servables(servables_dir: str, staging_dir: str, serving_dir: str) -> dict:
    """Stages the servables with the shipped seen data and pushes them into ``serving_dir``.

    Args:
      servables_dir: the servables (local or any TensorFlow file system, e.g. ``gs://``).
      staging_dir: local directory for the staged copies; a remote one (the Pusher's
        artifact on Vertex) is replaced by a temporary local directory.
      serving_dir: a local path or ``gs://BUCKET/PREFIX`` (``publish.serving_dir``).

    Returns:
      ``{name: {"version", "path"}}`` for every model of ``serving.names.MODEL_NAMES``,
      ``"models_config": path`` and ``"bundle": id`` (``serving.bundles``, written last).

    Raises:
      ValueError: naming ``serving_dir`` if the Pusher cannot write it.
    """
    target = serving_dir_lib.open_serving_dir(serving_dir)  # refuse before any copy
    with contextlib.ExitStack() as stack:
        if "://" in os.fspath(staging_dir):
            staging_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="push-"))
        staging = Path(staging_dir)
        for name in names.MODEL_NAMES:
            stage_for_push(servables_dir, name, str(staging / name))
        result = {}
        for name in names.MODEL_NAMES:
            version, path = target.push(name, staging / name)
            result[name] = {"version": version, "path": path}
        result["models_config"] = target.write_models_config(names.MODEL_NAMES)
        # Last: the bundle that makes `movierec serve` switch to all three at once.
        prints = {name: bundles.fingerprints(staging / name) for name in names.MODEL_NAMES}
        versions = {name: result[name]["version"] for name in names.MODEL_NAMES}
        result["bundle"] = target.write_bundle(versions, prints)
    return result
