"""``movierec serve --serving-dir gs://...`` on a Cloud Storage emulator: the real pushed
models pushed to ``gs://``, read back by a fresh process and hot-reloaded under load."""

import json
import os
import subprocess
import sys
from pathlib import Path

from test_hot_reload import assert_no_failure_and_ordered_versions, push_under_load

from publish.serving_dir import open_serving_dir
from serving import bundles, gcs, names, service
from serving.store import ModelStore

REPO = Path(__file__).resolve().parents[2]
MODEL_NAMES = names.MODEL_NAMES

_FRESH_LOAD = """
import json, sys
import tensorflow as tf
from publish.serving_dir import open_serving_dir
from serving.loading import import_scann

import_scann()  # the ScaNN retrieval model's graph uses the Scann>* ops
target = open_serving_dir(sys.argv[1])
out = {}
for name in ("retrieval", "retrieval_brute_force", "ranking"):
    version = target.list_versions(name)[-1]
    local = target.fetch(name, version, f"{sys.argv[2]}/{name}/{version}")
    model = tf.saved_model.load(str(local))
    out[name] = {"version": version, "signatures": sorted(model.signatures)}
ranking = tf.saved_model.load(f"{sys.argv[2]}/ranking/{out['ranking']['version']}")
rating = ranking.signatures["serving_default"](
    user_id=tf.constant(["u1"]), movie_id=tf.constant(["m2"]))
out["rating"] = float(list(rating.values())[0].numpy().reshape(-1)[0])
print(json.dumps(out))
"""


def _push_all(uri: str, staged) -> dict[str, int]:
    target = open_serving_dir(uri)
    versions = {name: target.push(name, staged.models[name])[0] for name in MODEL_NAMES}
    target.write_models_config(MODEL_NAMES)
    prints = {name: bundles.fingerprints(staged.models[name]) for name in MODEL_NAMES}
    target.write_bundle(versions, prints)  # last, as the Pusher does
    return versions


def test_a_push_to_gs_is_read_by_a_fresh_process_and_by_the_model_store(
    staged, gcs_bucket, tmp_path
):
    uri = f"gs://{gcs_bucket}/serving"
    assert _push_all(uri, staged) == dict.fromkeys(MODEL_NAMES, 1)

    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", _FRESH_LOAD, uri, str(tmp_path / "fresh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    for name in MODEL_NAMES:
        assert out[name]["version"] == 1
    assert names.SIG_INCLUDING_SEEN in out[names.RETRIEVAL]["signatures"]
    assert names.SIG_RERANK in out[names.RANKING]["signatures"]
    assert 0.0 < out["rating"] < 6.0

    store = service.open_store(uri)
    assert store.poll() == [(name, 1) for name in MODEL_NAMES]
    assert store.snapshot.bundle == 1
    status = store.status()
    assert status["serving_dir"] == uri and status["problem"] is None
    assert {n: m["state"] for n, m in status["models"].items()} == dict.fromkeys(
        MODEL_NAMES, "serving"
    )
    product = service.product_of(store.snapshot)
    user = next(iter(staged.seen))
    answer = service.recommend(product, user, k=5)
    assert len(answer["recommendations"]) == 5
    assert not {r["movie_id"] for r in answer["recommendations"]} & staged.seen[user]


def test_a_missing_bucket_is_a_problem_the_store_reports(gcs_bucket, tmp_path):
    store = ModelStore(f"gs://no-such-bucket-{gcs_bucket}/serving", cache_dir=tmp_path)
    assert store.poll() == []
    status = store.status()
    assert status["problem"] == (
        f"serving directory gs://no-such-bucket-{gcs_bucket}/serving: bucket "
        f"no-such-bucket-{gcs_bucket} does not exist"
    )
    assert all(m["state"] != "serving" for m in status["models"].values())


def test_serving_from_gs_hot_reloads_a_new_push_under_load_without_a_failed_request(
    staged, gcs_bucket, start_server
):
    uri = f"gs://{gcs_bucket}/serving"
    _push_all(uri, staged)
    store, client = start_server(uri, poll_seconds=0.2)
    assert store.source == uri
    pushed = {}
    results = push_under_load(client, lambda: pushed.update(_push_all(uri, staged)))
    assert pushed == dict.fromkeys(MODEL_NAMES, 2)
    assert_no_failure_and_ordered_versions(results)
    assert store.snapshot.bundle == 2
    # The mirror holds complete versions only, each downloaded once.
    assert sorted(p.name for p in (store.serving_dir / names.RANKING).iterdir()) == ["1", "2"]
    assert gcs.list_complete_versions(f"{uri}/{names.RANKING}") == [1, 2]
