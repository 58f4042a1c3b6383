"""The TensorFlow Serving directory: versioned SavedModels and the models.config that lists them.

The Pusher component (``components/pusher.py``) calls :func:`push_atomically` and
:func:`write_models_config`; the tests read ``models.config`` back with
:func:`read_models_config`. The layout (TF Serving's own) and :func:`list_versions`, which
the server also reads, are the serving contract's (``serving.names``).

TF Serving polls the base paths and loads any new all-digit directory, so a version must
appear complete or not at all: it is copied under a hidden temporary name and renamed into
place, and concurrent pushers are serialized by a lock file.
"""

import contextlib
import fcntl
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

import tensorflow as tf

try:
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2
except ImportError:  # tensorflow-serving-api is optional; a small parser stands in for it.
    model_server_config_pb2 = None

from serving.names import MODELS_CONFIG, SAVED_MODEL_FILES, TMP_PREFIX, list_versions

LOCK_FILE = ".push.lock"


def next_version(model_base: Path) -> int:
    """The version the next push gets: one more than the highest, 1 for the first push."""
    versions = list_versions(model_base)
    return versions[-1] + 1 if versions else 1


def push_atomically(src_dir: Path, model_base: Path) -> tuple[int, Path]:
    """Copies the SavedModel ``src_dir`` to ``<model_base>/<next version>``, all or nothing.

    The copy goes to ``<model_base>/.tmp-<version>-<pid>``, every file and directory is
    fsynced, and only then is it renamed to ``<model_base>/<version>``, so a reader (TF
    Serving, :func:`list_versions`) sees either no new version or a complete one, also after
    a crash. The whole push holds an exclusive ``flock`` on ``<model_base>/.push.lock``: two
    pushers never choose the same version, and any temporary directory found while holding
    the lock was left by a pusher that died (the kernel releases its lock), so it is removed.

    Args:
      src_dir: SavedModel directory (holds ``saved_model.pb``); it is not modified.
      model_base: ``<serving_dir>/<model_name>``; created if missing.

    Returns:
      ``(version, path of the new version directory)``.

    Raises:
      FileNotFoundError: if ``src_dir`` holds no SavedModel.
    """
    src_dir, model_base = Path(src_dir), Path(model_base)
    if not any((src_dir / name).is_file() for name in SAVED_MODEL_FILES):
        raise FileNotFoundError(f"no SavedModel to push in {src_dir}")
    model_base.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(model_base / LOCK_FILE):
        _remove_stale_temp_dirs(model_base)
        version = next_version(model_base)
        tmp = model_base / f"{TMP_PREFIX}{version}-{os.getpid()}"
        try:
            copy_tree(src_dir, tmp, durable=True)
            final = model_base / str(version)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _fsync_dir(model_base)
    return version, final


def write_models_config(serving_dir: Path, models: Mapping[str, Path]) -> Path:
    """Writes ``<serving_dir>/models.config`` for ``tensorflow_model_server --model_config_file``.

    The file is a ``ModelServerConfig`` in protobuf text format, one ``config`` per model
    with an absolute ``base_path`` and ``model_platform: "tensorflow"``. It is written to a
    temporary file and ``os.replace``-d, so a server polling it never reads half a file.

    Args:
      serving_dir: directory for ``models.config``; created if missing.
      models: model name -> base path (the directory holding its versions).

    Returns:
      The path of ``models.config``.

    Raises:
      ValueError: if ``models`` is empty or a name is empty.
    """
    if not models or not all(models):
        raise ValueError(f"models.config needs named models, got {dict(models)}")
    serving_dir = Path(serving_dir)
    serving_dir.mkdir(parents=True, exist_ok=True)
    base_paths = {name: os.path.abspath(path) for name, path in models.items()}
    text = config_text(base_paths)
    path = serving_dir / MODELS_CONFIG
    tmp = serving_dir / f"{TMP_PREFIX}{MODELS_CONFIG}-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(serving_dir)
    return path


def read_models_config(path: Path) -> dict[str, str]:
    """Model name -> base path, as listed in a ``models.config`` file.

    Args:
      path: a ``ModelServerConfig`` text file, e.g. from :func:`write_models_config`.

    Returns:
      ``{name: base_path}`` in file order.
    """
    text = Path(path).read_text(encoding="utf-8")
    if model_server_config_pb2 is not None:
        config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
        return {c.name: c.base_path for c in config.model_config_list.config}
    return _parseconfig_text(text)


@contextlib.contextmanager
def exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Holds an exclusive ``flock`` on ``lock_path`` (created if missing) for the block."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the flock


def _remove_stale_temp_dirs(model_base: Path) -> None:
    for entry in model_base.iterdir():
        if entry.name.startswith(TMP_PREFIX) and entry.is_dir():
            shutil.rmtree(entry)


def copy_tree(src: str | os.PathLike, dst: str | os.PathLike, durable: bool = False) -> None:
    """Copies the directory ``src`` into ``dst`` on any TensorFlow file system (``gs://``, local).

    The one directory copy of the project: the servable builder and the Pusher's staging call
    it, and :func:`push_atomically` calls it with ``durable=True``.

    Args:
      src, dst: directories; ``dst`` is created if missing, files in it are overwritten.
      durable: fsync every file and directory written (a local ``dst``), so that a rename
        after the copy publishes complete data even after a crash.
    """
    src, dst = os.fspath(src), os.fspath(dst)
    for dirpath, _, filenames in tf.io.gfile.walk(src):
        rel = os.path.relpath(dirpath, src)
        target = dst if rel == "." else os.path.join(dst, rel)
        tf.io.gfile.makedirs(target)
        for name in filenames:
            _copy_file(os.path.join(dirpath, name), os.path.join(target, name), durable)
    if durable:
        for dirpath, _, _ in os.walk(dst, topdown=False):
            _fsync_dir(Path(dirpath))


def _copy_file(src: str, dst: str, durable: bool = False) -> None:
    tf.io.gfile.copy(src, dst, overwrite=True)
    if durable:
        with open(dst, "rb+") as f:
            os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def config_text(base_paths: Mapping[str, str]) -> str:
    """``ModelServerConfig`` text listing each model's base path (any URI TF Serving reads)."""
    if model_server_config_pb2 is not None:
        config = model_server_config_pb2.ModelServerConfig()
        for name, base_path in base_paths.items():
            config.model_config_list.config.add(
                name=name, base_path=base_path, model_platform="tensorflow"
            )
        return text_format.MessageToString(config, as_utf8=True)
    entries = "".join(
        f'  config {{\n    name: "{_quote(name)}"\n    base_path: "{_quote(base_path)}"\n'
        f'    model_platform: "tensorflow"\n  }}\n'
        for name, base_path in base_paths.items()
    )
    return f"model_config_list {{\n{entries}}}\n"


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


_CONFIG_BLOCK = re.compile(r"\bconfig\s*\{([^{}]*)\}")
_STRING_FIELD = r'\b{}\s*:\s*"((?:[^"\\]|\\.)*)"'


def _parseconfig_text(text: str) -> dict[str, str]:
    """Reads the ``config { name base_path }`` entries without the TF Serving protos.

    Enough for files :func:`write_models_config` writes: string fields in double quotes with
    backslash escapes, no nested messages inside a ``config`` block.
    """
    models = {}
    for block in _CONFIG_BLOCK.finditer(text):
        fields = {}
        for field in ("name", "base_path"):
            match = re.search(_STRING_FIELD.format(field), block.group(1))
            fields[field] = re.sub(r"\\(.)", r"\1", match.group(1)) if match else ""
        models[fields["name"]] = fields["base_path"]
    return models
