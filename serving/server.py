"""The HTTP layer of ``movierec serve``: TF Serving's REST API plus the product endpoints.

``serving.commands`` calls :func:`make_server` and ``serve_forever``; tests and the
benchmark do the same on port 0. :class:`App` routes a parsed request to
``serving.tf_serving`` and ``serving.service`` and turns their :class:`ApiError` into
``{"error": message}``; the request handler only reads the body and writes the response.

Threading: the stdlib ``ThreadingHTTPServer``, a thread per connection with HTTP/1.1
keep-alive. Model calls release the GIL while TensorFlow runs, so concurrent requests
overlap on both cores. Each request reads :attr:`ModelStore.snapshot` once, so a reload
swapping the snapshot never changes the models under a request in flight.
"""

import json
import logging
import re
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from serving import names, openapi, service, tf_serving, validation
from serving.errors import ApiError, bad_request, not_found
from serving.store import ModelStore

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
_MAX_DRAINED_BYTES = 16 << 20

# /v1/models/{name}[/versions/{version}][/metadata | :{verb}], TF Serving's paths.
_MODEL_PATH = re.compile(
    r"/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?"
    r"(?:(?P<metadata>/metadata)|:(?P<verb>[^/:]*))?"
)
_SIMILAR_PATH = re.compile(r"/v1/movies/(?P<movie_id>[^/]+)/similar")
_TF_SERVING_VERBS_NOT_SERVED = ("classify", "regress")

Response = tuple[int, Any, dict[str, str]]


class App:
    """Answers requests from the models of a :class:`ModelStore`; knows no sockets.

    Args:
      store: the models; each request reads ``store.snapshot`` once.
    """

    def __init__(self, store: ModelStore):
        self.store = store

    def handle(self, method: str, target: str, body: bytes) -> Response:
        """One request -> ``(status, JSON-able payload, extra headers)``; never raises."""
        try:
            return self._route(method, target, body)
        except ApiError as err:
            return err.status, {"error": err.message}, err.headers
        except Exception:  # a bug, not the client's fault: log it, answer 500
            log.exception("%s %s failed", method, target)
            return 500, {"error": "internal server error"}, {}

    def _route(self, method: str, target: str, body: bytes) -> Response:
        split = urllib.parse.urlsplit(target)
        path = split.path
        snapshot = self.store.snapshot
        if path == "/healthz":
            _allow(method, "GET")
            return 200, {"status": "ok"}, {}
        if path == "/readyz":
            _allow(method, "GET")
            return _readiness(snapshot)
        if path == "/openapi.json":
            _allow(method, "GET")
            return 200, openapi.build_spec(snapshot), {}
        if path == "/v1/recommend":
            _allow(method, "POST")
            product = service.product_of(snapshot)
            args = validation.parse_recommend(_json(body), product.retrieval.k)
            return 200, service.recommend(product, *args), {}
        if path == "/v1/rate":
            _allow(method, "POST")
            product = service.product_of(snapshot)
            return 200, service.rate(product, *validation.parse_rate(_json(body))), {}
        match = _SIMILAR_PATH.fullmatch(path)
        if match:
            _allow(method, "GET")
            product = service.product_of(snapshot)
            movie_id, k = validation.parse_similar(match["movie_id"], split.query)
            return 200, service.similar(product, movie_id, k), {}
        match = _MODEL_PATH.fullmatch(path)
        if match:
            return _tf_serving(method, match, snapshot.models, body)
        raise not_found(f"no endpoint {path!r}; see /openapi.json")


def _tf_serving(method: str, match: re.Match, models, body: bytes) -> Response:
    name = urllib.parse.unquote(match["name"])
    version = tf_serving.parse_version(match["version"])
    verb = match["verb"]
    if verb is None:
        _allow(method, "GET")
        model = tf_serving.find_model(models, name, version)
        if match["metadata"]:
            return 200, tf_serving.model_metadata(model), {}
        return 200, tf_serving.model_status(model), {}
    if verb in _TF_SERVING_VERBS_NOT_SERVED:
        raise ApiError(501, f":{verb} is not served here; use :predict")
    if verb != "predict":
        raise not_found(f"unknown verb :{verb}; TF Serving's REST API has :predict")
    _allow(method, "POST")
    model = tf_serving.find_model(models, name, version)
    return 200, tf_serving.predict(model, _json(body)), {}


def _readiness(snapshot) -> Response:
    versions = snapshot.versions()
    missing = [name for name in (names.RETRIEVAL, names.RANKING) if name not in snapshot.views]
    if missing:
        return 503, {"error": f"not ready: no {', '.join(missing)} model loaded"}, {}
    return 200, {"status": "ready", "model_versions": versions}, {}


def _allow(method: str, allowed: str) -> None:
    if method != allowed:
        raise ApiError(405, f"use {allowed} here, not {method}", {"Allow": allowed})


def _json(body: bytes) -> Any:
    if not body:
        raise bad_request("the request needs a JSON body")
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise bad_request(f"the body is not UTF-8: {err.reason} at byte {err.start}") from err
    except json.JSONDecodeError as err:
        where = f"line {err.lineno} column {err.colno}"
        raise bad_request(f"malformed JSON: {err.msg} at {where}") from err
    except RecursionError as err:
        raise bad_request("malformed JSON: nested too deeply") from err


class _Handler(BaseHTTPRequestHandler):
    """Reads a request's body (at most 1 MB) and writes the :class:`App`'s JSON answer."""

    protocol_version = "HTTP/1.1"  # keep-alive: load generators and clients reuse sockets
    server_version = "movierec"
    disable_nagle_algorithm = True  # small JSON answers must not wait for delayed ACKs
    timeout = 60  # an idle keep-alive connection gives its thread back after this

    def _serve(self) -> None:
        try:
            body = self._read_body()
        except ApiError as err:
            self.close_connection = True  # the unread body would be taken for a request
            self._respond(err.status, {"error": err.message}, err.headers)
            return
        status, payload, headers = self.server.app.handle(self.command, self.path, body)
        self._respond(status, payload, headers)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding"):
            raise ApiError(411, "send the body with a Content-Length, not chunked")
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        if not (length.isascii() and length.strip().isdigit()):
            raise bad_request(f"invalid Content-Length {length!r}")
        size = int(length)
        if size > MAX_BODY_BYTES:
            if size <= _MAX_DRAINED_BYTES:
                # Read it away: a client still sending when the socket closes gets a reset
                # instead of the 413.
                _discard(self.rfile, size)
            raise ApiError(413, f"the body has {int(length)} bytes; at most {MAX_BODY_BYTES}")
        return self.rfile.read(size)

    def _respond(self, status: int, payload: Any, headers: dict[str, str]) -> None:
        # TF Serving writes NaN and Infinity as bare tokens; so does json.dumps.
        data = b"" if self.command == "HEAD" else json.dumps(payload).encode("utf-8")
        lines = [
            f"{self.protocol_version} {status} {_phrase(status)}",
            f"Server: {self.server_version}",
            f"Date: {self.date_time_string()}",
            "Content-Type: application/json",
            f"Content-Length: {len(data)}",
            *(f"{key}: {value}" for key, value in headers.items()),
        ]
        if self.close_connection:
            lines.append("Connection: close")
        # One write per response: headers and body in one packet.
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data)

    def send_error(self, code, message=None, explain=None):
        """The base class's errors (bad request line, URI too long), as JSON."""
        self.close_connection = True
        self._respond(code, {"error": message or _phrase(code)}, {})

    def log_message(self, format, *args):  # noqa: A002 (the base class names it so)
        log.debug("%s %s", self.address_string(), format % args)


class Server(ThreadingHTTPServer):
    """A ``ThreadingHTTPServer`` holding the :class:`App` its handlers call."""

    daemon_threads = True
    block_on_close = False  # idle keep-alive threads must not delay shutdown
    request_queue_size = 128  # c=32 load connects all at once

    def __init__(self, address: tuple[str, int], app: App):
        self.app = app
        super().__init__(address, _Handler)


def make_server(store: ModelStore, host: str = "127.0.0.1", port: int = 8501) -> Server:
    """An HTTP server over ``store`` bound to ``(host, port)`` (port 0 picks a free one).

    Call ``serve_forever()`` on it (in a thread for tests); ``server_address`` has the
    bound port.
    """
    return Server((host, port), App(store))


def _discard(stream, size: int) -> None:
    while size > 0:
        chunk = stream.read(min(size, 1 << 16))
        if not chunk:
            return
        size -= len(chunk)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
