"""Fault isolation in the model store: a model whose versions cannot be listed or loaded
never stops the others, temporary load failures are retried with backoff, permanent ones
once their files change, each state change is logged once, and ``status()`` says why."""

import errno
import logging
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from publish import push
from serving import names, service, store, tf_serving

RETRIEVAL, RANKING = names.RETRIEVAL, names.RANKING
PRODUCT = (RETRIEVAL, RANKING)
PREPARE = {RETRIEVAL: service.RetrievalView.build, RANKING: service.RankingView.build}


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def served(serving_dir, tmp_path):
    """A copy of the session's serving directory (version 1 of each model) to push into."""
    path = tmp_path / "serving"
    shutil.copytree(serving_dir, path)
    return path


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def loads(monkeypatch):
    """``(name, version)`` of every ``tf_serving.load_model`` call, and a way to make the
    next calls for one version raise: ``loads.fail((name, version), err, times)``."""

    class Loads(list):
        failures: dict = {}

        def fail(self, key, err, times=1):
            self.failures[key] = [err] * times

    calls = Loads()
    calls.failures = {}
    real = tf_serving.load_model

    def load_model(name, version, path):
        calls.append((name, version))
        pending = calls.failures.get((name, version))
        if pending:
            raise pending.pop()
        return real(name, version, path)

    monkeypatch.setattr(tf_serving, "load_model", load_model)
    return calls


def _unlistable(path: Path, monkeypatch):
    """Makes ``path`` unreadable (listing it raises PermissionError); returns the undo.

    Root ignores ``chmod 000``, so as root the listing itself is made to fail instead.
    """
    if os.geteuid() != 0:
        path.chmod(0)
        with pytest.raises(PermissionError):
            os.listdir(path)
        return lambda: path.chmod(0o755)
    real = Path.iterdir

    def iterdir(self):
        if self == path:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    return lambda: monkeypatch.setattr(Path, "iterdir", real)


def _assert_shape(status: dict, model_names) -> None:
    assert set(status) == {
        "serving_dir", "problem", "models", "reload_failures", "bundle", "refused_bundles"
    }  # fmt: skip
    assert status["bundle"] is None or isinstance(status["bundle"], int)
    assert all(isinstance(v, str) for v in status["refused_bundles"].values())
    assert isinstance(status["serving_dir"], str)
    assert status["problem"] is None or isinstance(status["problem"], str)
    assert list(status["models"]) == list(model_names)
    assert set(status["reload_failures"]) == set(model_names)
    for model in status["models"].values():
        assert set(model) == {"version", "state", "reason"}
        assert model["state"] in ("serving", "not_found", "failing")
        assert model["version"] is None or isinstance(model["version"], int)
        assert model["reason"] is None or isinstance(model["reason"], str)


def _records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "serving.store"]


def _messages(caplog, text: str) -> list[str]:
    return [r.getMessage() for r in _records(caplog) if text in r.getMessage()]


def test_an_unlistable_model_does_not_stop_the_others(staged, served, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="serving.store")
    models = store.ModelStore(served, PRODUCT, PREPARE)
    assert models.poll() == [(RETRIEVAL, 1), (RANKING, 1)]
    restore = _unlistable(served / RETRIEVAL, monkeypatch)
    try:
        push.push_atomically(staged.models[RANKING], served / RANKING)  # ranking v2
        assert models.poll() == [(RANKING, 2)]  # in the same poll that cannot list retrieval
        assert models.poll() == [] and models.poll() == [] and models.poll() == []
        failing = _messages(caplog, "cannot list")
        assert len(failing) == 1 and not [r for r in _records(caplog) if r.exc_info]
        assert failing[0].startswith(f"retrieval: cannot list {served / RETRIEVAL}: Permission")
        status = models.status()
        _assert_shape(status, PRODUCT)
        assert status["problem"] is None
        assert status["models"][RANKING] == {"version": 2, "state": "serving", "reason": None}
        retrieval = status["models"][RETRIEVAL]
        assert retrieval["version"] == 1 and retrieval["state"] == "serving"
        assert "cannot list" in retrieval["reason"] and "PermissionError" in retrieval["reason"]
        assert status["reload_failures"] == {RETRIEVAL: 0, RANKING: 0}
        # A store started while it cannot list: retrieval is failing, ranking serves.
        fresh = store.ModelStore(served, PRODUCT)
        assert fresh.poll() == [(RANKING, 2)]
        assert fresh.status()["models"][RETRIEVAL]["state"] == "failing"
        assert "PermissionError" in fresh.status()["models"][RETRIEVAL]["reason"]
    finally:
        restore()
    push.push_atomically(staged.models[RETRIEVAL], served / RETRIEVAL)  # retrieval v2
    assert models.poll() == [(RETRIEVAL, 2)]
    assert models.poll() == []
    assert len(_messages(caplog, "retrieval: listing works again")) == 1
    assert len(_messages(caplog, "cannot list")) == 2  # the fresh store logged its own
    status = models.status()
    assert status["models"][RETRIEVAL] == {"version": 2, "state": "serving", "reason": None}


def test_status_is_safe_to_read_during_a_poll(served):
    models = store.ModelStore(served, PRODUCT, PREPARE)
    seen, done = [], threading.Event()

    def read():
        while not done.is_set():
            seen.append(models.status())
            time.sleep(0.002)  # often enough to meet every phase of the poll, not a GIL hog

    reader = threading.Thread(target=read)
    reader.start()
    try:
        assert models.poll() == [(RETRIEVAL, 1), (RANKING, 1)]
    finally:
        done.set()
        reader.join()
    assert seen
    for status in seen:
        _assert_shape(status, PRODUCT)
        assert all(m["state"] in ("serving", "not_found") for m in status["models"].values())
    assert {m["state"] for m in models.status()["models"].values()} == {"serving"}


def test_a_temporary_failure_is_retried_after_backoff_without_a_change_on_disk(
    staged, served, clock, loads, caplog
):
    caplog.set_level(logging.INFO, logger="serving.store")
    models = store.ModelStore(served, (RANKING,), PREPARE, clock=clock)
    assert models.poll() == [(RANKING, 1)]
    _, v2 = push.push_atomically(staged.models[RANKING], served / RANKING)
    stat = (v2 / "saved_model.pb").stat()
    loads.fail((RANKING, 2), OSError(errno.EMFILE, "Too many open files"), times=2)
    assert models.poll() == [] and loads.count((RANKING, 2)) == 1
    status = models.status()
    _assert_shape(status, (RANKING,))
    ranking = status["models"][RANKING]
    assert ranking["version"] == 1 and ranking["state"] == "serving"
    assert "version 2" in ranking["reason"] and "Too many open files" in ranking["reason"]
    assert "temporary" in ranking["reason"]
    assert status["reload_failures"] == {RANKING: 1}
    assert list(models.skipped) == [(RANKING, 2)]
    clock.now += 0.9  # within the first backoff (1 s): not retried
    assert models.poll() == [] and loads.count((RANKING, 2)) == 1
    clock.now += 0.1
    assert models.poll() == [] and loads.count((RANKING, 2)) == 2  # fails again: 2 s now
    clock.now += 1.9
    assert models.poll() == [] and loads.count((RANKING, 2)) == 2
    clock.now += 0.1
    assert models.poll() == [(RANKING, 2)] and loads.count((RANKING, 2)) == 3
    assert (v2 / "saved_model.pb").stat().st_mtime_ns == stat.st_mtime_ns  # not touched
    skips = [r for r in _records(caplog) if r.getMessage().startswith("skipping")]
    assert len(skips) == 1 and skips[0].levelno == logging.WARNING
    assert skips[0].args[:2] == (RANKING, 2)
    assert "Too many open files" in skips[0].getMessage()
    assert len(_messages(caplog, "version 2 from")) == 1
    assert "after 2 failed attempt(s)" in _messages(caplog, "version 2 from")[0]
    status = models.status()
    assert status["models"][RANKING] == {"version": 2, "state": "serving", "reason": None}
    assert status["reload_failures"] == {RANKING: 2} and models.skipped == {}


@pytest.mark.parametrize(
    "err",
    [
        OSError(errno.EMFILE, "Too many open files"),
        OSError(errno.ENFILE, "Too many open files in system"),
        OSError(errno.ENOMEM, "Cannot allocate memory"),
        PermissionError(errno.EACCES, "Permission denied"),
        MemoryError(),
    ],
    ids=lambda err: type(err).__name__ + (f"-{errno.errorcode[err.errno]}" if err.args else ""),
)
def test_backoff_doubles_up_to_a_cap(served, clock, monkeypatch, caplog, err):
    caplog.set_level(logging.INFO, logger="serving.store")
    attempts = []

    def failing(name, version, path):
        attempts.append(clock.now)
        raise err

    monkeypatch.setattr(tf_serving, "load_model", failing)
    models = store.ModelStore(served, (RANKING,), clock=clock)
    for _ in range(400):  # 200 s of polls every half second
        models.poll()
        clock.now += 0.5
    gaps = [b - a for a, b in zip(attempts, attempts[1:], strict=False)]
    assert gaps == [1, 2, 4, 8, 16, 32, 60, 60]
    assert models.status()["reload_failures"] == {RANKING: len(attempts)}
    assert models.status()["models"][RANKING]["state"] == "failing"
    assert len(_messages(caplog, "skipping")) == 1 and not [
        r for r in _records(caplog) if r.exc_info
    ]


def test_a_version_deleted_mid_load_is_forgotten(served, monkeypatch):
    real = tf_serving.load_model

    def vanishing(name, version, path):
        shutil.rmtree(path)
        return real(name, version, path)

    monkeypatch.setattr(tf_serving, "load_model", vanishing)
    models = store.ModelStore(served, (RANKING,))
    assert models.poll() == []
    failure = models.status()["models"][RANKING]
    assert failure["state"] == "failing" and "disappeared" in failure["reason"]
    assert models.poll() == []  # not listed any more
    assert models.status()["models"][RANKING] == {
        "version": None,
        "state": "not_found",
        "reason": None,
    }
    assert models.skipped == {} and models.status()["reload_failures"] == {RANKING: 1}


def test_a_corrupt_saved_model_is_retried_only_once_its_files_change(
    staged, served, tmp_path, clock, loads, caplog
):
    caplog.set_level(logging.INFO, logger="serving.store")
    models = store.ModelStore(served, (RANKING,), PREPARE, clock=clock)
    assert models.poll() == [(RANKING, 1)]
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "saved_model.pb").write_bytes(b"\x00 not a SavedModel")
    _, v2 = push.push_atomically(garbage, served / RANKING)
    assert models.poll() == [] and loads.count((RANKING, 2)) == 1
    for _ in range(5):  # an hour later, still not retried
        clock.now += 720
        assert models.poll() == []
    assert loads.count((RANKING, 2)) == 1
    status = models.status()
    ranking = status["models"][RANKING]
    assert ranking["version"] == 1 and ranking["state"] == "serving"
    assert "version 2 failed to load" in ranking["reason"]
    assert "temporary" not in ranking["reason"]
    assert status["reload_failures"] == {RANKING: 1}
    skips = [r for r in _records(caplog) if r.getMessage().startswith("skipping")]
    assert len(skips) == 1 and skips[0].levelno == logging.ERROR and not skips[0].exc_info
    shutil.copytree(staged.models[RANKING], v2, dirs_exist_ok=True)  # its files change
    assert models.poll() == [(RANKING, 2)] and loads.count((RANKING, 2)) == 2
    assert models.status()["models"][RANKING] == {"version": 2, "state": "serving", "reason": None}


def test_a_prepare_hook_value_error_is_permanent(served, clock, loads):
    def reject(model):
        raise ValueError(f"{model.name} v{model.version} has no catalogue")

    models = store.ModelStore(served, (RANKING,), {RANKING: reject}, clock=clock)
    assert models.poll() == []
    clock.now += 3600
    assert models.poll() == [] and loads.count((RANKING, 1)) == 1
    status = models.status()
    assert status["models"][RANKING] == {
        "version": None,
        "state": "failing",
        "reason": "version 1 failed to load: ValueError: ranking v1 has no catalogue",
    }
    assert status["reload_failures"] == {RANKING: 1}


def test_an_unexpected_error_polling_one_model_is_isolated(served, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="serving.store")
    real = store.list_versions

    def broken(base):
        if Path(base).name == RETRIEVAL:
            raise RuntimeError("a bug")
        return real(base)

    monkeypatch.setattr(store, "list_versions", broken)
    models = store.ModelStore(served, PRODUCT)
    assert models.poll() == [(RANKING, 1)] and models.poll() == []
    status = models.status()["models"][RETRIEVAL]
    assert status["state"] == "failing" and "RuntimeError: a bug" in status["reason"]
    assert len(_messages(caplog, "RuntimeError")) == 1  # with its traceback, once
    monkeypatch.setattr(store, "list_versions", real)
    assert models.poll() == [(RETRIEVAL, 1)]
    assert len(_messages(caplog, "retrieval: polling works again")) == 1


def test_a_missing_serving_dir_is_the_problem(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="serving.store")
    missing = tmp_path / "serving"
    models = store.ModelStore(missing)
    assert models.poll() == [] and models.poll() == []
    assert models.status() == {
        "serving_dir": str(missing),
        "problem": f"serving directory {missing} does not exist",
        "models": {
            name: {"version": None, "state": "not_found", "reason": None}
            for name in names.MODEL_NAMES
        },
        "reload_failures": dict.fromkeys(names.MODEL_NAMES, 0),
        "bundle": None,
        "refused_bundles": {},
    }
    assert len(_messages(caplog, "does not exist")) == 1
    missing.mkdir()
    assert models.poll() == []
    assert models.status()["problem"] is None
    assert len(_messages(caplog, "readable again")) == 1
    assert {m["state"] for m in models.status()["models"].values()} == {"not_found"}
