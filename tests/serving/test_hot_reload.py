"""Hot reload: a new push is served without failing a request in flight; corrupt and
half-written versions are skipped (logged once) while the previous version keeps serving."""

import http.client
import json
import logging
import shutil
import threading
import time

import pytest

from publish import push
from serving import names, service

MODEL_NAMES = names.MODEL_NAMES


@pytest.fixture
def served(serving_dir, tmp_path):
    """A copy of the session's serving directory (version 1 of each model) to push into."""
    path = tmp_path / "serving"
    shutil.copytree(serving_dir, path)
    return path


def _wait_for(condition, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _versions(client) -> dict[str, str]:
    return {
        name: client.get(f"/v1/models/{name}")[1]["model_version_status"][0]["version"]
        for name in MODEL_NAMES
    }


def _last_version(out: list) -> int | None:
    """The retrieval version of a worker's latest successful answer."""
    for status, body in reversed(list(out)):
        if status == 200:
            return body["model_versions"][names.RETRIEVAL]
    return None


def _hammer(client, path, bodies, stop, results) -> None:
    """Sends requests back to back on one keep-alive connection until ``stop`` is set."""
    conn = http.client.HTTPConnection(client.host, client.port, timeout=60)
    i = 0
    while not stop.is_set():
        try:
            conn.request("POST", path, json.dumps(bodies[i % len(bodies)]))
            response = conn.getresponse()
            results.append((response.status, json.loads(response.read())))
        except (OSError, http.client.HTTPException, ValueError) as err:
            results.append((None, repr(err)))
            conn.close()
        i += 1
    conn.close()


def push_under_load(client, push_new_versions) -> list[list]:
    """Runs 3 ``/v1/recommend`` and 1 ``:predict`` clients back to back, calls
    ``push_new_versions()`` once all answer, waits until every model serves version 2 and
    each recommend client got an answer from it, then stops them.

    Returns:
      Each client's ``(status, body)`` answers; the first three are the recommend clients.
    """
    stop = threading.Event()
    recommend = [{"user_id": f"u{i}", "k": 5} for i in range(10)] + [{"user_id": "new"}]
    predict = [{"instances": [f"u{i}"]} for i in range(10)]
    workers = [("/v1/recommend", recommend)] * 3 + [("/v1/models/retrieval:predict", predict)]
    results = [[] for _ in workers]
    threads = [
        threading.Thread(target=_hammer, args=(client, path, bodies, stop, out))
        for (path, bodies), out in zip(workers, results, strict=True)
    ]
    for t in threads:
        t.start()
    _wait_for(lambda: all(out for out in results))
    push_new_versions()
    _wait_for(lambda: _versions(client) == {name: "2" for name in MODEL_NAMES})
    # Each recommend worker answers from v2 before the load stops; on a busy machine a
    # request started on v1 can still be in flight here.
    _wait_for(lambda: all(_last_version(out) == 2 for out in results[:3]))
    stop.set()
    for t in threads:
        t.join()
    return results


def assert_no_failure_and_ordered_versions(results: list[list]) -> None:
    """No failed answer; each recommend client saw version 1, then only version 2."""
    answers = [answer for out in results for answer in out]
    failures = [answer for answer in answers if answer[0] != 200]
    assert failures == [] and len(answers) > 40
    for out in results[:3]:
        for name in (names.RETRIEVAL, names.RANKING):
            versions = [body["model_versions"][name] for _, body in out]
            assert versions[0] == 1 and versions[-1] == 2 and versions == sorted(versions)
    assert all(len(body["predictions"][0]["movie_ids"]) == 30 for _, body in results[3])


def test_push_under_load_switches_versions_without_a_failed_request(staged, served, start_server):
    _, client = start_server(served, poll_seconds=0.2)

    def push_all():
        for name in MODEL_NAMES:
            push.push_atomically(staged.models[name], served / name)

    assert_no_failure_and_ordered_versions(push_under_load(client, push_all))


def test_corrupt_versions_are_skipped_once_while_the_old_one_serves(
    staged, served, tmp_path, start_server, caplog
):
    caplog.set_level(logging.INFO, logger="serving.store")
    store, client = start_server(served, poll_seconds=0.05)
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "saved_model.pb").write_bytes(b"\x00 not a SavedModel")
    push.push_atomically(garbage, served / names.RANKING)  # ranking v2
    no_variables = tmp_path / "no_variables"
    shutil.copytree(staged.models[names.RETRIEVAL], no_variables)
    shutil.rmtree(no_variables / "variables")
    push.push_atomically(no_variables, served / names.RETRIEVAL)  # retrieval v2
    _wait_for(lambda: len(store.skipped) == 2)
    time.sleep(0.5)  # ten more polls: a known-bad version is not loaded again
    skips = [r for r in caplog.records if r.getMessage().startswith("skipping")]
    assert sorted(r.args[:2] for r in skips) == [(names.RANKING, 2), (names.RETRIEVAL, 2)]
    for record in skips:
        assert str(served / record.args[0] / "2") in record.getMessage()
    assert _versions(client) == {name: "1" for name in MODEL_NAMES}
    status, body = client.post("/v1/recommend", {"user_id": "u1"})
    assert status == 200 and body["model_versions"] == {"retrieval": 1, "ranking": 1}
    # A good version pushed above the bad one is served.
    push.push_atomically(staged.models[names.RANKING], served / names.RANKING)  # ranking v3
    _wait_for(lambda: _versions(client)[names.RANKING] == "3")
    assert _versions(client)[names.RETRIEVAL] == "1"


def test_half_written_version_is_retried_once_complete(staged, served, caplog):
    caplog.set_level(logging.INFO, logger="serving.store")
    store = service.open_store(served)
    assert store.poll() == [(name, 1) for name in MODEL_NAMES]
    # Copied in by hand, not with push_atomically: the directory appears before its files.
    half = served / names.RANKING / "2"
    half.mkdir()
    shutil.copy(staged.models[names.RANKING] / "saved_model.pb", half)
    assert store.poll() == [] and store.poll() == []
    assert list(store.skipped) == [(names.RANKING, 2)]
    assert sum(r.getMessage().startswith("skipping") for r in caplog.records) == 1
    shutil.copytree(staged.models[names.RANKING], half, dirs_exist_ok=True)
    assert store.poll() == [(names.RANKING, 2)]
    assert store.snapshot.views[names.RANKING].model.version == 2
    # Deleting the served version rolls back to the newest one left, as TF Serving does.
    shutil.rmtree(half)
    assert store.poll() == [(names.RANKING, 1)]
