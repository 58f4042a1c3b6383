"""The serving directory the Pusher writes, on local disk or in Cloud Storage: one interface.

:func:`open_serving_dir` returns a :class:`LocalServingDir` for a path (TF Serving's layout on a
POSIX file system; ``publish.push``: a hidden temporary copy renamed into place under an
exclusive ``flock``) or a :class:`GcsServingDir` for ``gs://BUCKET/PREFIX`` (the same layout
in an object store, made safe without rename or locks: ``serving.gcs`` explains the design).
Anything else is refused with an error naming the URI, so a pipeline never "pushes" into a
container's throw-away file system. Both implementations answer the same four calls:

- ``list_versions(name)``: the complete versions of a model, ascending;
- ``push(name, saved_model_dir)``: a new version, all or nothing -> ``(version, uri)``;
- ``write_models_config(model_names)``: ``models.config`` for ``tensorflow_model_server``;
- ``fetch(name, version, dest)``: a local directory holding that version;
- ``write_bundle(versions, fingerprints)``: the manifest of the versions pushed together
  (``serving.bundles``), written after them; its new id.
"""

import json
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from publish import push
from serving import bundles, gcs
from serving.names import MODELS_CONFIG, SAVED_MODEL_FILES


class ServingDir(Protocol):
    uri: str

    def list_versions(self, name: str) -> list[int]: ...

    def push(self, name: str, saved_model_dir: str | os.PathLike) -> tuple[int, str]: ...

    def write_models_config(self, model_names: Sequence[str]) -> str: ...

    def fetch(self, name: str, version: int, dest: str | os.PathLike) -> Path: ...

    def write_bundle(self, versions: Mapping[str, int], prints: Mapping[str, dict]) -> int: ...


def open_serving_dir(uri: str | os.PathLike) -> ServingDir:
    """The serving directory at ``uri``: a local path or ``gs://BUCKET/PREFIX``.

    Raises:
      ValueError: naming ``uri`` when the Pusher cannot write it (another scheme, a bad
        bucket name).
    """
    text = os.fspath(uri)
    if gcs.is_gcs(text):
        return GcsServingDir(text)
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise ValueError(
            f"the Pusher cannot write the serving directory {text!r}: {scheme}:// is not "
            "supported (use a local path or gs://BUCKET/PATH)"
        )
    return LocalServingDir(text)


class LocalServingDir:
    """TF Serving's layout on a POSIX file system (``publish.push``)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.uri = str(self.path)

    def list_versions(self, name: str) -> list[int]:
        return push.list_versions(self.path / name)

    def push(self, name: str, saved_model_dir: str | os.PathLike) -> tuple[int, str]:
        version, path = push.push_atomically(Path(saved_model_dir), self.path / name)
        return version, str(path)

    def write_models_config(self, model_names: Sequence[str]) -> str:
        models = {name: self.path / name for name in model_names}
        return str(push.write_models_config(self.path, models))

    def fetch(self, name: str, version: int, dest: str | os.PathLike) -> Path:
        source = self.path / name / str(version)
        if not source.is_dir():
            raise FileNotFoundError(f"no version {version} of {name} under {self.path}")
        return source

    def write_bundle(self, versions: Mapping[str, int], prints: Mapping[str, dict]) -> int:
        """Writes ``bundles/<next id>.json`` (temporary file, fsync, rename) under a lock."""
        directory = self.path / bundles.BUNDLES_DIR
        directory.mkdir(parents=True, exist_ok=True)
        with push.exclusive_lock(directory / push.LOCK_FILE):
            bundle_id = max(bundles.list_bundles(self.path), default=0) + 1
            text = bundles.Bundle(bundle_id, dict(versions), dict(prints)).to_json()
            tmp = directory / f".tmp-{bundle_id}-{os.getpid()}.json"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, directory / f"{bundle_id}.json")
        return bundle_id


class GcsServingDir:
    """TF Serving's layout in Cloud Storage, pushed through staging, claims and a marker.

    Args:
      uri: ``gs://BUCKET/PREFIX``.
      stale_staging_seconds: age after which a staging upload is a dead push's, deleted.
    """

    def __init__(self, uri: str, stale_staging_seconds: float = gcs.STALE_STAGING_SECONDS):
        self.bucket_name, self.prefix = gcs.split_uri(uri)
        self.uri = f"{gcs.SCHEME}{gcs.join(self.bucket_name, self.prefix)}"
        self.stale_staging_seconds = stale_staging_seconds

    def model_uri(self, name: str) -> str:
        return f"{self.uri}/{name}"

    def list_versions(self, name: str) -> list[int]:
        return gcs.list_complete_versions(self.model_uri(name))

    def push(self, name: str, saved_model_dir: str | os.PathLike) -> tuple[int, str]:
        """Uploads the local SavedModel ``saved_model_dir`` as the next version of ``name``.

        Returns:
          ``(version, gs:// URI of the version)``.

        Raises:
          FileNotFoundError: if ``saved_model_dir`` holds no SavedModel.
        """
        src = Path(saved_model_dir)
        files = sorted(
            path.relative_to(src).as_posix() for path in src.rglob("*") if path.is_file()
        )
        if not any(name_ in files for name_ in SAVED_MODEL_FILES):
            raise FileNotFoundError(f"no SavedModel to push in {src}")
        base = gcs.join(self.prefix, name)
        bucket = gcs.bucket(self.bucket_name)
        self._remove_stale_staging(base)
        token = f"{int(time.time())}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        staging = gcs.join(base, gcs.STAGING_DIR, token)
        meta = {}
        try:
            for relative in files:
                data = (src / relative).read_bytes()
                blob = bucket.blob(gcs.join(staging, relative))
                blob.upload_from_string(data, if_generation_match=0)
                meta[relative] = {"size": len(data), "crc32c": gcs.crc32c(data)}
            version = self._claim(bucket, base, token)
            target = gcs.join(base, str(version))
            # The SavedModel proto last: TF Serving loads a version once it sees the proto.
            for relative in sorted(files, key=lambda f: (f in SAVED_MODEL_FILES, f)):
                bucket.copy_blob(
                    bucket.blob(gcs.join(staging, relative)),
                    bucket,
                    gcs.join(target, relative),
                    if_generation_match=0,
                )
            marker = {"files": meta, "token": token, "pushed_at": time.time()}
            bucket.blob(gcs.join(target, gcs.COMPLETE_MARKER)).upload_from_string(
                json.dumps(marker, indent=2, sort_keys=True),
                content_type="application/json",
                if_generation_match=0,
            )
        finally:
            for blob in gcs.list_blobs(self.bucket_name, staging):
                blob.delete()
        return version, f"{gcs.SCHEME}{gcs.join(self.bucket_name, target)}"

    def write_models_config(self, model_names: Sequence[str]) -> str:
        """Uploads ``models.config`` with ``gs://`` base paths (one object write: a reader
        sees the old file or the new one)."""
        models = {name: self.model_uri(name) for name in model_names}
        if not models or not all(models):
            raise ValueError(f"models.config needs named models, got {list(model_names)}")
        name = gcs.join(self.prefix, MODELS_CONFIG)
        gcs.bucket(self.bucket_name).blob(name).upload_from_string(
            push.config_text(models), content_type="text/plain"
        )
        return f"{gcs.SCHEME}{gcs.join(self.bucket_name, name)}"

    def fetch(self, name: str, version: int, dest: str | os.PathLike) -> Path:
        """Downloads the complete ``version`` of ``name`` into the new directory ``dest``."""
        return gcs.download_version(self.model_uri(name), version, Path(dest))

    def write_bundle(self, versions: Mapping[str, int], prints: Mapping[str, dict]) -> int:
        """Creates ``bundles/<next id>.json`` with a create-only precondition (a concurrent
        pusher that took the id makes this one take the next)."""
        from google.api_core.exceptions import PreconditionFailed

        bucket = gcs.bucket(self.bucket_name)
        directory = gcs.join(self.prefix, bundles.BUNDLES_DIR)
        while True:
            _, blobs = gcs.list_children(self.bucket_name, directory)
            taken = [int(b.name.rsplit("/", 1)[1][:-5]) for b in blobs if _is_bundle(b.name)]
            bundle_id = max(taken, default=0) + 1
            text = bundles.Bundle(bundle_id, dict(versions), dict(prints)).to_json()
            try:
                bucket.blob(gcs.join(directory, f"{bundle_id}.json")).upload_from_string(
                    text, content_type="application/json", if_generation_match=0
                )
            except PreconditionFailed:
                continue
            return bundle_id

    def _claim(self, bucket, base: str, token: str) -> int:
        """The next version number, claimed with a create-only precondition."""
        from google.api_core.exceptions import PreconditionFailed

        while True:
            claims_dir = gcs.join(base, gcs.CLAIMS_DIR)
            _, claim_blobs = gcs.list_children(self.bucket_name, claims_dir)
            claimed = [
                int(b.name.rsplit("/", 1)[1])
                for b in claim_blobs
                if b.name.rsplit("/", 1)[1].isdigit()
            ]
            numbered = gcs.numeric_children(self.bucket_name, base)
            version = max(claimed + numbered, default=0) + 1
            try:
                bucket.blob(gcs.join(claims_dir, str(version))).upload_from_string(
                    json.dumps({"token": token}), if_generation_match=0
                )
            except PreconditionFailed:  # another pusher took it first: take the next
                continue
            return version

    def _remove_stale_staging(self, base: str) -> None:
        """Deletes what dead pushes left: staging uploads, and numbered versions without
        their completion marker, whose objects are all older than the staleness limit."""
        now = time.time()

        def stale(blob) -> bool:
            updated = blob.updated.timestamp() if blob.updated else now
            return now - updated > self.stale_staging_seconds

        for blob in gcs.list_blobs(self.bucket_name, gcs.join(base, gcs.STAGING_DIR)):
            if stale(blob):
                blob.delete()
        complete = set(gcs.list_complete_versions(f"{gcs.SCHEME}{self.bucket_name}/{base}"))
        for version in gcs.numeric_children(self.bucket_name, base):
            if version in complete:
                continue
            blobs = gcs.list_blobs(self.bucket_name, gcs.join(base, str(version)))
            if blobs and all(stale(blob) for blob in blobs):
                for blob in blobs:
                    blob.delete()


def _is_bundle(name: str) -> bool:
    last = name.rsplit("/", 1)[-1]
    return last.endswith(".json") and last[:-5].isdigit()
