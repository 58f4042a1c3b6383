"""No client input gets a 5xx: property-based bodies for every endpoint that reads one.

Calls ``server.App(store).handle`` directly (no sockets, so hundreds of examples take
seconds) over the ``live`` fixture's models. Bodies mix valid requests with what a load
balancer's clients may send: integers of thousands of digits, NaN/Infinity, 1e400, deep
nesting, invalid UTF-8, lone surrogates, ragged lists and wrong types. Every answer must be
below 500, and every 4xx a JSON ``{"error": message}``. Derandomized, so CI sees the same
examples every run; the measured failures are explicit examples.
"""

import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from serving import names, server, tf_serving, validation

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
HUGE = "9" * 5000  # beyond Python's 4,300-digit int limit
DEEP = "[" * 100_000 + "]" * 100_000


@pytest.fixture(scope="module")
def app(live):
    return server.App(live[0])


def _call(app, method: str, path: str, body: bytes) -> tuple[int, object]:
    status, payload, _ = app.handle(method, path, body)
    assert status < 500, (path, body[:300], payload)
    json.dumps(payload)  # the server can write what it answers
    if 400 <= status < 500:
        assert isinstance(payload, dict) and set(payload) == {"error"}, payload
        assert isinstance(payload["error"], str) and payload["error"]
    return status, payload


_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63 - 2, max_value=2**80)
    | st.floats()  # NaN, Infinity and -Infinity included
    | st.text(max_size=6)
    | st.sampled_from(["u1", "u2", "m1", "m3", "\ud800", "", "x" * 300])
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(
        st.sampled_from(["user_id", "movie_id", "movie_ids", "b64", "k"]) | st.text(max_size=3),
        inner,
        max_size=3,
    ),
    max_leaves=12,
)
# Bodies that are not JSON, or JSON this server cannot hold.
_RAW = st.sampled_from(
    [
        b"",
        b"\xff\xfe",
        b'{"user_id": "u1\xc3"}',
        b'{"user_id": "\\ud800"}',
        b'{"user_id": "u1", "k": ' + HUGE.encode() + b"}",
        b'{"user_id": "u1", "k": -' + HUGE.encode() + b"}",
        b'{"user_id": "u1", "k": NaN}',
        b'{"user_id": "u1", "k": Infinity}',
        b'{"user_id": "u1", "k": 1e400}',
        b"NaN",
        b"[" * 70 + b"]" * 70,
        b'{"a": ' * 5000 + b"1" + b"}" * 5000,
        DEEP.encode(),
        b'{"user_id": "u1"',
        b'"\\u12"',
    ]
) | st.binary(max_size=40)


def _body(value) -> bytes:
    return json.dumps(value).encode()  # NaN/Infinity written as bare tokens


def _product(ids):
    return st.fixed_dictionaries(
        {name: st.sampled_from(["u1", "m3", "nobody"]) | _JSON for name in ids},
        optional={
            "k": st.integers(min_value=-5, max_value=200) | _JSON,
            "exclude_seen": st.booleans() | _JSON,
            "extra": _JSON,
        },
    )


@SETTINGS
@given(body=_RAW | _JSON.map(_body) | _product(["user_id"]).map(_body))
@example(body=b'{"user_id": "u1", "k": ' + HUGE.encode() + b"}")
def test_recommend_never_5xx(app, body):
    _call(app, "POST", "/v1/recommend", body)


@SETTINGS
@given(body=_RAW | _JSON.map(_body) | _product(["user_id", "movie_id"]).map(_body))
@example(body=b'{"user_id": ' + HUGE.encode() + b', "movie_id": "m1"}')
def test_rate_never_5xx(app, body):
    _call(app, "POST", "/v1/rate", body)


@SETTINGS
@given(
    movie_id=st.sampled_from(["m3", "m1", "%FF", "%ED%A0%80", "%", "x" * 300, "%00"])
    | st.text(alphabet="abm0123456789%/?#", min_size=1, max_size=8),
    query=st.sampled_from(["", "k=3", "k=0", "k=" + "9" * 50, "k=NaN", "k=1&k=2", "k=%FF"])
    | st.text(max_size=8),
)
def test_similar_never_5xx(app, movie_id, query):
    _call(app, "GET", f"/v1/movies/{movie_id}/similar?{query}", b"")


def _ragged_strings():
    leaf = st.sampled_from(["u1", "m3", "u2"]) | _SCALARS
    return st.recursive(leaf, lambda inner: st.lists(inner, min_size=1, max_size=3), max_leaves=8)


def _predict_bodies(model):
    """Mostly well-formed requests of the model's real signatures, with wrong values."""
    value = _ragged_strings() | _JSON

    def of(signature):
        specs = sorted(model.inputs[signature])
        keyed = st.fixed_dictionaries({name: value for name in specs})
        row = keyed if len(specs) > 1 else keyed | value
        return st.fixed_dictionaries(
            {"signature_name": st.just(signature)},
            optional={"instances": st.lists(row, min_size=1, max_size=4) | value},
        ) | st.fixed_dictionaries({"signature_name": st.just(signature), "inputs": row})

    inputs = sorted({name for specs in model.inputs.values() for name in specs})
    named = st.dictionaries(st.sampled_from(inputs), value, max_size=len(inputs) + 1)
    anything = st.fixed_dictionaries(
        {},
        optional={
            "signature_name": st.sampled_from([*model.signatures, "nope"]) | _SCALARS,
            "instances": st.lists(named | value, max_size=4) | value,
            "inputs": named | value,
        },
    )
    return st.sampled_from(sorted(model.signatures)).flatmap(of) | anything


@pytest.mark.parametrize("name", names.MODEL_NAMES)
def test_predict_never_5xx(app, live, name):
    model = live[0].snapshot.models[name]

    bodies = _predict_bodies(model)

    @settings(SETTINGS, max_examples=100)
    @given(body=st.one_of(_RAW, _JSON.map(_body), bodies.map(_body), bodies.map(_body)))
    def check(body):
        _call(app, "POST", f"/v1/models/{name}:predict", body)

    check()


def _error(app, path: str, body) -> str:
    status, payload = _call(app, "POST", path, body if isinstance(body, bytes) else _body(body))
    assert status == 400, payload
    return payload["error"]


RANK = "/v1/models/ranking:predict"


def test_unrepresentable_json_is_a_400_naming_why(app):
    for path in ("/v1/recommend", "/v1/rate", RANK, "/v1/models/retrieval:predict"):
        assert "an integer of 5000 digits" in _error(app, path, b'{"k": ' + HUGE.encode() + b"}")
        assert "nested too deeply" in _error(app, path, DEEP.encode())
        # Many escaped quotes after an unterminated string: answered at once, not quadratic.
        assert "malformed JSON" in _error(app, path, b"[" * 70 + b'"' + b'\\"' * 300_000)
        assert "not UTF-8" in _error(app, path, b'{"user_id": "\xff"}')
        assert "malformed JSON" in _error(app, path, b"{")
    # NaN and Infinity parse; the product endpoints reject them as their field's wrong type.
    for k in (b"NaN", b"-Infinity", b"1e400"):
        body = b'{"user_id": "u1", "k": ' + k + b"}"
        assert "'k' must be an integer, got a non-finite number" in (
            _error(app, "/v1/recommend", body)
        )
    surrogate = b'{"user_id": "\\ud800", "movie_id": "m1"}'
    assert "'user_id' is not valid Unicode text" in _error(app, "/v1/rate", surrogate)


def test_predict_shapes_and_dtypes_are_checked_before_the_model(app):
    ragged = {"signature_name": "history_embedding", "inputs": [["m1", "m2"], ["m3"]]}
    assert _error(app, RANK, ragged) == (
        "input 'movie_ids' is ragged: row 1 has shape [1] but row 0 has [2]; "
        "every row needs the same shape"
    )
    rows = {"inputs": {"user_id": ["u1", "u2"], "movie_id": ["m1"]}}  # was broadcast: 200
    assert "'inputs' disagree on the number of rows: 'movie_id' has 1, 'user_id' has 2" in (
        _error(app, RANK, rows)
    )
    rerank = {
        "signature_name": "rerank",
        "instances": [
            {"user_id": "u1", "movie_ids": ["m1", "m2"], "retrieval_scores": [1.0, 2.0]},
            {"user_id": "u2", "movie_ids": ["m1"], "retrieval_scores": [1.0, 2.0]},
        ],
    }
    assert "input 'movie_ids' is ragged: row 1 has shape [1] but row 0 has [2]" in (
        _error(app, RANK, rerank)
    )
    big = dict(rerank, instances=[dict(rerank["instances"][0], retrieval_scores=[1e39, 1.0])])
    assert "input 'retrieval_scores': 1e+39 is out of range for float32" in _error(app, RANK, big)
    huge = _body(big).replace(b"1e+39", b"-1e400")  # beyond a double, not the Infinity token
    assert "input 'retrieval_scores': -1e400 is out of range for float32" in _error(app, RANK, huge)
    wide = {"instances": [{"user_id": 2**70, "movie_id": "m1"}]}
    assert "input 'user_id': a JSON int is not of expected type string" in _error(app, RANK, wide)
    # NaN and Infinity are TF Serving's float values: accepted.
    nan = dict(big, instances=[dict(big["instances"][0], retrieval_scores=[float("nan"), 1.0])])
    assert _call(app, "POST", RANK, _body(nan))[0] == 200


@pytest.mark.parametrize("name", names.MODEL_NAMES)
def test_rows_per_predict_are_capped_per_model(app, name):
    cap = tf_serving.MAX_ROWS[name]
    path = f"/v1/models/{name}:predict"
    users = [f"u{i % 40}" for i in range(cap + 1)]
    request = {"signature_name": "user_embedding" if name == names.RANKING else "serving_default"}
    status, payload = _call(app, "POST", path, _body({**request, "instances": users[:cap]}))
    assert status == 200 and len(payload["predictions"]) == cap
    for key in ("instances", "inputs"):
        message = _error(app, path, {**request, key: users})
        assert f"has {cap + 1} rows; this model takes at most {cap} per request" in message


def test_answers_are_capped(app, monkeypatch):
    monkeypatch.setattr(tf_serving, "MAX_RESPONSE_BYTES", 10_000)
    path = "/v1/models/retrieval:predict"
    message = _error(app, path, {"instances": ["u1"] * 50})
    assert "the answer would have about" in message and "at most 10000" in message
    assert _call(app, "POST", path, _body({"instances": ["u1"]}))[0] == 200


def test_limits_are_documented(live):
    from serving import openapi

    text = openapi.build_spec(live[0].snapshot)["components"]["schemas"]["PredictRequest"]
    assert "100 rows for retrieval" in text["description"]
    assert f"at most {validation.MAX_INT_DIGITS} digits" in text["description"]
