"""movierec serve over HTTP: TF Serving's REST API (shapes from its api_rest.md, errors), the
product endpoints, and requests that must get a 4xx, never a 500."""

import argparse
import base64
import http.client
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from serving import commands, names, service, validation

STATUS_V1 = {
    "model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    ]
}
PAIRS = [{"user_id": "u1", "movie_id": "m2"}, {"user_id": "stranger", "movie_id": "m5"}]


@pytest.fixture(scope="module")
def api(live):
    return live[1]


@pytest.fixture(scope="module")
def ranking(staged):
    return tf.saved_model.load(str(staged.models[names.RANKING]))


def _rating(ranking, pairs) -> np.ndarray:
    fn = ranking.signatures["serving_default"]
    return fn(
        user_id=tf.constant([p["user_id"] for p in pairs]),
        movie_id=tf.constant([p["movie_id"] for p in pairs]),
    )["rating"].numpy()


def test_model_status_is_tf_servings(api):
    for name in names.MODEL_NAMES:
        assert api.get(f"/v1/models/{name}") == (200, STATUS_V1)
        assert api.get(f"/v1/models/{name}/versions/1") == (200, STATUS_V1)
    assert api.get("/v1/models/ranking/versions/2") == (
        404,
        {"error": "Servable not found for request: Specific(ranking, 2)"},
    )
    assert api.get("/v1/models/nope") == (
        404,
        {"error": "Servable not found for request: Latest(nope)"},
    )
    status, body = api.get("/v1/models/ranking/versions/one")
    assert status == 400 and "non-negative integer" in body["error"]


def test_metadata_describes_every_signature(api, ranking, staged):
    status, body = api.get("/v1/models/ranking/metadata")
    assert status == 200
    assert body["model_spec"] == {"name": "ranking", "signature_name": "", "version": "1"}
    defs = body["metadata"]["signature_def"]["signature_def"]
    assert set(defs) == {*ranking.signatures, "__saved_model_init_op"}
    dtypes = {tf.string: "DT_STRING", tf.float32: "DT_FLOAT"}

    def shape(spec):
        dims = [{"size": str(-1 if d is None else d), "name": ""} for d in spec.shape]
        return {"dim": dims, "unknown_rank": False}

    for name, fn in ranking.signatures.items():
        inputs = fn.structured_input_signature[1]
        assert {k: (v["dtype"], v["tensor_shape"]) for k, v in defs[name]["inputs"].items()} == {
            k: (dtypes[spec.dtype], shape(spec)) for k, spec in inputs.items()
        }
        assert set(defs[name]["outputs"]) == set(fn.structured_outputs)
        assert defs[name]["method_name"] == "tensorflow/serving/predict"
    assert defs["serving_default"]["outputs"]["rating"]["dtype"] == "DT_FLOAT"
    status, body = api.get("/v1/models/retrieval/versions/1/metadata")
    outputs = body["metadata"]["signature_def"]["signature_def"]["serving_default"]["outputs"]
    assert {k: v["dtype"] for k, v in outputs.items()} == {
        "scores": "DT_FLOAT",
        "movie_ids": "DT_STRING",
        "titles": "DT_STRING",
        "known_user": "DT_BOOL",
    }


def test_predict_row_and_columnar_formats(api, ranking):
    expected = _rating(ranking, PAIRS)
    status, body = api.post("/v1/models/ranking:predict", {"instances": PAIRS})
    assert status == 200 and set(body) == {"predictions"}
    np.testing.assert_allclose(body["predictions"], expected, rtol=1e-6)
    columns = {k: [p[k] for p in PAIRS] for k in ("user_id", "movie_id")}
    status, body = api.post("/v1/models/ranking/versions/1:predict", {"inputs": columns})
    assert status == 200 and set(body) == {"outputs"}
    np.testing.assert_allclose(body["outputs"], expected, rtol=1e-6)


def test_predict_single_input_and_several_outputs(api, ranking):
    users = ["u1", "stranger"]
    direct = ranking.signatures["user_embedding"](user_id=tf.constant(users))
    request = {"signature_name": "user_embedding", "instances": users}  # bare values
    status, body = api.post("/v1/models/ranking:predict", request)
    assert status == 200
    assert [row["known"] for row in body["predictions"]] == [True, False]
    np.testing.assert_allclose(
        [row["embedding"] for row in body["predictions"]], direct["embedding"], rtol=1e-6
    )
    status, body = api.post(
        "/v1/models/ranking:predict", {"signature_name": "user_embedding", "inputs": users}
    )
    assert status == 200 and body["outputs"]["known"] == [True, False]
    np.testing.assert_allclose(body["outputs"]["embedding"], direct["embedding"], rtol=1e-6)


def test_predict_retrieval_and_binary_examples(api, ranking, staged):
    status, body = api.post("/v1/models/retrieval:predict", {"instances": ["u2"]})
    (row,) = body["predictions"]
    assert status == 200 and len(row["movie_ids"]) == 30 and row["known_user"] is True
    assert row["titles"] == [staged.titles[m] for m in row["movie_ids"]]
    assert not staged.seen["u2"] & set(row["movie_ids"])
    examples = [
        tf.train.Example(
            features=tf.train.Features(
                feature={
                    k: tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode()]))
                    for k, v in pair.items()
                }
            )
        ).SerializeToString()
        for pair in PAIRS
    ]
    request = {
        "signature_name": "serving_examples",
        "instances": [{"b64": base64.b64encode(e).decode()} for e in examples],
    }
    status, body = api.post("/v1/models/ranking:predict", request)
    assert status == 200
    np.testing.assert_allclose(body["predictions"], _rating(ranking, PAIRS), rtol=1e-6)


@pytest.mark.parametrize(
    "body, message",
    [
        ({"instances": PAIRS, "inputs": {}}, "Not allowed to have both"),
        ({"signature_name": "serving_default"}, "Missing 'instances' or 'inputs'"),
        ({"instances": []}, "'instances' must be a non-empty list"),
        ({"instances": "u1"}, "'instances' must be a non-empty list"),
        ({"signature_name": "nope", "instances": PAIRS}, 'signature name: "nope" not found'),
        ({"signature_name": 3, "instances": PAIRS}, "'signature_name' must be a string"),
        ({"instances": [{"user_id": 5, "movie_id": "m1"}]}, "not of expected type string"),
        ({"instances": [{"user_id": "u1"}]}, "expected exactly ['movie_id', 'user_id']"),
        ({"instances": ["u1"]}, "must be an object keyed by them"),
        ({"inputs": ["u1"]}, "'inputs' must name them"),
        ({"inputs": {"user_id": [["u1"], ["u2", "u3"]], "movie_id": ["m1"]}}, "is ragged"),
        ({"inputs": {"user_id": [["u1"]], "movie_id": [["m1"]]}}, "has shape [1, 1]"),
        ({"inputs": {"user_id": [], "movie_id": []}}, "is empty"),
        ({"signature_name": "serving_examples", "instances": [{"b64": "%%"}]}, "invalid base64"),
        ({"signature_name": "serving_examples", "instances": [{"b64": "AAEC"}]}, "xample"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_predict_rejects_bad_requests(api, body, message):
    status, answer = api.post("/v1/models/ranking:predict", body)
    assert status == 400
    assert message in answer["error"]


def test_verbs_paths_and_methods(api):
    assert api.post("/v1/models/ranking:classify", {})[0] == 501
    assert api.post("/v1/models/ranking:explain", {})[0] == 404
    assert api.post("/v1/models/nope:predict", {"instances": ["x"]}) == (
        404,
        {"error": "Servable not found for request: Latest(nope)"},
    )
    assert api.get("/v1/nothing")[0] == 404
    conn = http.client.HTTPConnection(api.host, api.port, timeout=30)
    conn.request("GET", "/v1/models/ranking:predict")
    response = conn.getresponse()
    assert response.status == 405 and response.getheader("Allow") == "POST"
    assert "use POST" in json.loads(response.read())["error"]
    conn.close()


def test_recommend_similar_rate_over_http(api, product):
    status, body = api.post("/v1/recommend", {"user_id": "u4", "k": 5})
    assert (status, body) == (200, service.recommend(product, "u4", 5))
    status, body = api.post("/v1/recommend", {"user_id": "nobody", "exclude_seen": False})
    assert status == 200 and body["fallback"] == "popularity"
    assert len(body["recommendations"]) == validation.DEFAULT_K
    assert api.get("/v1/movies/m3/similar?k=4") == (200, service.similar(product, "m3", 4))
    assert api.get("/v1/movies/m3/similar")[1]["title"] == "Amélie (2001)"
    rate = {"user_id": "u4", "movie_id": "m9"}
    assert api.post("/v1/rate", rate) == (200, service.rate(product, "u4", "m9"))


@pytest.mark.parametrize(
    "method, path, raw, status, message",
    [
        ("POST", "/v1/recommend", b'{"user_id": "u1",', 400, "malformed JSON"),
        ("POST", "/v1/recommend", b"\xff\xfe{}", 400, "not UTF-8"),
        ("POST", "/v1/recommend", b"", 400, "needs a JSON body"),
        ("POST", "/v1/recommend", b"[" * 100_000, 400, "nested too deeply"),
        ("POST", "/v1/recommend", b'{"user_id": 1}', 400, "must be a string"),
        ("POST", "/v1/recommend", b'{"user_id": "u1", "k": 0}', 400, "between 1 and 30"),
        ("POST", "/v1/recommend", b'{"user_id": "u1", "k": 1e400}', 400, "must be an integer"),
        ("POST", "/v1/recommend", b'{"user": "u1"}', 400, "unknown field(s) ['user']"),
        ("POST", "/v1/rate", b'{"user_id": "u1"}', 400, "missing required field 'movie_id'"),
        ("POST", "/v1/rate", b'{"user_id": "u1", "movie_id": "m%"}', 404, "unknown movie 'm%'"),
        ("GET", "/v1/movies/zz%2Fz/similar", None, 404, "unknown movie 'zz/z'"),
        ("GET", "/v1/movies/m121/similar", None, 404, "no ratings in training"),
        ("GET", "/v1/movies/m1/similar?k=0", None, 400, "between 1 and 100"),
        ("GET", "/v1/movies/m1/similar?k=ten", None, 400, "one positive integer"),
        ("DELETE", "/v1/recommend", None, 405, "use POST"),
    ],
)
def test_bad_product_requests_get_4xx(api, method, path, raw, status, message):
    got, body = api.request(method, path, raw=raw)
    assert got == status
    assert message in body["error"]


def test_oversized_body_gets_413_and_chunked_411(api):
    big = b'{"user_id": "' + b"x" * (1 << 20) + b'"}'
    status, body = api.request("POST", "/v1/recommend", raw=big)
    assert status == 413 and "at most 1048576" in body["error"]
    status, body = api.request(
        "POST", "/v1/recommend", raw=b"{}", headers={"Transfer-Encoding": "chunked"}
    )
    assert status == 411


def test_keep_alive_connection_survives_errors(api):
    conn = http.client.HTTPConnection(api.host, api.port, timeout=30)
    answers = []
    for body in (b'{"user_id": 1}', b'{"user_id": "u1", "k": 2}', b"nope"):
        conn.request("POST", "/v1/recommend", body)
        response = conn.getresponse()
        answers.append((response.status, json.loads(response.read())))
        sock = conn.sock
    assert [status for status, _ in answers] == [400, 200, 400]
    assert conn.sock is sock  # one connection served all three
    conn.close()


def test_health_readiness_and_openapi(api):
    assert api.get("/healthz") == (200, {"status": "ok"})
    assert api.get("/readyz") == (
        200,
        {"status": "ready", "model_versions": {name: 1 for name in names.MODEL_NAMES}},
    )
    status, spec = api.get("/openapi.json")
    assert status == 200 and spec["openapi"].startswith("3.")
    prefixes = ("/v1/models/{name}", "/v1/models/{name}/versions/{version}")
    assert set(spec["paths"]) == {
        "/healthz",
        "/readyz",
        "/openapi.json",
        "/v1/recommend",
        "/v1/rate",
        "/v1/movies/{movie_id}/similar",
        *(f"{p}{suffix}" for p in prefixes for suffix in ("", "/metadata", ":predict")),
    }
    recommend = spec["paths"]["/v1/recommend"]["post"]["requestBody"]["content"]
    assert recommend["application/json"]["schema"]["properties"]["k"]["maximum"] == 30


def test_not_ready_without_models(tmp_path, start_server):
    _, client = start_server(tmp_path)
    status, body = client.get("/readyz")
    assert status == 503 and "no retrieval, ranking model loaded" in body["error"]
    assert client.post("/v1/recommend", {"user_id": "u1"})[0] == 503
    assert client.get("/v1/models/ranking")[0] == 404
    assert client.get("/healthz") == (200, {"status": "ok"})


def test_serve_command_serves_in_one_process_until_sigterm(serving_dir):
    proc = subprocess.Popen(
        [sys.executable, "-m", "serving.commands", "serve", "--serving-dir", str(serving_dir)]
        + ["--port", "0", "--poll-seconds", "0.5", "--recycle-after-reloads", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    try:
        line = proc.stdout.readline()
        host, port = re.search(r"http://([0-9.]+):([0-9]+) ", line).groups()
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        conn.request("POST", "/v1/recommend", json.dumps({"user_id": "u1", "k": 3}))
        response = conn.getresponse()
        assert response.status == 200
        assert len(json.loads(response.read())["recommendations"]) == 3
        conn.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()


def test_serve_flags_and_defaults(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    commands.add_serve_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve"])
    assert (args.serving_dir, args.host, args.port, args.poll_seconds) == (
        None,
        "127.0.0.1",
        8501,
        2.0,
    )
    args = parser.parse_args(["serve", "--poll-seconds", "0"])
    assert commands.cmd_serve(args, Path(tmp_path)) == 2
    assert "--poll-seconds must be > 0" in capsys.readouterr().err


def test_head_answers_get_endpoints_without_a_body(api):
    # Before: HEAD got 405. Now it is GET without the body, TF Serving's paths included.
    for path in ("/v1/models/ranking", "/v1/models/ranking/metadata", "/v1/movies/m3/similar"):
        conn = http.client.HTTPConnection(api.host, api.port, timeout=30)
        conn.request("GET", path)
        got = conn.getresponse()
        size = len(got.read())
        conn.request("HEAD", path)
        head = conn.getresponse()
        assert (head.status, head.read()) == (got.status, b"")
        assert head.getheader("Content-Length") == str(size)
        conn.close()
    conn = http.client.HTTPConnection(api.host, api.port, timeout=30)
    conn.request("HEAD", "/v1/models/ranking:predict")
    response = conn.getresponse()
    assert response.status == 405 and response.getheader("Allow") == "POST"
    conn.close()
