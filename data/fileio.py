"""Opening dataset files on local disk, in Cloud Storage, or on another TensorFlow filesystem.

The sources call these instead of ``open``/``os.path.isfile``, so the same pipeline reads a
data home on local disk (``movierec run``) and a dataset in Cloud Storage (Vertex AI with
Dataflow, ``movierec compile``). Local paths keep Python's own file objects: they are faster.
``gs://`` goes through google-cloud-storage (``serving.gcs``: Application Default
Credentials, or the emulator ``STORAGE_EMULATOR_HOST`` names, which is how the tests read a
dataset from ``gs://``); other schemes (``s3://``, ``hdfs://``) through TensorFlow's
filesystems, imported only then.
"""

import io
import os

from serving import gcs


def is_remote(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a URI such as ``gs://bucket/ratings.csv``."""
    return "://" in os.fspath(path)


def is_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` names an existing file (not a directory)."""
    if not is_remote(path):
        return os.path.isfile(path)
    if gcs.is_gcs(path):
        bucket, name = gcs.split_uri(os.fspath(path))
        return bool(name) and gcs.bucket(bucket).blob(name).exists()
    import tensorflow as tf

    path = os.fspath(path)
    return tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path)


def is_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` names an existing directory."""
    if not is_remote(path):
        return os.path.isdir(path)
    if gcs.is_gcs(path):
        bucket, name = gcs.split_uri(os.fspath(path))
        if not name:
            return gcs.bucket(bucket).exists()
        return bool(list(gcs.client().list_blobs(bucket, prefix=name + "/", max_results=1)))
    import tensorflow as tf

    return tf.io.gfile.isdir(os.fspath(path))


def list_dir(path: str | os.PathLike) -> list[str]:
    """The names of the entries of directory ``path`` (no trailing slashes)."""
    if not is_remote(path):
        return os.listdir(path)
    if gcs.is_gcs(path):
        bucket, name = gcs.split_uri(os.fspath(path))
        dirs, blobs = gcs.list_children(bucket, name)
        return sorted({*dirs, *(b.name.rsplit("/", 1)[-1] for b in blobs)} - {""})
    import tensorflow as tf

    return [name.rstrip("/") for name in tf.io.gfile.listdir(os.fspath(path))]


def open_binary(path: str | os.PathLike):
    """A binary file object for reading ``path``."""
    if not is_remote(path):
        return open(path, "rb")
    if gcs.is_gcs(path):
        bucket, name = gcs.split_uri(os.fspath(path))
        blob = gcs.bucket(bucket).blob(name)
        try:
            return blob.open("rb")
        except Exception as err:  # google.api_core.exceptions.NotFound is not an OSError
            raise FileNotFoundError(f"cannot open {os.fspath(path)}: {err}") from err
    import tensorflow as tf

    return tf.io.gfile.GFile(os.fspath(path), "rb")


def open_text(path: str | os.PathLike, encoding: str):
    """A text file object for reading ``path``; line endings are kept as they are
    (``newline=""``), so raw lines and line numbers stay physical."""
    if not is_remote(path):
        return open(path, encoding=encoding, newline="")
    raw = _RawGFile(open_binary(path))
    return io.TextIOWrapper(io.BufferedReader(raw), encoding=encoding, newline="")


class _RawGFile(io.RawIOBase):
    """A tf.io.gfile.GFile as the raw stream ``io.BufferedReader`` expects."""

    def __init__(self, gfile):
        self._gfile = gfile

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._gfile.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._gfile.close()
        super().close()
