"""``GET /metrics``: Prometheus' text format with request counts and latencies per route
template and status, the model versions served and the reload failures, per server."""

import http.client
import shutil

import pytest
from prometheus_client.parser import text_string_to_metric_families

from publish import push
from serving import names, server


def _scrape(client) -> dict:
    """``{(sample name, sorted label items): value}`` of one scrape."""
    conn = http.client.HTTPConnection(client.host, client.port, timeout=60)
    conn.request("GET", "/metrics")
    response = conn.getresponse()
    text = response.read().decode()
    conn.close()
    assert response.status == 200
    assert response.getheader("Content-Type") == "text/plain; version=0.0.4; charset=utf-8"
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _requests(samples, endpoint, method, status) -> float:
    key = (
        "movierec_http_requests_total",
        (("endpoint", endpoint), ("method", method), ("status", str(status))),
    )
    return samples.get(key, 0.0)


def test_request_counts_and_latencies_per_route_template(serving_dir, start_server):
    _, client = start_server(serving_dir)  # a fresh server: its own registry, from zero
    for user in ("u1", "u2", "u3"):
        assert client.post("/v1/recommend", {"user_id": user, "k": 2})[0] == 200
    assert client.post("/v1/recommend", {"user_id": 1})[0] == 400
    for name in ("ranking", "retrieval"):
        assert client.post(f"/v1/models/{name}:predict", {"instances": ["u1"]})[0] in (200, 400)
    assert client.post("/v1/models/nope:predict", {"instances": ["x"]})[0] == 404
    assert client.get("/v1/models/ranking/versions/1/metadata")[0] == 200
    assert client.get("/v1/movies/m3/similar?k=2")[0] == 200
    assert client.get("/no/such/thing")[0] == 404
    samples = _scrape(client)
    assert _requests(samples, "/v1/recommend", "POST", 200) == 3
    assert _requests(samples, "/v1/recommend", "POST", 400) == 1
    predicted = sum(
        _requests(samples, "/v1/models/{name}:predict", "POST", status) for status in (200, 400)
    )
    assert predicted == 2
    assert _requests(samples, "/v1/models/{name}:predict", "POST", 404) == 1
    assert _requests(samples, "/v1/models/{name}/versions/{version}/metadata", "GET", 200) == 1
    assert _requests(samples, "/v1/movies/{movie_id}/similar", "GET", 200) == 1
    assert _requests(samples, "other", "GET", 404) == 1
    assert not [key for key in samples if ("endpoint", "/v1/models/nope:predict") in key[1]]
    recommend = (("endpoint", "/v1/recommend"), ("method", "POST"))
    assert samples[("movierec_http_request_duration_seconds_count", recommend)] == 4
    assert 0 < samples[("movierec_http_request_duration_seconds_sum", recommend)] < 60
    inf_bucket = (
        "movierec_http_request_duration_seconds_bucket",
        (("endpoint", "/v1/recommend"), ("le", "+Inf"), ("method", "POST")),
    )
    assert samples[inf_bucket] == 4
    # The previous scrape is counted in the next one.
    assert _requests(_scrape(client), "/metrics", "GET", 200) == 1


def test_model_versions_and_server_state(serving_dir, start_server):
    _, client = start_server(serving_dir)
    samples = _scrape(client)
    for name in names.MODEL_NAMES:
        assert samples[("movierec_model_version", (("model", name),))] == 1
    assert samples[("movierec_draining", ())] == 0
    assert samples[("movierec_http_queued_requests", ())] == 0
    assert samples[("movierec_http_open_connections", ())] == 1  # the scrape's own
    assert samples[("movierec_http_busy_workers", ())] == 1  # the scrape itself


def test_reload_failures_counted_per_model(serving_dir, tmp_path, start_server):
    served = tmp_path / "serving"
    shutil.copytree(serving_dir, served)
    store, client = start_server(served)
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "saved_model.pb").write_bytes(b"\x00 not a SavedModel")
    push.push_atomically(garbage, served / names.RANKING)  # ranking v2, corrupt
    store.poll()
    samples = _scrape(client)
    assert samples[("movierec_model_reload_failures_total", (("model", names.RANKING),))] == 1
    failures = {
        dict(labels)["model"]: value
        for (name, labels), value in samples.items()
        if name == "movierec_model_reload_failures_total"
    }
    assert failures.get(names.RETRIEVAL, 0) == 0
    assert samples[("movierec_model_version", (("model", names.RANKING),))] == 1


def test_head_metrics_and_separate_registries(serving_dir, start_server):
    _, first = start_server(serving_dir)
    _, second = start_server(serving_dir)
    assert first.get("/healthz")[0] == 200
    conn = http.client.HTTPConnection(first.host, first.port, timeout=60)
    conn.request("HEAD", "/metrics")
    response = conn.getresponse()
    assert response.status == 200 and response.read() == b""
    assert response.getheader("Content-Type").startswith("text/plain; version=0.0.4")
    conn.close()
    assert _requests(_scrape(first), "/healthz", "GET", 200) == 1
    assert _requests(_scrape(second), "/healthz", "GET", 200) == 0


@pytest.mark.parametrize(
    "target, endpoint",
    [
        ("/healthz", "/healthz"),
        ("/metrics", "/metrics"),
        ("/v1/recommend?x=1", "/v1/recommend"),
        ("/v1/movies/m%2F3/similar?k=2", "/v1/movies/{movie_id}/similar"),
        ("/v1/models/ranking", "/v1/models/{name}"),
        ("/v1/models/x/versions/7", "/v1/models/{name}/versions/{version}"),
        ("/v1/models/x/metadata", "/v1/models/{name}/metadata"),
        ("/v1/models/x/versions/2:predict", "/v1/models/{name}/versions/{version}:predict"),
        ("/v1/models/x:classify", "/v1/models/{name}:classify"),
        ("/v1/models/x:anything", "/v1/models/{name}:{verb}"),
        ("/v1/nothing", "other"),
        ("*", "other"),
    ],
)
def test_route_templates(target, endpoint):
    assert server.App.endpoint_of(target) == endpoint
