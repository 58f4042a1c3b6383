"""TF Serving's REST API over loaded SavedModels: model status, metadata and ``:predict``.

``serving.store`` loads every pushed version with :func:`load_model`; ``serving.server``
answers ``/v1/models/...`` with :func:`find_model`, :func:`model_status`,
:func:`model_metadata` and :func:`predict`, so clients written for TF Serving work unchanged.
The JSON follows TF Serving's REST API document (``api_rest.md``):

- row format ``{"signature_name", "instances": [...]}`` -> ``{"predictions": [...]}``: with
  one named input an instance may be its bare value; with one named output a prediction is
  its bare value, else an object per row;
- columnar format ``{"inputs": value | {name: value}}`` -> ``{"outputs": value | {...}}``;
- strings are JSON strings, binary ones ``{"b64": "..."}`` (outputs whose name ends in
  ``_bytes`` are written that way); floats may be ``NaN``/``Infinity`` as TF Serving writes;
- errors are ``{"error": message}``: 400 for a bad request, 404 for an unknown model,
  version or path.
"""

import base64
import binascii
import dataclasses
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.python.saved_model import loader_impl

from serving import loading, names, validation
from serving.errors import ApiError, bad_request, not_found

DEFAULT_SIGNATURE = "serving_default"
# Rows (instances, or the 0-th dimension of columnar inputs) one :predict may ask for, per
# model, like TF Serving's batching max_batch_size. Measured on the pushed models (k=100):
# a retrieval row answers about 5.4 KB of JSON (10,000 rows: 53.8 MB after 5 s of CPU),
# so 100 rows stay near 0.5 MB; a ranking row answers about 20 bytes (1,000 rows: 20 KB).
MAX_ROWS = {names.RETRIEVAL: 100, names.RETRIEVAL_BRUTE_FORCE: 100, names.RANKING: 1_000}
DEFAULT_MAX_ROWS = 1_000  # a model name not in MAX_ROWS
# Bounds the JSON of one answer (estimated from the output tensors before writing them):
# 100 retrieval rows at k=1,000 still fit; an answer this large means ask for fewer rows.
MAX_RESPONSE_BYTES = 8 << 20
_MAX_RANK = 32

_INTEGER_TYPES = (tf.int8, tf.uint8, tf.int16, tf.uint16, tf.int32, tf.uint32, tf.int64)
_FLOAT_TYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64)


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """One version of one served model.

    Attributes:
      name: model name (``serving.names.MODEL_NAMES``).
      version: the integer version directory it was loaded from.
      path: ``<serving_dir>/<name>/<version>``.
      obj: the loaded SavedModel (``tf.saved_model.load``).
      signatures: signature name -> concrete function taking keyword tensors.
      inputs: signature name -> input name -> its ``tf.TensorSpec``.
      signature_defs: signature name -> its ``SignatureDef`` as TF Serving's metadata JSON
        (graph tensor names, dtypes, shapes, method name).
    """

    name: str
    version: int
    path: Path
    obj: Any
    signatures: dict[str, Any]
    inputs: dict[str, dict[str, tf.TensorSpec]]
    signature_defs: dict[str, dict]


def load_model(name: str, version: int, path: str | os.PathLike) -> LoadedModel:
    """Loads one SavedModel version with its signatures and TF Serving metadata.

    Raises:
      Exception: whatever TensorFlow raises for a corrupt or incomplete SavedModel
        (``OSError`` for a garbage ``saved_model.pb``, ``FileNotFoundError`` for missing
        variables, ...); the caller decides what a failed load means.
    """
    obj = loading.load_saved_model(path)
    meta_graph = loader_impl.parse_saved_model(os.fspath(path)).meta_graphs[0]
    defs = {
        key: json_format.MessageToDict(
            sig, preserving_proto_field_name=True, including_default_value_fields=True
        )
        for key, sig in meta_graph.signature_def.items()
    }
    signatures = dict(obj.signatures)
    inputs = {key: dict(fn.structured_input_signature[1]) for key, fn in signatures.items()}
    return LoadedModel(name, version, Path(path), obj, signatures, inputs, defs)


def parse_version(text: str | None) -> int | None:
    """The version of a ``/versions/{v}`` path segment, ``None`` when there is none.

    Raises:
      ApiError: 400 if it is not a non-negative integer.
    """
    if text is None:
        return None
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise bad_request(f"model version must be a non-negative integer, got {text!r}")
    return int(text)


def find_model(models: dict[str, LoadedModel], name: str, version: int | None) -> LoadedModel:
    """The loaded model a ``/v1/models/{name}[/versions/{version}]`` path names.

    Raises:
      ApiError: 404 with TF Serving's message when the model or that version is not loaded.
    """
    model = models.get(name)
    if version is None:
        if model is None:
            raise not_found(f"Servable not found for request: Latest({name})")
    elif model is None or model.version != version:
        raise not_found(f"Servable not found for request: Specific({name}, {version})")
    return model


def model_status(model: LoadedModel) -> dict:
    """``GetModelStatusResponse`` JSON: the one version this server has loaded."""
    return {
        "model_version_status": [
            {
                "version": str(model.version),
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }


def model_metadata(model: LoadedModel) -> dict:
    """``GetModelMetadataResponse`` JSON: model spec and every ``SignatureDef``."""
    return {
        "model_spec": {"name": model.name, "signature_name": "", "version": str(model.version)},
        "metadata": {"signature_def": {"signature_def": model.signature_defs}},
    }


def predict(model: LoadedModel, body: Any) -> dict:
    """Answers a ``:predict`` request body (already parsed JSON) as TF Serving does.

    Args:
      model: the model the URL names.
      body: ``{"signature_name"?, "instances"}`` (row) or ``{"signature_name"?, "inputs"}``
        (columnar).

    Returns:
      ``{"predictions": ...}`` for row format, ``{"outputs": ...}`` for columnar.

    Raises:
      ApiError: 400 naming what is wrong with the request (also for an input the model
        rejects with ``InvalidArgumentError``).
    """
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    signature = body.get("signature_name", DEFAULT_SIGNATURE)
    if not isinstance(signature, str):
        raise bad_request("'signature_name' must be a string")
    if signature not in model.signatures:
        raise bad_request(
            f'Serving signature name: "{signature}" not found in signature def; '
            f"{model.name} has {sorted(model.signatures)}"
        )
    specs = model.inputs[signature]
    if "instances" in body and "inputs" in body:
        raise bad_request("Not allowed to have both 'instances' and 'inputs' in the request")
    if "instances" in body:
        columns, row_format = _columns_from_instances(body["instances"], specs), True
    elif "inputs" in body:
        columns, row_format = _columns_from_inputs(body["inputs"], specs), False
    else:
        raise bad_request("Missing 'instances' or 'inputs' key in the request")
    max_rows = MAX_ROWS.get(model.name, DEFAULT_MAX_ROWS)
    tensors = {
        name: _to_tensor(name, columns[name], spec, max_rows) for name, spec in specs.items()
    }
    _check_same_rows(tensors, specs, row_format)
    try:
        outputs = model.signatures[signature](**tensors)
    except tf.errors.InvalidArgumentError as err:
        raise bad_request(_op_error(err.message)) from err
    size = sum(_json_size(name, tensor) for name, tensor in outputs.items())
    if size > MAX_RESPONSE_BYTES:
        raise bad_request(
            f"the answer would have about {size} bytes of JSON; at most {MAX_RESPONSE_BYTES}: "
            "send fewer rows"
        )
    values = {name: _json_value(name, tensor) for name, tensor in outputs.items()}
    if not row_format:
        return {"outputs": next(iter(values.values())) if len(values) == 1 else values}
    return {"predictions": _rows(values)}


def _op_error(message: str) -> str:
    """The line of a TensorFlow op error that says what was wrong, without graph noise."""
    noise = ("Graph execution error", "Detected at node", "<stack traces", "[[")
    lines = [line.strip() for line in message.splitlines()]
    said = [line for line in lines if line and not line.startswith(noise)]
    return re.sub(r"\s*\[Op:[^\]]*\]$", "", " ".join(said) if said else message.strip())


def _columns_from_instances(instances: Any, specs: dict[str, tf.TensorSpec]) -> dict[str, list]:
    if not isinstance(instances, list) or not instances:
        raise bad_request("'instances' must be a non-empty list")
    names = set(specs)
    (only,) = names if len(names) == 1 else (None,)
    columns = {name: [] for name in specs}
    for i, instance in enumerate(instances):
        named = isinstance(instance, dict) and not _is_b64(instance)
        if not named:
            if only is None:
                raise bad_request(
                    f"instance {i}: the signature has inputs {sorted(names)}, so each "
                    "instance must be an object keyed by them"
                )
            instance = {only: instance}
        if set(instance) != names:
            raise bad_request(
                f"instance {i} has keys {sorted(instance)}; expected exactly {sorted(names)}"
            )
        for name in names:
            columns[name].append(instance[name])
    return columns


def _columns_from_inputs(inputs: Any, specs: dict[str, tf.TensorSpec]) -> dict[str, Any]:
    names = set(specs)
    if isinstance(inputs, dict) and not _is_b64(inputs):
        if set(inputs) != names:
            raise bad_request(f"'inputs' has keys {sorted(inputs)}; expected {sorted(names)}")
        return inputs
    if len(names) != 1:
        raise bad_request(f"the signature has inputs {sorted(names)}: 'inputs' must name them")
    return {next(iter(names)): inputs}


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def _check_same_rows(tensors: dict[str, tf.Tensor], specs, row_format: bool) -> None:
    """Inputs with a batch dimension must agree on it (TensorFlow would broadcast or fail)."""
    rows = {
        name: int(tensor.shape[0])
        for name, tensor in tensors.items()
        if specs[name].shape.rank and specs[name].shape[0] is None and tensor.shape.rank
    }
    if len(set(rows.values())) > 1:
        shown = ", ".join(f"{name!r} has {n}" for name, n in sorted(rows.items()))
        where = "instances" if row_format else "'inputs'"
        raise bad_request(f"the {where} disagree on the number of rows: {shown}")


def _json_size(name: str, tensor: tf.Tensor) -> int:
    """About how many bytes of JSON :func:`_json_value` writes for ``tensor``."""
    n = int(tensor.shape.num_elements() or 0)
    if tensor.dtype == tf.string:
        text = int(tf.reduce_sum(tf.strings.length(tensor)).numpy()) if n else 0
        if name.endswith("_bytes"):
            text = text * 4 // 3 + 10 * n  # base64 and {"b64": ...}
        return text + 4 * n  # quotes, comma, space
    return (7 if tensor.dtype == tf.bool else 21) * n


def _to_tensor(name: str, value: Any, spec: tf.TensorSpec, max_rows: int) -> tf.Tensor:
    """A JSON (nested list) value as a tensor of ``spec``'s dtype and a compatible shape."""
    shape, leaves = _shape_and_leaves(name, value, 0, ())
    if 0 in shape:
        raise bad_request(f"input {name!r} is empty (shape {list(shape)})")
    if shape and shape[0] > max_rows:
        raise bad_request(
            f"input {name!r} has {shape[0]} rows; this model takes at most {max_rows} "
            "per request"
        )
    if not spec.shape.is_compatible_with(shape):
        raise bad_request(
            f"input {name!r} has shape {list(shape)}; the signature expects {spec.shape}"
        )
    array = np.array([_leaf(name, leaf, spec.dtype) for leaf in leaves], dtype=_np_dtype(spec))
    return tf.constant(array.reshape(shape), dtype=spec.dtype)


def _shape_and_leaves(
    name: str, value: Any, depth: int, at: tuple[int, ...]
) -> tuple[tuple[int, ...], list]:
    """``value``'s shape and its leaves in row-major order; ``at`` is its index path."""
    if not isinstance(value, list):
        return (), [value]
    if depth >= _MAX_RANK:
        raise bad_request(f"input {name!r} is nested deeper than {_MAX_RANK} lists")
    if not value:
        return (0,), []
    parts = [_shape_and_leaves(name, item, depth + 1, (*at, i)) for i, item in enumerate(value)]
    inner = parts[0][0]
    for i, (shape, _) in enumerate(parts):
        if shape != inner:
            raise bad_request(
                f"input {name!r} is ragged: {_where((*at, i))} has shape {list(shape)} but "
                f"{_where((*at, 0))} has {list(inner)}; every row needs the same shape"
            )
    return (len(value), *inner), [leaf for _, leaves in parts for leaf in leaves]


def _where(at: tuple[int, ...]) -> str:
    return f"row {at[0]}" + "".join(f"[{i}]" for i in at[1:])


def _np_dtype(spec: tf.TensorSpec):
    if spec.dtype == tf.string:
        return object
    if spec.dtype == tf.bfloat16:
        return np.float32  # numpy has no bfloat16; tf.constant casts
    return spec.dtype.as_numpy_dtype


def _leaf(name: str, leaf: Any, dtype: tf.DType):
    """One JSON scalar checked against ``dtype`` (TF Serving's JSON mapping table)."""
    if dtype == tf.string:
        if isinstance(leaf, str):
            return leaf.encode("utf-8", "surrogatepass")
        if _is_b64(leaf) and isinstance(leaf["b64"], str):
            try:
                return base64.b64decode(leaf["b64"], validate=True)
            except (binascii.Error, ValueError) as err:
                raise bad_request(f"input {name!r}: invalid base64 in 'b64' value") from err
    elif dtype == tf.bool:
        if isinstance(leaf, bool):
            return leaf
    elif dtype in _INTEGER_TYPES:
        if isinstance(leaf, int) and not isinstance(leaf, bool):
            info = np.iinfo(dtype.as_numpy_dtype)
            if not info.min <= leaf <= info.max:
                raise bad_request(f"input {name!r}: {leaf} is out of range for {dtype.name}")
            return leaf
    elif dtype in _FLOAT_TYPES:
        if isinstance(leaf, int | float) and not isinstance(leaf, bool):
            value = float(leaf)  # NaN and Infinity are TF Serving's, so allowed
            if isinstance(leaf, validation.OverflowedNumber):
                raise bad_request(f"input {name!r}: {leaf.text} is out of range for {dtype.name}")
            if math.isfinite(value) and abs(value) > dtype.max:
                raise bad_request(f"input {name!r}: {leaf} is out of range for {dtype.name}")
            return value
    else:
        raise bad_request(f"input {name!r} has dtype {dtype.name}, which JSON cannot carry")
    shown = type(leaf).__name__ if not isinstance(leaf, dict | list) else "an object"
    raise bad_request(f"input {name!r}: a JSON {shown} is not of expected type {dtype.name}")


def _json_value(name: str, tensor: tf.Tensor) -> Any:
    array = tensor.numpy()
    if array.dtype != object:
        return array.tolist()
    if name.endswith("_bytes"):
        flat = [{"b64": base64.b64encode(v).decode("ascii")} for v in array.ravel()]
    else:
        flat = [v.decode("utf-8", "replace") for v in array.ravel()]
    if array.ndim == 0:
        return flat[0]
    return np.array(flat, dtype=object).reshape(array.shape).tolist()


def _rows(values: dict[str, Any]) -> list:
    """Row-format predictions: a list of values (one output) or of objects (several)."""
    lengths = {name: len(v) if isinstance(v, list) else None for name, v in values.items()}
    if None in lengths.values() or len(set(lengths.values())) != 1:
        raise ApiError(
            400,
            f"outputs {lengths} (name -> batch size) do not share a 0-th dimension; "
            "use the columnar 'inputs' format",
        )
    if len(values) == 1:
        return next(iter(values.values()))
    batch = next(iter(lengths.values()))
    return [{name: v[i] for name, v in values.items()} for i in range(batch)]
