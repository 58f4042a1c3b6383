"""The models ``movierec serve`` serves, reloaded from the serving directory as pushes land.

``serving.commands`` builds a :class:`ModelStore` (``serving.service.open_store``), calls
:meth:`ModelStore.poll` once and :meth:`ModelStore.start` to poll every few seconds;
``serving.server`` reads :attr:`ModelStore.snapshot` once per request.

Like TF Serving's default version policy, each model serves the highest version under
``<serving_dir>/<name>/`` that loads. A new version is loaded and prepared completely (its
``prepare`` hook, e.g. warm-up calls, runs too) before one reference assignment swaps in a
new immutable :class:`Snapshot`; a request keeps the snapshot it started with, so in-flight
requests finish on the old models, which are freed when the last of them returns.

A version that fails to load is logged once, naming it, and skipped while the previous
version keeps serving. It is remembered with a fingerprint of its files (names, sizes,
mtimes), so it is not retried every poll, but is retried once its files change (a version
copied in by hand, seen half-written).
"""

import dataclasses
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from serving import tf_serving
from serving.names import MODEL_NAMES, list_versions
from serving.tf_serving import LoadedModel

log = logging.getLogger(__name__)

# Builds what a model serves besides its signatures (catalogue arrays, embeddings, ...) and
# raises if the model cannot serve; a version whose hook raises is skipped like a corrupt one.
Prepare = Callable[[LoadedModel], Any]


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The models served at one moment; never mutated, replaced whole.

    Attributes:
      models: model name -> the loaded version.
      views: model name -> what its ``prepare`` hook returned (only for hooked models).
    """

    models: Mapping[str, LoadedModel]
    views: Mapping[str, Any]

    def versions(self) -> dict[str, int]:
        return {name: model.version for name, model in self.models.items()}


class ModelStore:
    """Loads the newest good version of each model of a serving directory.

    Args:
      serving_dir: the Pusher's serving directory (``<serving_dir>/<name>/<version>/``).
      names: the model names to serve.
      prepare: model name -> hook run on each newly loaded version of that model.
    """

    def __init__(
        self,
        serving_dir: str | os.PathLike,
        names: Iterable[str] = MODEL_NAMES,
        prepare: Mapping[str, Prepare] | None = None,
    ):
        self.serving_dir = Path(serving_dir)
        self.names = tuple(names)
        self._prepare = dict(prepare or {})
        self._snapshot = Snapshot({}, {})
        self._bad: dict[tuple[str, int], tuple] = {}  # (name, version) -> file fingerprint
        self._poll_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def snapshot(self) -> Snapshot:
        """The current snapshot; read it once per request and use only that one."""
        return self._snapshot

    @property
    def skipped(self) -> dict[tuple[str, int], tuple]:
        """``(name, version)`` -> fingerprint of each version that failed to load; it is
        retried only once its files change."""
        return dict(self._bad)

    def poll(self) -> list[tuple[str, int]]:
        """Loads the models whose newest good version is not the one served, then swaps.

        Returns:
          ``(name, version)`` of each model that switched version (empty if none did).
        """
        with self._poll_lock:  # the poller thread and an explicit poll() never interleave
            current = self._snapshot
            models, views = dict(current.models), dict(current.views)
            switched = []
            for name in self.names:
                loaded = self._load_newest(name, current.models.get(name))
                if loaded is not None:
                    models[name], view = loaded
                    if name in self._prepare:
                        views[name] = view
                    switched.append((name, models[name].version))
            if switched:
                self._snapshot = Snapshot(models, views)  # the one atomic swap
                log.info("now serving %s", ", ".join(f"{n} v{v}" for n, v in switched))
            return switched

    def start(self, interval_seconds: float) -> None:
        """Polls every ``interval_seconds`` in a daemon thread until :meth:`stop`."""
        if self._thread is not None:
            raise RuntimeError("the store is already polling")
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._poll_forever, args=(interval_seconds,), name="model-poller", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stops the polling thread (a load in progress finishes first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _poll_forever(self, interval_seconds: float) -> None:
        while not self._stop.wait(interval_seconds):
            try:
                self.poll()
            except Exception:  # a poll must never kill the poller; the next one may succeed
                log.exception("polling %s failed", self.serving_dir)

    def _load_newest(self, name: str, served: LoadedModel | None) -> tuple[LoadedModel, Any] | None:
        """The newest version that loads, unless that is ``served``; None keeps ``served``.

        Versions are tried newest first, so a bad newest version falls back to the next
        one down; ``served`` is kept when nothing newer loads (or it was deleted and
        nothing else does).
        """
        base = self.serving_dir / name
        for version in reversed(list_versions(base)):
            if served is not None and version == served.version:
                return None
            path = base / str(version)
            fingerprint = _fingerprint(path)
            if self._bad.get((name, version)) == fingerprint:
                continue
            try:
                model = tf_serving.load_model(name, version, path)
                view = self._prepare[name](model) if name in self._prepare else None
            except Exception as err:  # any failure means this version cannot serve
                self._bad[(name, version)] = fingerprint
                log.error("skipping %s version %d (%s): %s", name, version, path, _brief(err))
                continue
            log.info("loaded %s version %d from %s", name, version, path)
            return model, view
        return None


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
