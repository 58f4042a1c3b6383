"""Warm start: a new JointModel initialised from the model a previous run exported.

``trainer.run.train`` calls :func:`warm_start` when the Trainer receives a base model (the
latest blessed model; see ``PipelineConfig.warm_start_from``), after reading it with
:func:`read_previous_model`. Transform recomputes the vocabularies every run, so an id's row
index changes between runs: rows of the id-indexed tables (tower embeddings, biases) are
matched by id string (:func:`carry_rows`), ids new to this run keep their fresh
initialisation, and every other weight (the encoder's bias, the re-ranker) is copied when
its shape matches.

The previous model is read from its SavedModel's variables checkpoint, without loading its
graph: the checkpoint's object graph names each variable by its attribute path inside the
exported ``ServingModule`` (``model/user_factors/embeddings``), which is
the path of the same variable inside a new JointModel under ``model/``.
"""

import collections
import dataclasses
import os

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2

from trainer import features
from trainer.data import Vocabularies
from trainer.model import JointModel

# The ServingModule attributes (trainer.export) holding the model and its vocabularies.
_MODEL, _USER_IDS, _MOVIE_IDS = "model", "user_ids", "movie_ids"
_OBJECT_GRAPH = "_CHECKPOINTABLE_OBJECT_GRAPH"
_VARIABLE_VALUE = "VARIABLE_VALUE"


@dataclasses.dataclass(frozen=True)
class PreviousModel:
    """The weights and vocabularies of an exported model.

    Attributes:
      path: the SavedModel directory.
      users: ``[num_users]`` its user vocabulary, in index order.
      movies: ``[num_movies]`` its movie vocabulary, in index order.
      weights: attribute path of each variable inside the JointModel (every alias, e.g.
        ``user_factors/embeddings``) -> its value; id tables are
        ``[vocabulary size + NUM_OOV_BUCKETS, width]``.
    """

    path: str
    users: list[str]
    movies: list[str]
    weights: dict[str, np.ndarray]


def _checkpoint_paths(graph: trackable_object_graph_pb2.TrackableObjectGraph) -> dict:
    """Attribute path -> checkpoint key of every variable reachable from the root."""
    paths = {}
    queue, expanded = collections.deque([(0, "")]), {0}
    while queue:
        node_id, path = queue.popleft()
        for child in graph.nodes[node_id].children:
            child_path = f"{path}/{child.local_name}" if path else child.local_name
            for attribute in graph.nodes[child.node_id].attributes:
                if attribute.name == _VARIABLE_VALUE:
                    paths[child_path] = attribute.checkpoint_key
            if child.node_id not in expanded:
                expanded.add(child.node_id)
                queue.append((child.node_id, child_path))
    return paths


def read_previous_model(saved_model_dir: str) -> PreviousModel:
    """Reads an exported model's vocabularies and weights (``trainer.export``'s layout).

    Raises:
      ValueError: naming the directory when it holds no model exported by
        ``trainer.export`` (no vocabularies or no ``model``).
    """
    reader = tf.train.load_checkpoint(os.path.join(saved_model_dir, "variables", "variables"))
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor(_OBJECT_GRAPH))
    paths = _checkpoint_paths(graph)
    if _USER_IDS not in paths or _MOVIE_IDS not in paths:
        raise ValueError(f"{saved_model_dir}: not a movierec model (no user_ids/movie_ids)")
    prefix = _MODEL + "/"
    tensors, weights = {}, {}
    for path, key in paths.items():
        if path.startswith(prefix):
            if key not in tensors:  # one variable, several paths: read it once
                tensors[key] = reader.get_tensor(key)
            weights[path[len(prefix) :]] = tensors[key]
    if not weights:
        raise ValueError(f"{saved_model_dir}: not a movierec model (no model weights)")

    def ids(name):
        return [v.decode("utf-8") for v in reader.get_tensor(paths[name]).tolist()]

    return PreviousModel(
        path=saved_model_dir, users=ids(_USER_IDS), movies=ids(_MOVIE_IDS), weights=weights
    )


def carry_rows(
    old_ids: list[str], old_rows: np.ndarray, new_ids: list[str], new_rows: np.ndarray
) -> tuple[np.ndarray, int]:
    """Copies the rows of ids present in both vocabularies from the old table.

    Args:
      old_ids: ``[n_old]`` the previous vocabulary; row i of ``old_rows`` is ``old_ids[i]``.
      old_rows: ``[n_old + k, width]`` the previous table (k out-of-vocabulary rows after).
      new_ids: ``[n_new]`` this run's vocabulary.
      new_rows: ``[n_new + k, width]`` the freshly initialised table.

    Returns:
      ``([n_new + k, width]`` table, number of rows copied): row j is ``old_rows[i]`` when
      ``new_ids[j] == old_ids[i]``, else ``new_rows[j]``; the out-of-vocabulary rows stay
      fresh (they stand for ids unknown to this run, not to the previous one).
    """
    old_index_of = {name: i for i, name in enumerate(old_ids)}
    pairs = [(j, old_index_of[name]) for j, name in enumerate(new_ids) if name in old_index_of]
    rows = np.array(new_rows, copy=True)
    if pairs:
        new_index, old_index = np.array(pairs, dtype=np.int64).T
        rows[new_index] = old_rows[old_index]
    return rows, len(pairs)


def _variable_paths(model: tf.Module) -> dict[int, tuple[tf.Variable, list[str]]]:
    """id(variable) -> (variable, every attribute path reaching it from ``model``)."""
    view = tf.train.TrackableView(model)
    found: dict[int, tuple[tf.Variable, list[str]]] = {}

    def walk(obj, path: str, ancestors: frozenset) -> None:
        for name, child in view.children(obj).items():
            child_path = f"{path}/{name}" if path else name
            if isinstance(child, tf.Variable):
                found.setdefault(id(child), (child, []))[1].append(child_path)
            elif id(child) not in ancestors:
                walk(child, child_path, ancestors | {id(child)})

    walk(model, "", frozenset({id(model)}))
    return found


def warm_start(model: JointModel, vocabularies: Vocabularies, previous: PreviousModel) -> dict:
    """Initialises ``model``'s trainable weights from ``previous`` where they carry over.

    Builds the model's layers first (one call on a dummy batch) so all variables exist.

    Args:
      model: a new, untrained JointModel sized for ``vocabularies``.
      vocabularies: this run's Transform vocabularies.
      previous: the model to start from (:func:`read_previous_model`).

    Returns:
      ``{"base_model": path, "rows_carried_over": {"users": n, "movies": n},
      "rows_new": {"users": n, "movies": n}, "variables_copied": [path, ...],
      "variables_skipped": [path, ...]}``; counts are of the tower embeddings (the biases
      follow the same ids), skipped variables are missing from the previous model or of
      another shape (e.g. a changed embedding_dim).
    """
    model({features.USER_IDX: tf.zeros([1], tf.int64), features.MOVIE_IDX: tf.zeros([1], tf.int64)})
    ids = {
        "users": (previous.users, vocabularies.users),
        "movies": (previous.movies, vocabularies.movies),
    }
    tables = model.id_tables()
    kind_of = {id(v): kind for kind, variables in tables.items() for v in variables}
    towers = {id(variables[0]) for variables in tables.values()}
    trainable = {id(v) for v in model.trainable_variables}
    carried = {"users": 0, "movies": 0}
    copied, skipped = [], []
    for variable, paths in _variable_paths(model).values():
        key = id(variable)
        if key not in trainable:
            continue
        path = next((p for p in paths if p in previous.weights), None)
        new = variable.numpy()
        old = previous.weights.get(path) if path else None
        if old is None:
            skipped.append(paths[0])
            continue
        kind = kind_of.get(key)
        if kind is not None and old.shape[1:] == new.shape[1:]:
            old_ids, new_ids = ids[kind]
            value, count = carry_rows(old_ids, old, new_ids, new)
            if key in towers:
                carried[kind] = count
        elif kind is None and old.shape == new.shape:
            value = old
        else:
            skipped.append(paths[0])
            continue
        variable.assign(value)
        copied.append(path)
    return {
        "base_model": previous.path,
        "rows_carried_over": carried,
        "rows_new": {k: len(ids[k][1]) - carried[k] for k in ids},
        "variables_copied": sorted(copied),
        "variables_skipped": sorted(skipped),
    }
