"""A serving directory in Cloud Storage (``gs://BUCKET/PREFIX``): reading it, and its layout.

Object stores have no rename and no directories, so a version cannot appear all at once as a
POSIX push makes it (``publish.push``). The Pusher's ``gs://`` push
(``publish.serving_dir.GcsServingDir``) and every reader agree on this layout instead::

    <prefix>/models.config                       base paths gs://BUCKET/PREFIX/<name>
    <prefix>/<name>/.staging/<token>/...         a push's upload, before it has a version
    <prefix>/<name>/.versions/<version>          claim of a version number (one object)
    <prefix>/<name>/<version>/variables/..., assets/..., saved_model.pb
    <prefix>/<name>/<version>/.movierec-complete the completion marker, written last

A push uploads the SavedModel under ``.staging/<token>/`` (the slow part; TF Serving lists
only all-digit children of a base path, so it never sees it), then claims the next version by
creating ``.versions/<version>`` with the precondition ``if_generation_match=0`` (the create
fails if the object exists: of two concurrent pushers exactly one gets each number, and the
other takes the next), then copies the staged objects server-side into ``<version>/`` with
``saved_model.pb`` last, writes the completion marker (the list of files with their sizes and
CRC32C checksums) and deletes the staging objects. So:

- TF Serving, which loads a numeric version once its ``saved_model.pb`` is there, sees the
  proto only after every variable and asset file;
- ``movierec serve`` (:class:`GcsMirror`) and :func:`list_complete_versions` skip a numeric
  version without its marker: a push killed after its claim leaves a version number that is
  never served, and the next push takes the number after it;
- a push killed during the upload leaves only ``.staging/<token>/``; pushes delete staging
  uploads, and numbered versions without a marker, whose objects are all older than
  :data:`STALE_STAGING_SECONDS`.

``movierec serve --serving-dir gs://...`` keeps a local mirror: the bundle manifests
(``<prefix>/bundles/<id>.json``, ``serving.bundles``), and for each model the newest complete
versions (:data:`MIRRORED_VERSIONS`) and those the newest bundles name, downloaded into a cache
directory (each under a temporary name, renamed into place when whole) and loaded from there
with the same model store as a local serving directory.

The client is google-cloud-storage's. With ``STORAGE_EMULATOR_HOST`` set (a Cloud Storage
emulator, as in the tests) it talks to the emulator with anonymous credentials; otherwise it
uses Application Default Credentials (a Vertex or GKE workload's service account).
TensorFlow's own ``gs://`` file system cannot be pointed at an emulator, so this module does
not use it.
"""

import base64
import functools
import json
import logging
import os
import re
import threading
from pathlib import Path

from serving.names import TMP_PREFIX

SCHEME = "gs://"
STAGING_DIR = ".staging"
CLAIMS_DIR = ".versions"
COMPLETE_MARKER = ".movierec-complete"
SAVED_MODEL_PB = "saved_model.pb"
EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
# A staging upload older than this belongs to a push that died; the next push deletes it.
STALE_STAGING_SECONDS = 3600.0
# Complete versions of each model ``movierec serve`` keeps locally: the newest, and the one
# before it to fall back to if the newest does not load.
MIRRORED_VERSIONS = 2

log = logging.getLogger(__name__)

_VERSION = re.compile(r"[0-9]+")
# Bucket names: 3-63 characters of lower-case letters, digits, '-', '_' and '.', starting and
# ending with a letter or digit (Cloud Storage's naming rules, without the dotted 222 form).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]")


def is_gcs(uri: str | os.PathLike) -> bool:
    """Whether ``uri`` is a ``gs://`` URI."""
    return os.fspath(uri).startswith(SCHEME)


def split_uri(uri: str) -> tuple[str, str]:
    """``gs://bucket/a/b/`` -> ``("bucket", "a/b")``.

    Raises:
      ValueError: naming ``uri`` if it is not ``gs://BUCKET[/PATH]`` with a valid bucket name.
    """
    if not is_gcs(uri):
        raise ValueError(f"{uri!r} is not a gs:// URI")
    bucket, _, prefix = uri[len(SCHEME) :].partition("/")
    if not _BUCKET.fullmatch(bucket):
        raise ValueError(
            f"{uri!r}: {bucket!r} is not a Cloud Storage bucket name (3-63 lower-case letters, "
            "digits, '-', '_' or '.')"
        )
    prefix = prefix.strip("/")
    if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
        raise ValueError(f"{uri!r}: empty, '.' or '..' path segments are not allowed")
    return bucket, prefix


def join(*parts: str) -> str:
    """Object name of the non-empty ``parts`` joined by '/'."""
    return "/".join(part.strip("/") for part in parts if part.strip("/"))


_client_lock = threading.Lock()


@functools.lru_cache(maxsize=4)
def _client_for(emulator: str | None):
    from google.cloud import storage

    if emulator:
        from google.auth.credentials import AnonymousCredentials

        project = os.environ.get("GOOGLE_CLOUD_PROJECT", "movierec-emulator")
        return storage.Client(project=project, credentials=AnonymousCredentials())
    return storage.Client()


def client():
    """The process's google-cloud-storage client (the emulator's if ``STORAGE_EMULATOR_HOST``)."""
    with _client_lock:
        return _client_for(os.environ.get(EMULATOR_ENV) or None)


def bucket(name: str):
    return client().bucket(name)


def list_children(bucket_name: str, prefix: str) -> tuple[list[str], list]:
    """The sub-"directories" (names without slashes) and blobs directly under ``prefix``."""
    iterator = client().list_blobs(bucket_name, prefix=join(prefix) + "/", delimiter="/")
    blobs = list(iterator)  # prefixes are filled in while the pages are read
    dirs = sorted(p[len(join(prefix)) + 1 :].rstrip("/") for p in iterator.prefixes)
    return dirs, blobs


def list_blobs(bucket_name: str, prefix: str) -> list:
    """Every blob under ``prefix/``."""
    return list(client().list_blobs(bucket_name, prefix=join(prefix) + "/"))


def numeric_children(bucket_name: str, prefix: str) -> list[int]:
    """The all-digit child names of ``prefix`` (versions, complete or not), ascending."""
    dirs, _ = list_children(bucket_name, prefix)
    return sorted(int(d) for d in dirs if _VERSION.fullmatch(d))


def list_complete_versions(uri: str, known_complete: set | None = None) -> list[int]:
    """The versions under one model's base path ``uri`` that carry the completion marker.

    Args:
      uri: ``gs://BUCKET/PREFIX/<model_name>``; it need not exist.
      known_complete: versions already seen complete (not checked again); updated in place.

    Returns:
      The complete versions, ascending; ``[]`` when there are none.
    """
    bucket_name, base = split_uri(uri)
    known = known_complete if known_complete is not None else set()
    complete = []
    for version in numeric_children(bucket_name, base):
        if version not in known:
            marker = bucket(bucket_name).blob(join(base, str(version), COMPLETE_MARKER))
            if not marker.exists():
                continue
            known.add(version)
        complete.append(version)
    known.intersection_update(complete)
    return complete


def read_marker(uri: str, version: int) -> dict:
    """The completion marker of ``<uri>/<version>``: ``{"files": {relative path: {"size",
    "crc32c"}}, ...}``."""
    bucket_name, base = split_uri(uri)
    text = bucket(bucket_name).blob(join(base, str(version), COMPLETE_MARKER)).download_as_text()
    return json.loads(text)


def download_version(uri: str, version: int, dest: Path) -> Path:
    """Downloads the complete version ``<uri>/<version>`` into the new local directory ``dest``.

    Every file listed in the completion marker is downloaded and checked against its size and
    CRC32C there, into ``<dest's parent>/.tmp-...`` first, then renamed to ``dest``: a
    reader of the parent sees the version whole or not at all.

    Raises:
      ValueError: if a downloaded file does not match the marker (naming the object).
      google.api_core.exceptions.NotFound: if the version or one of its files is gone.
    """
    bucket_name, base = split_uri(uri)
    marker = read_marker(uri, version)
    dest = Path(dest)
    tmp = dest.parent / f"{TMP_PREFIX}{dest.name}-{os.getpid()}-{threading.get_ident()}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        for relative, meta in sorted(marker["files"].items()):
            target = tmp / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            name = join(base, str(version), relative)
            bucket(bucket_name).blob(name).download_to_filename(str(target))
            data = target.read_bytes()
            crc = crc32c(data)
            if len(data) != meta["size"] or crc != meta["crc32c"]:
                raise ValueError(
                    f"gs://{bucket_name}/{name}: {len(data)} bytes, crc32c {crc}; the "
                    f"completion marker says {meta['size']} bytes, crc32c {meta['crc32c']}"
                )
        os.rename(tmp, dest)
    except BaseException:
        _remove_tree(tmp)
        raise
    return dest


def crc32c(data: bytes) -> str:
    """Base64 CRC32C of ``data``, as Cloud Storage reports an object's ``crc32c``."""
    import google_crc32c

    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


class GcsMirror:
    """A local copy of the newest complete versions of a ``gs://`` serving directory.

    Args:
      uri: ``gs://BUCKET/PREFIX``, the Pusher's serving directory.
      cache_dir: local directory the versions are downloaded to (``<cache>/<name>/<v>/``).
      keep: how many of the newest complete versions of each model to hold.
    """

    def __init__(self, uri: str, cache_dir: str | os.PathLike, keep: int = MIRRORED_VERSIONS):
        self.bucket_name, self.prefix = split_uri(uri)
        self.uri = f"{SCHEME}{join(self.bucket_name, self.prefix)}"
        self.cache_dir = Path(cache_dir)
        self.keep = keep
        self._complete: dict[str, set] = {}
        self._download_errors: dict[tuple[str, int], str] = {}
        self._wanted: dict[str, set] = {}  # name -> versions the newest bundles name

    def check(self) -> str | None:
        """Why the bucket cannot be read (None if it can)."""
        try:
            if not bucket(self.bucket_name).exists():
                return f"serving directory {self.uri}: bucket {self.bucket_name} does not exist"
        except Exception as err:  # the client's errors are not OSErrors
            return f"cannot read serving directory {self.uri}: {type(err).__name__}: {err}"
        return None

    def sync_bundles(self) -> list[int]:
        """Downloads the bundle manifests (``serving.bundles``) that are not local yet, each
        to a temporary file renamed into ``<cache>/bundles/<id>.json``.

        Returns:
          The bundle ids in the bucket, ascending.
        """
        from serving import bundles

        directory = self.cache_dir / bundles.BUNDLES_DIR
        _, blobs = list_children(self.bucket_name, join(self.prefix, bundles.BUNDLES_DIR))
        ids = []
        for blob in blobs:
            last = blob.name.rsplit("/", 1)[-1]
            if not (last.endswith(".json") and last[:-5].isdigit()):
                continue
            ids.append(int(last[:-5]))
            local = directory / last
            if not local.is_file():
                directory.mkdir(parents=True, exist_ok=True)
                tmp = directory / f"{TMP_PREFIX}{last}-{os.getpid()}"
                tmp.write_bytes(blob.download_as_bytes())
                os.rename(tmp, local)
        self._wanted = {}
        for bundle_id in sorted(ids)[-self.keep :]:  # their versions are downloaded too
            try:
                bundle = bundles.read_bundle(self.cache_dir, bundle_id)
            except (OSError, ValueError):
                continue  # the store reports a malformed manifest
            for name, version in bundle.versions.items():
                self._wanted.setdefault(name, set()).add(version)
        return sorted(ids)

    def sync(self, name: str) -> list[int]:
        """Downloads the newest complete versions of model ``name`` that are not local yet.

        A version that fails to download (a file gone or not matching its marker) is
        logged once per reason, skipped and tried again at the next sync.

        Returns:
          The complete versions in the bucket, ascending.

        Raises:
          Exception: google-cloud-storage's errors when the versions cannot be listed.
        """
        base_uri = f"{SCHEME}{join(self.bucket_name, self.prefix, name)}"
        versions = list_complete_versions(base_uri, self._complete.setdefault(name, set()))
        wanted = set(versions[-self.keep :]) | (self._wanted.get(name, set()) & set(versions))
        for version in sorted(wanted):
            local = self.cache_dir / name / str(version)
            if local.is_dir():
                continue
            try:
                download_version(base_uri, version, local)
            except Exception as err:  # this version only; the others still serve
                reason = f"{type(err).__name__}: {err}"
                if self._download_errors.get((name, version)) != reason:
                    log.warning("cannot download %s/%d: %s", base_uri, version, reason)
                self._download_errors[(name, version)] = reason
            else:
                if self._download_errors.pop((name, version), None) is not None:
                    log.info("downloaded %s/%d after failing", base_uri, version)
        return versions
