"""The models ``movierec serve`` serves, reloaded from the serving directory as pushes land.

``serving.commands`` builds a :class:`ModelStore` (``serving.service.open_store``), calls
:meth:`ModelStore.poll` once and :meth:`ModelStore.start` to poll every few seconds;
``serving.server`` reads :attr:`ModelStore.snapshot` once per request and
:meth:`ModelStore.status` for readiness and metrics.

Like TF Serving's default version policy, each model serves the highest version under
``<serving_dir>/<name>/`` that loads. A new version is loaded and prepared completely (its
``prepare`` hook, e.g. warm-up calls, runs too) before one reference assignment swaps in a
new immutable :class:`Snapshot`; a request keeps the snapshot it started with, so in-flight
requests finish on the old models, which are freed when the last of them returns.

Once the serving directory holds bundle manifests (``serving.bundles``: the versions a push
wrote together, with fingerprints of their trained model, vocabularies and catalogue), the
store serves bundles instead: the newest bundle whose models match each other and their
manifest, and all load, is swapped in whole; a version that no bundle names (a model pushed
alone, by hand or from another training run) is never served, and a bundle that does not
match is refused, logged once and reported (``status()["refused_bundles"]``, ``/readyz``),
while the bundle before it keeps serving.

Faults are isolated per model: an error listing one model's versions or loading one of them
never stops the other models of the same poll, and the poll still swaps in what did load.
A version that fails to load is skipped while the previous version keeps serving (or the
next version down is tried), and the failure is classified:

- temporary (an ``OSError`` carrying an errno such as ``EACCES``, ``EMFILE``, ``ENFILE`` or
  ``ENOMEM``; ``MemoryError``; TensorFlow's permission-denied, resource-exhausted and
  unavailable errors; a version directory that disappears mid-load): retried with
  exponential backoff, :data:`RETRY_INITIAL_SECONDS` doubling up to
  :data:`RETRY_MAX_SECONDS` of the store's monotonic ``clock``, with no change on disk
  needed; sooner if its files change;
- permanent (anything else: a corrupt or non-SavedModel ``saved_model.pb``, missing
  variables, a ``prepare`` hook's ``ValueError``, ...): remembered with a fingerprint of its
  files (names, sizes, mtimes) and retried only once they change (a version copied in by
  hand, seen half-written).

Logging follows state changes, not polls: one line when a model's listing starts failing
and one when it works again, one when a version fails (or fails differently) and one when it
loads after failing, one when the serving directory goes missing or comes back. Expected
failures are logged without a traceback.
"""

import ctypes
import dataclasses
import errno
import gc
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import tensorflow as tf

from serving import bundles, gcs, tf_serving
from serving.names import MODEL_NAMES, list_versions
from serving.tf_serving import LoadedModel

log = logging.getLogger(__name__)

# Builds what a model serves besides its signatures (catalogue arrays, embeddings, ...) and
# raises if the model cannot serve; a version whose hook raises is skipped like a corrupt one.
Prepare = Callable[[LoadedModel], Any]

# Backoff of a version that failed for a temporary reason: seconds until the first retry,
# doubled after each further failure up to the cap.
RETRY_INITIAL_SECONDS = 1.0
RETRY_MAX_SECONDS = 60.0

# The states of ``ModelStore.status()["models"][name]["state"]``.
SERVING, NOT_FOUND, FAILING = "serving", "not_found", "failing"

# errnos of failures that go away without the files changing: permissions fixed, file
# descriptors or memory freed, a busy or flaky file system, a directory replaced under us.
_TEMPORARY_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "EACCES", "EPERM", "EMFILE", "ENFILE", "ENOMEM", "ENOBUFS", "EAGAIN", "EINTR",
        "EBUSY", "EIO", "ETIMEDOUT", "ESTALE", "ENOENT", "ENOTDIR",
    )
    if hasattr(errno, name)
)  # fmt: skip
# TensorFlow's file system raises its own errors, not OSError, for the same conditions.
_TEMPORARY_TF_ERRORS = (
    tf.errors.PermissionDeniedError,
    tf.errors.ResourceExhaustedError,
    tf.errors.UnavailableError,
    tf.errors.DeadlineExceededError,
    tf.errors.AbortedError,
)


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The models served at one moment; never mutated, replaced whole.

    Attributes:
      models: model name -> the loaded version.
      views: model name -> what its ``prepare`` hook returned (only for hooked models).
      bundle: the id of the bundle these models are (``serving.bundles``); None when the
        serving directory holds no bundle manifest.
    """

    models: Mapping[str, LoadedModel]
    views: Mapping[str, Any]
    bundle: int | None = None

    def versions(self) -> dict[str, int]:
        return {name: model.version for name, model in self.models.items()}


@dataclasses.dataclass
class _Failure:
    """The last failed load of one version.

    Attributes:
      fingerprint: its files when it failed; a change means retry now.
      reason: ``"<Type>: <first line>"`` of the error.
      temporary: retried after ``retry_at`` without a change on disk.
      attempts: consecutive failed loads.
      retry_at: the store clock's time of the next retry (temporary failures only).
    """

    fingerprint: tuple
    reason: str
    temporary: bool
    attempts: int
    retry_at: float


class ModelStore:
    """Loads the newest good version of each model of a serving directory.

    Args:
      serving_dir: the Pusher's serving directory (``<serving_dir>/<name>/<version>/``).
      names: the model names to serve.
      prepare: model name -> hook run on each newly loaded version of that model.
      clock: monotonic seconds, for the retry backoff (tests pass a fake one).
      retry_initial_seconds, retry_max_seconds: backoff of temporary load failures.
      cache_dir: for a ``gs://`` serving directory, the local directory its newest complete
        versions are downloaded to and loaded from (``serving.gcs.GcsMirror``; default a new
        temporary directory). :attr:`serving_dir` is then that directory and
        :attr:`source` the ``gs://`` URI.
    """

    def __init__(
        self,
        serving_dir: str | os.PathLike,
        names: Iterable[str] = MODEL_NAMES,
        prepare: Mapping[str, Prepare] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        retry_initial_seconds: float = RETRY_INITIAL_SECONDS,
        retry_max_seconds: float = RETRY_MAX_SECONDS,
        cache_dir: str | os.PathLike | None = None,
    ):
        self._mirror = None
        if gcs.is_gcs(serving_dir):  # load from a local mirror of the bucket's versions
            if cache_dir is None:
                cache_dir = tempfile.mkdtemp(prefix="movierec-serving-cache-")
            self._mirror = gcs.GcsMirror(os.fspath(serving_dir), cache_dir)
            self.serving_dir = Path(cache_dir)
            self.source = self._mirror.uri
        else:
            self.serving_dir = Path(serving_dir)
            self.source = str(self.serving_dir)
        self.names = tuple(names)
        self._prepare = dict(prepare or {})
        self._clock = clock
        self._retry_initial = retry_initial_seconds
        self._retry_max = retry_max_seconds
        self._snapshot = Snapshot({}, {})
        # What status() reports; written by poll() under _state_lock, read by status().
        self._state_lock = threading.Lock()
        self._problem: str | None = None  # the serving directory's, if any
        self._list_errors: dict[str, str] = {}  # name -> why its versions cannot be listed
        self._found: dict[str, bool] = {}  # name -> versions were listed on disk
        self._failures: dict[tuple[str, int], _Failure] = {}  # (name, version) -> last failure
        self._poll_errors: dict[str, str] = {}  # name -> an unexpected error of its poll
        self._reload_failures = dict.fromkeys(self.names, 0)
        self._bundle_failures: dict[int, str] = {}  # bundle id -> why it is not served
        self._bundle_list_error: str | None = None
        self._print_cache: dict[tuple[str, int], tuple] = {}  # fingerprints by version files
        self._poll_lock = threading.Lock()
        self._release_due = 0  # polls that still free what swapped-out models held
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def snapshot(self) -> Snapshot:
        """The current snapshot; read it once per request and use only that one."""
        return self._snapshot

    @property
    def skipped(self) -> dict[tuple[str, int], tuple]:
        """``(name, version)`` -> fingerprint of each listed version whose last load failed
        (temporarily or permanently)."""
        with self._state_lock:
            return {key: failure.fingerprint for key, failure in self._failures.items()}

    def status(self) -> dict:
        """What the store serves and why it does not serve more; safe to call during a poll.

        Returns:
          ``{"serving_dir": str, "problem": str | None, "models": {name: {"version":
          int | None, "state": str, "reason": str | None}}, "reload_failures": {name:
          int}}``. ``problem`` says what is wrong with the serving directory itself (e.g.
          ``"serving directory /x does not exist"``). A model's ``state`` is ``"serving"``
          (``version`` is served; ``reason`` is None, or says why no newer version is: its
          listing fails or a newer version failed to load), ``"not_found"`` (no version on
          disk yet) or ``"failing"`` (its versions cannot be listed or none loads; ``reason``
          says why). ``reload_failures`` counts failed load attempts per model since start.
          ``bundle`` is the id of the bundle served (None without bundles) and
          ``refused_bundles`` maps each newer bundle id (a string) that is not served to
          why (a mismatch of fingerprints, a version missing or not loading).
        """
        with self._state_lock:
            snapshot = self._snapshot
            models = {}
            for name in self.names:
                served = snapshot.models.get(name)
                version = None if served is None else served.version
                reasons = []
                if name in self._poll_errors:
                    reasons.append(self._poll_errors[name])
                if name in self._list_errors:
                    reasons.append(self._list_errors[name])
                for (failed, v), failure in sorted(self._failures.items(), reverse=True):
                    if failed == name and (version is None or v > version):
                        retry = " (temporary, will retry)" if failure.temporary else ""
                        reasons.append(f"version {v} failed to load: {failure.reason}{retry}")
                reason = "; ".join(reasons) or None
                if version is not None:
                    state = SERVING
                elif reason is not None:
                    state = FAILING
                elif self._found.get(name):
                    state, reason = FAILING, "no version loaded yet"
                else:
                    state = NOT_FOUND
                models[name] = {"version": version, "state": state, "reason": reason}
            served = snapshot.bundle
            refused = {
                str(bundle_id): reason
                for bundle_id, reason in sorted(self._bundle_failures.items())
                if served is None or bundle_id > served
            }
            return {
                "serving_dir": self.source,
                "problem": self._problem or self._bundle_list_error,
                "models": models,
                "reload_failures": dict(self._reload_failures),
                "bundle": served,
                "refused_bundles": refused,
            }

    def poll(self) -> list[tuple[str, int]]:
        """Loads the models whose newest good version is not the one served, then swaps.

        With bundle manifests in the serving directory (``serving.bundles``), the newest
        bundle whose models are consistent and load is served, all its models swapped in
        at once; versions in no bundle are never served. Without any, each model is polled
        on its own: what fails for one never stops the others.

        Returns:
          ``(name, version)`` of each model that switched version (empty if none did).
        """
        with self._poll_lock:  # the poller thread and an explicit poll() never interleave
            self._check_serving_dir()
            bundle_ids = self._list_bundles()
            if bundle_ids:
                switched = self._poll_bundles(bundle_ids)
            else:
                switched = self._poll_models()
            if switched:
                self._release_due = 2  # now and at the next poll, once in-flight requests end
            if self._release_due:
                self._release_due -= 1
                _release_memory()
            return switched

    def _poll_models(self) -> list[tuple[str, int]]:
        current = self._snapshot
        models, views = dict(current.models), dict(current.views)
        switched, found = [], {}
        for name in self.names:
            try:
                loaded = self._poll_model(name, current.models.get(name), found)
            except Exception as err:  # a bug or the unforeseen: isolate it to this model
                self._poll_failed(name, err)
                continue
            self._poll_recovered(name)
            if loaded is not None:
                models[name], view = loaded
                if name in self._prepare:
                    views[name] = view
                switched.append((name, models[name].version))
        with self._state_lock:  # status() sees the new models with what was found
            if switched:
                self._snapshot = Snapshot(models, views)  # the one atomic swap
            self._found.update(found)
        if switched:
            log.info("now serving %s", ", ".join(f"{n} v{v}" for n, v in switched))
        return switched

    def _list_bundles(self) -> list[int]:
        """The bundle ids of the serving directory (mirrored first from ``gs://``)."""
        reason = None
        if self._mirror is not None:
            try:
                self._mirror.sync_bundles()
            except Exception as err:  # Cloud Storage's errors: keep what is mirrored
                reason = f"cannot list {self._mirror.uri}/{bundles.BUNDLES_DIR}: {_brief(err)}"
        try:
            ids = bundles.list_bundles(self.serving_dir)
        except OSError as err:
            reason, ids = f"cannot list bundles: {_brief(err)}", []
        with self._state_lock:
            before, self._bundle_list_error = self._bundle_list_error, reason
        if reason != before and reason is not None:
            log.error("%s", reason)
        return ids

    def _poll_bundles(self, bundle_ids: list[int]) -> list[tuple[str, int]]:
        """Swaps in the newest bundle that is consistent and loads, if it is not served."""
        current = self._snapshot
        for bundle_id in reversed(bundle_ids):
            if current.bundle == bundle_id:
                return []
            loaded = self._try_bundle(bundle_id, current)
            if loaded is None:
                continue
            models, views = loaded
            switched = [
                (name, model.version)
                for name, model in models.items()
                if current.models.get(name) is not model
            ]
            with self._state_lock:
                self._snapshot = Snapshot(models, views, bundle_id)  # the one atomic swap
                self._found.update(dict.fromkeys(models, True))
                self._bundle_failures.pop(bundle_id, None)
            log.info(
                "now serving bundle %d: %s",
                bundle_id,
                ", ".join(f"{n} v{m.version}" for n, m in models.items()),
            )
            return switched
        return []

    def _try_bundle(self, bundle_id: int, current: Snapshot):
        """``(models, views)`` of one bundle, or None (why is logged once and reported)."""
        try:
            bundle = bundles.read_bundle(self.serving_dir, bundle_id)
            missing = [name for name in self.names if name not in bundle.versions]
            if missing:
                raise ValueError(f"bundle {bundle_id} names no {', '.join(missing)} version")
            if self._mirror is not None:
                for name in self.names:
                    self._mirror.sync(name)
            prints = {}
            for name in self.names:
                version = bundle.versions[name]
                path = self.serving_dir / name / str(version)
                if not path.is_dir():
                    raise _NotYet(
                        f"bundle {bundle_id}: {name} version {version} is not in {path.parent}"
                    )
                prints[name] = self._fingerprints(name, version, path)
            reason = bundles.check(bundle, prints)
            if reason is not None:
                raise ValueError(reason)
        except Exception as err:  # this bundle cannot serve (now); older ones may
            self._bundle_failed(bundle_id, err)
            return None
        models, views = {}, {}
        for name in self.names:
            version, served = bundle.versions[name], current.models.get(name)
            if served is not None and served.version == version:
                models[name] = served
                if name in current.views:
                    views[name] = current.views[name]
                continue
            loaded = self._try_load(name, version)  # logs and backs off on its own
            if loaded is None:
                self._bundle_failed(
                    bundle_id,
                    _NotYet(f"bundle {bundle_id}: {name} version {version} does not load"),
                )
                return None
            models[name], view = loaded
            if name in self._prepare:
                views[name] = view
        return models, views

    def _fingerprints(self, name: str, version: int, path: Path) -> dict[str, str]:
        files = _fingerprint(path)
        cached = self._print_cache.get((name, version))
        if cached is not None and cached[0] == files:
            return cached[1]
        prints = bundles.fingerprints(path)
        self._print_cache[(name, version)] = (files, prints)
        return prints

    def _bundle_failed(self, bundle_id: int, err: Exception) -> None:
        reason = str(err) if isinstance(err, _NotYet | ValueError) else _brief(err)
        with self._state_lock:
            before, self._bundle_failures[bundle_id] = self._bundle_failures.get(bundle_id), reason
        if reason != before:
            level = logging.WARNING if isinstance(err, _NotYet) else logging.ERROR
            log.log(level, "not serving bundle %d: %s", bundle_id, reason)

    def start(
        self,
        interval_seconds: float,
        on_switch: Callable[[list[tuple[str, int]]], None] | None = None,
    ) -> None:
        """Polls every ``interval_seconds`` in a daemon thread until :meth:`stop`; after a
        poll that switched versions, calls ``on_switch`` with what :meth:`poll` returned."""
        if self._thread is not None:
            raise RuntimeError("the store is already polling")
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._poll_forever,
            args=(interval_seconds, on_switch),
            name="model-poller",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stops the polling thread (a load in progress finishes first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _poll_forever(self, interval_seconds: float, on_switch) -> None:
        failing = False
        while not self._stop.wait(interval_seconds):
            try:
                switched = self.poll()
            except Exception:  # a poll must never kill the poller; the next one may succeed
                if not failing:
                    log.exception("polling %s failed", self.serving_dir)
                failing = True
                continue
            failing = False
            if switched and on_switch is not None:
                on_switch(switched)

    def _check_serving_dir(self) -> None:
        if self._mirror is not None:
            self._set_problem(self._mirror.check())
            return
        try:
            problem = (
                None
                if self.serving_dir.is_dir()
                else f"serving directory {self.serving_dir} does not exist"
                if not self.serving_dir.exists()
                else f"serving directory {self.serving_dir} is not a directory"
            )
        except OSError as err:
            problem = f"cannot read serving directory {self.serving_dir}: {_brief(err)}"
        self._set_problem(problem)

    def _set_problem(self, problem: str | None) -> None:
        with self._state_lock:
            before, self._problem = self._problem, problem
        if problem != before:
            if problem is not None:
                log.error("%s", problem)
            else:
                log.info("serving directory %s is readable again", self.source)

    def _poll_failed(self, name: str, err: Exception) -> None:
        reason = f"polling failed: {_brief(err)}"
        with self._state_lock:
            before, self._poll_errors[name] = self._poll_errors.get(name), reason
        if reason != before:
            log.error("%s: %s", name, reason, exc_info=err)

    def _poll_recovered(self, name: str) -> None:
        with self._state_lock:
            before = self._poll_errors.pop(name, None)
        if before is not None:
            log.info("%s: polling works again", name)

    def _list(self, name: str) -> list[int] | None:
        """The versions of one model on disk, None (logged once) if they cannot be listed."""
        base = self.serving_dir / name
        try:
            if self._mirror is not None:
                self._mirror.sync(name)  # the newest complete versions, downloaded
            versions = list_versions(base)
        except OSError as err:
            reason = f"cannot list {base}: {_brief(err)}"
        except Exception as err:  # Cloud Storage's errors (google.api_core) are not OSErrors
            if self._mirror is None:
                raise
            reason = f"cannot list {self._mirror.uri}/{name}: {_brief(err)}"
        else:
            reason = None
        if reason is not None:
            with self._state_lock:
                before, self._list_errors[name] = self._list_errors.get(name), reason
            if reason != before:
                log.error("%s: %s", name, reason)
            return None
        with self._state_lock:
            recovered = self._list_errors.pop(name, None) is not None
            listed = set(versions)
            for key in [k for k in self._failures if k[0] == name and k[1] not in listed]:
                del self._failures[key]  # deleted (or replaced by a rename) on disk
        if recovered:
            log.info("%s: listing works again", name)
        return versions

    def _poll_model(
        self, name: str, served: LoadedModel | None, found: dict[str, bool]
    ) -> tuple[LoadedModel, Any] | None:
        """The newest version that loads, unless that is ``served``; None keeps ``served``.

        Versions are tried newest first, so a bad newest version falls back to the next
        one down; ``served`` is kept when nothing newer loads (or it was deleted and
        nothing else does), and when the versions cannot be listed. Sets ``found[name]``
        to whether any version is on disk, once listed.
        """
        versions = self._list(name)
        if versions is None:
            return None
        found[name] = bool(versions)
        for version in reversed(versions):
            if served is not None and version == served.version:
                return None
            loaded = self._try_load(name, version)
            if loaded is not None:
                return loaded
        return None

    def _try_load(self, name: str, version: int) -> tuple[LoadedModel, Any] | None:
        """Loads and prepares one version unless it is known bad; None if it fails."""
        path = self.serving_dir / name / str(version)
        fingerprint = _fingerprint(path)
        with self._state_lock:
            failure = self._failures.get((name, version))
        if failure is not None and failure.fingerprint == fingerprint:
            if not failure.temporary or self._clock() < failure.retry_at:
                return None
        try:
            model = tf_serving.load_model(name, version, path)
            view = self._prepare[name](model) if name in self._prepare else None
        except Exception as err:  # any failure means this version cannot serve now
            self._load_failed(name, version, path, fingerprint, failure, err)
            return None
        with self._state_lock:
            self._failures.pop((name, version), None)
        if failure is None:
            log.info("loaded %s version %d from %s", name, version, path)
        else:
            log.info(
                "loaded %s version %d from %s after %d failed attempt(s)",
                name, version, path, failure.attempts,
            )  # fmt: skip
        return model, view

    def _load_failed(
        self,
        name: str,
        version: int,
        path: Path,
        fingerprint: tuple,
        before: _Failure | None,
        err: Exception,
    ) -> None:
        temporary = _is_temporary(err) or not path.is_dir()  # or removed mid-load
        reason = _brief(err) if path.is_dir() else f"{_brief(err)} (the directory disappeared)"
        attempts = 1 if before is None else before.attempts + 1
        delay = min(self._retry_initial * 2 ** (attempts - 1), self._retry_max)
        failure = _Failure(fingerprint, reason, temporary, attempts, self._clock() + delay)
        with self._state_lock:
            self._failures[(name, version)] = failure
            self._reload_failures[name] = self._reload_failures.get(name, 0) + 1
        if before is not None and (before.reason, before.temporary) == (reason, temporary):
            return  # the same failure again: logged when it started
        if temporary:
            log.warning(
                "skipping %s version %d (%s) for now: %s; retrying with backoff (%g s, up"
                " to %g s)",
                name, version, path, reason, delay, self._retry_max,
            )  # fmt: skip
        else:
            log.error(
                "skipping %s version %d (%s): %s; retried once its files change",
                name, version, path, reason,
            )  # fmt: skip


class _NotYet(Exception):
    """A bundle that may serve later without its files changing (a version still missing,
    or one whose load failed for a reason the version's own backoff retries)."""


def _release_memory() -> None:
    """Frees what replaced models held: their reference cycles (TensorFlow's loaded objects
    have many) and the heap pages glibc keeps after freeing them. Without it a hot reload
    grew the server's RSS by 60% over three reloads (ml-100k models); with it, by 190 MB at
    the first reload and 1-2 MB per reload after it."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def _is_temporary(err: BaseException) -> bool:
    """Whether ``err`` may go away without the version's files changing.

    TensorFlow raises ``OSError`` without an errno for a corrupt or missing SavedModel
    file, so only an errno from the OS makes an ``OSError`` temporary.
    """
    if isinstance(err, (MemoryError, *_TEMPORARY_TF_ERRORS)):
        return True
    return isinstance(err, OSError) and err.errno in _TEMPORARY_ERRNOS


def _fingerprint(path: Path) -> tuple:
    """Names, sizes and mtimes of every file under ``path``: changes when a file does."""
    entries = []
    for dirpath, _, filenames in os.walk(path):
        for filename in filenames:
            file = Path(dirpath) / filename
            try:
                stat = file.stat()
            except OSError:  # removed while we walked; the fingerprint differs either way
                continue
            entries.append((str(file.relative_to(path)), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(entries))


def _brief(err: BaseException) -> str:
    lines = [line for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0] if lines else ''}"
