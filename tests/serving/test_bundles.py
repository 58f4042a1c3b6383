"""Bundles: the three models pushed together are served together; a model from another
training run, or a manifest its files do not match, is refused, logged and reported while the
previous bundle keeps serving; every response names the bundle."""

import http.client
import json
import logging
import shutil

import pytest

from publish.serving_dir import open_serving_dir
from serving import bundles, names, service

MODEL_NAMES = names.MODEL_NAMES


def push_bundle(serving_dir, models: dict) -> dict:
    """Pushes ``models`` (name -> SavedModel dir) and their bundle, as the Pusher does."""
    target = open_serving_dir(serving_dir)
    versions = {name: target.push(name, models[name])[0] for name in MODEL_NAMES}
    prints = {name: bundles.fingerprints(models[name]) for name in MODEL_NAMES}
    return {"versions": versions, "bundle": target.write_bundle(versions, prints)}


@pytest.fixture
def bundled(staged, tmp_path):
    """A serving directory holding bundle 1 (version 1 of each model)."""
    path = tmp_path / "serving"
    assert push_bundle(path, staged.models) == {
        "versions": dict.fromkeys(MODEL_NAMES, 1),
        "bundle": 1,
    }
    return path


def _get(client, path):
    conn = http.client.HTTPConnection(client.host, client.port, timeout=60)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, json.loads(response.read()), response.getheader(bundles.HEADER)
    finally:
        conn.close()


def test_fingerprints_tie_the_three_models_of_one_run_together(staged, other_run):
    prints = {name: bundles.fingerprints(staged.models[name]) for name in MODEL_NAMES}
    assert len({p["trained"] for p in prints.values()}) == 1
    assert len({p["vocabulary"] for p in prints.values()}) == 1
    assert "catalogue" not in prints[names.RANKING]
    assert prints[names.RETRIEVAL]["catalogue"] == prints[names.RETRIEVAL_BRUTE_FORCE]["catalogue"]
    other = bundles.fingerprints(other_run.models[names.RETRIEVAL])
    assert other["vocabulary"] == prints[names.RETRIEVAL]["vocabulary"]  # the same ids
    assert other["trained"] != prints[names.RETRIEVAL]["trained"]  # another run's weights


def test_the_store_serves_a_bundle_and_every_response_names_it(staged, bundled, start_server):
    store, client = start_server(bundled)
    assert store.snapshot.bundle == 1
    assert store.status()["bundle"] == 1 and store.status()["refused_bundles"] == {}
    status, body, header = _get(client, "/readyz")
    assert (status, body["bundle"], header) == (200, 1, "1")
    assert _get(client, "/v1/models/ranking")[2] == "1"
    status, _, header = _get(client, "/no-such-endpoint")
    assert (status, header) == (404, "1")  # errors too


def test_a_bundle_mixing_training_runs_is_refused_and_the_previous_one_serves(
    staged, other_run, bundled, caplog
):
    mixed = {**staged.models, names.RETRIEVAL: other_run.models[names.RETRIEVAL]}
    assert push_bundle(bundled, mixed)["bundle"] == 2
    store = service.open_store(bundled)
    with caplog.at_level(logging.INFO, logger="serving.store"):
        assert store.poll() == [(name, 1) for name in MODEL_NAMES]
        store.poll()  # the refusal is logged once, not per poll
    assert store.snapshot.bundle == 1
    assert store.snapshot.versions() == dict.fromkeys(MODEL_NAMES, 1)
    refused = store.status()["refused_bundles"]
    assert list(refused) == ["2"]
    assert refused["2"] == (
        "bundle 2: the training runs of ranking v2, retrieval v2, retrieval_brute_force v2 differ"
    )
    assert [r.getMessage() for r in caplog.records].count(
        f"not serving bundle 2: {refused['2']}"
    ) == 1

    # The next consistent push is served whole.
    assert push_bundle(bundled, staged.models)["bundle"] == 3
    assert store.poll() == [(name, 3) for name in MODEL_NAMES]
    assert store.snapshot.bundle == 3 and store.status()["refused_bundles"] == {}


def test_a_model_pushed_alone_is_never_served(staged, other_run, bundled):
    open_serving_dir(bundled).push(names.RETRIEVAL, other_run.models[names.RETRIEVAL])
    store = service.open_store(bundled)
    store.poll()
    assert store.snapshot.versions()[names.RETRIEVAL] == 1  # version 2 is in no bundle
    assert store.snapshot.bundle == 1


def test_a_manifest_its_files_do_not_match_is_refused(staged, other_run, bundled):
    target = open_serving_dir(bundled)
    versions = {name: target.push(name, staged.models[name])[0] for name in MODEL_NAMES}
    prints = {name: bundles.fingerprints(staged.models[name]) for name in MODEL_NAMES}
    prints[names.RANKING] = bundles.fingerprints(other_run.models[names.RANKING])
    assert target.write_bundle(versions, prints) == 2
    store = service.open_store(bundled)
    store.poll()
    assert store.snapshot.bundle == 1
    assert store.status()["refused_bundles"]["2"] == (
        "ranking version 2 does not match bundle 2's manifest (trained differ)"
    )


def test_without_a_servable_bundle_readyz_names_the_refusal(staged, other_run, tmp_path):
    path = tmp_path / "serving"
    push_bundle(path, {**staged.models, names.RANKING: other_run.models[names.RANKING]})
    store = service.open_store(path)
    assert store.poll() == []
    from serving import server

    status, body, _ = server.App(store).handle("GET", "/readyz", b"")
    assert status == 503
    assert body["error"] == (
        "not ready: no retrieval, ranking model loaded; bundle 1 refused: bundle 1: the "
        "training runs of ranking v1, retrieval v1, retrieval_brute_force v1 differ"
    )


def test_a_bundle_naming_a_missing_version_waits_for_it(staged, bundled):
    target = open_serving_dir(bundled)
    prints = {name: bundles.fingerprints(staged.models[name]) for name in MODEL_NAMES}
    assert target.write_bundle(dict.fromkeys(MODEL_NAMES, 2), prints) == 2
    store = service.open_store(bundled)
    store.poll()
    assert store.snapshot.bundle == 1
    assert store.status()["refused_bundles"] == {
        "2": f"bundle 2: retrieval version 2 is not in {bundled / names.RETRIEVAL}"
    }
    for name in MODEL_NAMES:
        shutil.copytree(bundled / name / "1", bundled / name / "2")
    assert store.poll() == [(name, 2) for name in MODEL_NAMES]
    assert store.snapshot.bundle == 2
