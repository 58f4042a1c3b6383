"""The HTTP layer of ``movierec serve``: TF Serving's REST API plus the product endpoints.

``serving.commands`` calls :func:`make_server`, ``serve_forever`` and, on SIGTERM/SIGINT,
:meth:`Server.drain`; tests and the benchmark do the same on port 0. :class:`App` routes a
parsed request to ``serving.tf_serving`` and ``serving.service`` and turns their
:class:`ApiError` into ``{"error": message}``; the request handler reads the request and
writes the response. GET endpoints answer HEAD too (same status and headers, no body);
``GET /metrics`` is Prometheus' text format (``serving.metrics``).

Threading, bounded everywhere (:class:`Limits`):

* a thread per open connection (HTTP/1.1 keep-alive), at most ``max_connections``; the
  accepting thread answers a connection beyond that 503 (``Retry-After``) itself and closes
  it, spawning nothing;
* each connection thread reads a request under a deadline of ``read_timeout`` seconds from
  its first byte to the end of its body (a slowloris client sending a byte a second gets a
  408 and is closed); an idle keep-alive connection is closed after ``idle_timeout``;
* ``App.handle`` runs on a pool of ``workers`` daemon threads fed by a queue of at most
  ``queue`` requests; a request finding the queue full gets 503 with ``Retry-After`` at
  once. Model calls release the GIL while TensorFlow runs, so workers overlap on both cores;
* a request not answered ``request_timeout`` seconds after it was read (queue wait
  included) gets 504 ``{"error": "deadline exceeded ..."}``, as TF Serving maps
  DEADLINE_EXCEEDED; a request still queued is dropped, one already running finishes on its
  worker (TensorFlow cannot be interrupted) and its answer is discarded.

Draining (:meth:`Server.drain`): ``/readyz`` answers 503 at once, the listening socket is
closed, idle keep-alive connections are closed, every request already read is answered
(with ``Connection: close``), and ``drain`` returns when no connection is left or after the
grace period. Each request reads :attr:`ModelStore.snapshot` once, so a reload swapping the
snapshot never changes the models under a request in flight.

Logs: one INFO line per request on the ``serving.access`` logger (JSON: method, path,
status, duration_ms, bytes, client) unless ``access_log=False``; a client that resets its
connection is one INFO line, not a traceback.
"""

import dataclasses
import io
import json
import logging
import queue
import re
import socket
import sys
import threading
import time
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

from serving import bundles, names, openapi, service, tf_serving, validation
from serving import metrics as metrics_lib
from serving.errors import ApiError, bad_request, not_found
from serving.store import ModelStore

log = logging.getLogger(__name__)
access_log = logging.getLogger("serving.access")

MAX_BODY_BYTES = 1 << 20
_MAX_DRAINED_BYTES = 16 << 20
_IDLE_SLICE_SECONDS = 0.2  # how soon an idle keep-alive connection notices a drain
RETRY_AFTER_SECONDS = "1"

# /v1/models/{name}[/versions/{version}][/metadata | :{verb}], TF Serving's paths.
_MODEL_PATH = re.compile(
    r"/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?"
    r"(?:(?P<metadata>/metadata)|:(?P<verb>[^/:]*))?"
)
_SIMILAR_PATH = re.compile(r"/v1/movies/(?P<movie_id>[^/]+)/similar")
_TF_SERVING_VERBS_NOT_SERVED = ("classify", "regress")
_FIXED_PATHS = ("/healthz", "/readyz", "/openapi.json", "/metrics", "/v1/recommend", "/v1/rate")

Response = tuple[int, Any, dict[str, str]]


@dataclasses.dataclass(frozen=True)
class RawBody:
    """A payload written as is (``/metrics``) instead of as JSON."""

    data: bytes
    content_type: str


@dataclasses.dataclass(frozen=True)
class Limits:
    """The server's bounds; ``serving.commands`` sets them from ``movierec serve``'s flags.

    Attributes:
      workers: threads running requests.
      queue: requests waiting for a worker; beyond them, 503 with ``Retry-After``.
      request_timeout: seconds from a request read to its answer; then 504.
      read_timeout: seconds to read a request, first byte to end of body; then 408.
      idle_timeout: seconds an idle keep-alive connection stays open.
      max_connections: open connections; beyond them, 503 and closed.
    """

    workers: int = 8
    queue: int = 64
    request_timeout: float = 30.0
    read_timeout: float = 10.0
    idle_timeout: float = 60.0
    max_connections: int = 256


class App:
    """Answers requests from the models of a :class:`ModelStore`; knows no sockets.

    Args:
      store: the models; each request reads ``store.snapshot`` once.
    """

    def __init__(self, store: ModelStore, metrics: metrics_lib.Metrics | None = None):
        self.store = store
        self.metrics = metrics if metrics is not None else metrics_lib.Metrics(store)
        self.draining = False  # set by Server.drain: /readyz answers 503 from then on
        # set by Server.drain(retire=True): still ready (a successor process serves the
        # same models), every answer closes its connection
        self.retiring = False

    def handle(self, method: str, target: str, body: bytes) -> Response:
        """One request -> ``(status, JSON-able payload, extra headers)``; never raises.

        Every answer carries ``X-Movierec-Bundle: <id>`` when the snapshot it read serves a
        bundle (``serving.bundles``)."""
        snapshot = self.store.snapshot
        try:
            status, payload, headers = self._route(method, target, body, snapshot)
        except ApiError as err:
            status, payload, headers = err.status, {"error": err.message}, err.headers
        except Exception:  # a bug, not the client's fault: log it, answer 500
            log.exception("%s %s failed", method, target)
            status, payload, headers = 500, {"error": "internal server error"}, {}
        bundle = getattr(snapshot, "bundle", None)
        if bundle is not None:
            headers = {**headers, bundles.HEADER: str(bundle)}
        return status, payload, headers

    def _route(self, method: str, target: str, body: bytes, snapshot) -> Response:
        split = urllib.parse.urlsplit(target)
        path = split.path
        if path == "/healthz":
            _allow(method, "GET")
            return 200, {"status": "ok"}, {}
        if path == "/readyz":
            _allow(method, "GET")
            return _readiness(self.store, snapshot, self.draining)
        if path == "/metrics":
            _allow(method, "GET")
            return 200, RawBody(self.metrics.exposition(), metrics_lib.CONTENT_TYPE), {}
        if path == "/openapi.json":
            _allow(method, "GET")
            return 200, openapi.build_spec(snapshot), {}
        if path == "/v1/recommend":
            _allow(method, "POST")
            product = service.product_of(snapshot)
            args = validation.parse_recommend(validation.parse_json(body), product.retrieval.k)
            return 200, service.recommend(product, *args), {}
        if path == "/v1/rate":
            _allow(method, "POST")
            product = service.product_of(snapshot)
            return (
                200,
                service.rate(product, *validation.parse_rate(validation.parse_json(body))),
                {},
            )
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

    @staticmethod
    def endpoint_of(target: str) -> str:
        """The route template of a request target (a metrics label): ``/v1/recommend``,
        ``/v1/models/{name}:predict``, ...; ``other`` for no endpoint."""
        path = urllib.parse.urlsplit(target).path
        if path in _FIXED_PATHS:
            return path
        if _SIMILAR_PATH.fullmatch(path):
            return "/v1/movies/{movie_id}/similar"
        match = _MODEL_PATH.fullmatch(path)
        if not match:
            return "other"
        template = "/v1/models/{name}" + ("/versions/{version}" if match["version"] else "")
        if match["metadata"]:
            return template + "/metadata"
        verb = match["verb"]
        if verb is None:
            return template
        return template + (
            f":{verb}" if verb in ("predict", *_TF_SERVING_VERBS_NOT_SERVED) else ":{verb}"
        )


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
    return 200, tf_serving.predict(model, validation.parse_json(body)), {}


def _readiness(store, snapshot, draining: bool) -> Response:
    if draining:
        return 503, {"error": "not ready: draining before shutdown"}, {}
    versions = snapshot.versions()
    missing = [name for name in (names.RETRIEVAL, names.RANKING) if name not in snapshot.views]
    if missing:
        message = f"not ready: no {', '.join(missing)} model loaded"
        problem = serving_dir_problem(store)
        refused = _store_status(store).get("refused_bundles") or {}
        reasons = [message, *([problem] if problem else [])]
        reasons += [f"bundle {bundle_id} refused: {why}" for bundle_id, why in refused.items()]
        return 503, {"error": "; ".join(reasons)}, {}
    body = {"status": "ready", "model_versions": versions}
    status = _store_status(store)
    if status.get("bundle") is not None:
        body["bundle"] = status["bundle"]
    if status.get("refused_bundles"):
        body["refused_bundles"] = status["refused_bundles"]
    return 200, body, {}


def _store_status(store) -> dict:
    status = getattr(store, "status", None)
    if not callable(status):
        return {}
    try:
        return status()
    except Exception:  # readiness must answer even if the bookkeeping fails
        log.exception("ModelStore.status() failed")
        return {}


def serving_dir_problem(store) -> str | None:
    """What keeps ``store`` from finding models (``ModelStore.status()["problem"]`` when
    the store has it, else whether its serving directory exists); None if nothing."""
    status = getattr(store, "status", None)
    if callable(status):
        try:
            return status().get("problem")
        except Exception:  # readiness must answer even if the bookkeeping fails
            log.exception("ModelStore.status() failed")
            return None
    serving_dir = Path(store.serving_dir)
    if not serving_dir.is_dir():
        return f"the serving directory {serving_dir} does not exist"
    return None


def _allow(method: str, allowed: str) -> None:
    if method == allowed or (method == "HEAD" and allowed == "GET"):
        return
    allow = "GET, HEAD" if allowed == "GET" else allowed
    raise ApiError(405, f"use {allowed} here, not {method}", {"Allow": allow})


class _Job:
    """One ``App.handle`` call handed to the pool; the connection thread waits on ``done``."""

    __slots__ = ("args", "done", "result", "abandoned")

    def __init__(self, args: tuple[str, str, bytes]):
        self.args = args
        self.done = threading.Event()
        self.result: Response | None = None
        self.abandoned = False  # past its deadline: a worker that has not started skips it


class _Pool:
    """``workers`` daemon threads running :meth:`App.handle`, fed by a bounded queue.

    Daemon threads: a request still running when the drain's grace period ends must not
    keep the process alive.
    """

    def __init__(self, app: App, workers: int, size: int):
        self._app = app
        self._queue: queue.Queue[_Job | None] = queue.Queue()  # bounded by _admit
        self._admit = threading.BoundedSemaphore(workers + size)
        self.busy = 0
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._work, name=f"movierec-worker-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def queued(self) -> int:
        return self._queue.qsize()

    def submit(self, job: _Job) -> bool:
        """Queues ``job``; False (nothing queued) when every worker and queue slot is taken."""
        if not self._admit.acquire(blocking=False):
            return False
        self._queue.put(job)
        return True

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                if job.abandoned:
                    continue
                with self._lock:
                    self.busy += 1
                try:
                    job.result = self._app.handle(*job.args)
                finally:
                    with self._lock:
                        self.busy -= 1
                job.done.set()
            finally:
                self._admit.release()


class _DeadlineReader(io.RawIOBase):
    """A socket's reads under the handler's current read deadline (or idle slice)."""

    def __init__(self, sock: socket.socket, handler: "_Handler"):
        self._sock, self._handler = sock, handler

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        self._sock.settimeout(self._handler._read_budget())
        return self._sock.recv_into(buffer)


class _SocketWriter(io.BufferedIOBase):
    """Unbuffered writes to a socket (``socketserver``'s is private)."""

    def __init__(self, sock: socket.socket):
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._sock.sendall(data)
        return len(data)


class _Handler(BaseHTTPRequestHandler):
    """Reads a request (at most 1 MB of body, under the read deadline), has the pool answer
    it, writes the JSON answer; loops over the requests of a keep-alive connection."""

    protocol_version = "HTTP/1.1"  # keep-alive: load generators and clients reuse sockets
    server_version = "movierec"

    def setup(self) -> None:
        self.connection = self.request
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        self._deadline: float | None = None
        self._started = time.monotonic()
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, self), 1 << 16)
        self.wfile = _SocketWriter(self.connection)  # the base class's 100 Continue

    def finish(self) -> None:
        self.rfile.close()

    def _read_budget(self) -> float:
        """The socket timeout for the next read: the rest of the read deadline, or one
        idle slice while waiting for a request's first byte."""
        if self._deadline is None:
            return _IDLE_SLICE_SECONDS
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("read deadline passed")
        return left

    def handle(self) -> None:
        server = self.server
        self.close_connection = False
        try:
            while not self.close_connection and self._wait_for_request():
                server._set_busy(self, True)
                try:
                    self._one_request()
                finally:
                    server._set_busy(self, False)
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError) as err:
            log.info("client %s went away: %s", self.address_string(), err)
        except TimeoutError:
            log.info("client %s stopped reading its answer; closed", self.address_string())

    def _wait_for_request(self) -> bool:
        """Waits for the next request's first byte; False to close the connection (EOF,
        idle for ``idle_timeout``, or the server is draining)."""
        self._deadline = None
        idle_until = time.monotonic() + self.server.limits.idle_timeout
        while not self.server.app.draining and time.monotonic() < idle_until:
            try:
                if not self.rfile.peek(1):
                    return False
            except TimeoutError:
                continue
            self._started = time.monotonic()
            self._deadline = self._started + self.server.limits.read_timeout
            return True
        return False

    def _one_request(self) -> None:
        """``BaseHTTPRequestHandler.handle_one_request`` with the read deadline: 408."""
        self.command, self.path, self.request_version = None, "", self.default_request_version
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():  # reads the headers; answered its own error
                return
            method = getattr(self, "do_" + self.command, None)
            if method is None:
                self.send_error(HTTPStatus.NOT_IMPLEMENTED, f"unsupported method {self.command!r}")
                return
            method()
        except TimeoutError:
            self._read_timed_out()

    def _read_timed_out(self) -> None:
        self.server.app.metrics.reject("read_timeout")
        limit = self.server.limits.read_timeout
        log.info("client %s: request not read within %g s; closed", self.address_string(), limit)
        self.close_connection = True
        self._respond(408, {"error": f"the request was not sent within {limit:g} s"}, {})

    def _serve(self) -> None:
        try:
            body = self._read_body()
        except ApiError as err:
            self.close_connection = True  # the unread body would be taken for a request
            self._respond(err.status, {"error": err.message}, err.headers)
            return
        self._deadline = None  # the request is read; the answer is not under read_timeout
        status, payload, headers = self.server.run(self.command, self.path, body)
        self._respond(status, payload, headers)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding"):
            raise ApiError(411, "send the body with a Content-Length, not chunked")
        lengths = self.headers.get_all("Content-Length") or []
        if len(lengths) > 1:
            raise bad_request(f"{len(lengths)} Content-Length headers; send one")
        if not lengths:
            return b""
        (length,) = lengths
        if not (length.isascii() and length.strip().isdigit()):
            raise bad_request(f"invalid Content-Length {length!r}")
        size = int(length)
        if size > MAX_BODY_BYTES:
            if size <= _MAX_DRAINED_BYTES:
                # Read it away: a client still sending when the socket closes gets a reset
                # instead of the 413.
                _discard(self.rfile, size)
            raise ApiError(413, f"the body has {int(length)} bytes; at most {MAX_BODY_BYTES}")
        body = self.rfile.read(size)
        if len(body) < size:
            self.close_connection = True
            raise bad_request(f"the body ended after {len(body)} of {size} bytes")
        return body

    def _respond(self, status: int, payload: Any, headers: dict[str, str]) -> None:
        if isinstance(payload, RawBody):
            data, content_type = payload.data, payload.content_type
        else:
            # TF Serving writes NaN and Infinity as bare tokens; so does json.dumps.
            data, content_type = json.dumps(payload).encode("utf-8"), "application/json"
        if self.server.app.draining or self.server.app.retiring:
            self.close_connection = True  # the client reconnects: to another replica/process
        lines = [
            f"{self.protocol_version} {status} {_phrase(status)}",
            f"Server: {self.server_version}",
            f"Date: {self.date_time_string()}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(data)}",
            *(f"{key}: {value}" for key, value in headers.items()),
        ]
        if self.close_connection:
            lines.append("Connection: close")
        else:
            # Clients that honour it (urllib3, browsers, Envoy, nginx) close or stop reusing
            # the connection before the server closes it, so no request is written to a
            # socket the server is closing.
            lines.append(f"Keep-Alive: timeout={max(1, int(self.server.limits.idle_timeout))}")
        if self.command == "HEAD":
            data = b""  # the headers GET would have, no body
        # One write per response: headers and body in one packet.
        # Counted before the write, so a client that got its answer sees it counted.
        self._account(status, len(data))
        self.connection.settimeout(self.server.limits.read_timeout)
        self.connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data)

    def _account(self, status: int, size: int) -> None:
        seconds = time.monotonic() - self._started
        app = self.server.app
        path = self.path or ""
        app.metrics.observe(app.endpoint_of(path), self.command, status, seconds)
        if self.server.access_log:
            access_log.info(
                json.dumps(
                    {
                        "method": self.command,
                        "path": path[:512],
                        "status": status,
                        "duration_ms": round(seconds * 1e3, 2),
                        "bytes": size,
                        "client": self.client_address[0],
                    }
                )
            )

    def send_error(self, code, message=None, explain=None):
        """The base class's errors (bad request line, URI too long), as JSON."""
        self.close_connection = True
        self._respond(code, {"error": message or _phrase(code)}, {})

    def log_message(self, format, *args):  # noqa: A002 (the base class names it so)
        log.debug("%s %s", self.address_string(), format % args)


class Server(HTTPServer):
    """An ``HTTPServer`` with a thread per connection (at most ``limits.max_connections``),
    a bounded worker pool and a graceful :meth:`drain`."""

    request_queue_size = 128  # c=32 load connects all at once

    def __init__(
        self,
        address: tuple[str, int],
        app: App,
        limits: Limits | None = None,
        access_log: bool = True,
        sock: socket.socket | None = None,
    ):
        self.app = app
        self.limits = limits = limits if limits is not None else Limits()
        self.access_log = access_log
        self._connections: dict[socket.socket, bool] = {}  # socket -> busy with a request
        self._lock = threading.Condition()
        if sock is None:
            super().__init__(address, _Handler)
        else:  # a listening socket inherited from serving.supervisor, shared with others
            super().__init__(sock.getsockname(), _Handler, bind_and_activate=False)
            self.socket.close()
            self.socket = sock
            self.server_address = sock.getsockname()
            self.server_name, self.server_port = self.server_address[:2]
        self._pool = _Pool(app, limits.workers, limits.queue)
        app.metrics.bind_server_state(self._state)

    def _state(self) -> dict[str, float]:
        with self._lock:
            open_connections = len(self._connections)
        return {
            "open_connections": open_connections,
            "queued_requests": self._pool.queued(),
            "busy_workers": self._pool.busy,
            "draining": float(self.app.draining),
        }

    def run(self, method: str, target: str, body: bytes) -> Response:
        """``App.handle`` on the pool, within ``limits.request_timeout``; 503 when full."""
        job = _Job((method, target, body))
        if not self._pool.submit(job):
            self.app.metrics.reject("queue_full")
            limits = self.limits
            return (
                503,
                {
                    "error": f"overloaded: {limits.workers} requests running and "
                    f"{limits.queue} queued; retry later"
                },
                {"Retry-After": RETRY_AFTER_SECONDS},
            )
        if not job.done.wait(self.limits.request_timeout):
            job.abandoned = True
            if job.result is None:
                self.app.metrics.reject("deadline")
                timeout = self.limits.request_timeout
                return 504, {"error": f"deadline exceeded: no answer within {timeout:g} s"}, {}
        return job.result

    def process_request(self, request, client_address) -> None:
        with self._lock:
            full = len(self._connections) >= self.limits.max_connections
            if not full:
                self._connections[request] = False
        if full:
            self.app.metrics.reject("max_connections")
            _refuse(request, self.limits.max_connections)
            self.shutdown_request(request)
            return
        thread = threading.Thread(
            target=self._connection, args=(request, client_address), daemon=True
        )
        thread.start()

    def _connection(self, request, client_address) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            with self._lock:
                self._connections.pop(request, None)
                self._lock.notify_all()

    def _set_busy(self, handler: _Handler, busy: bool) -> None:
        with self._lock:
            if handler.request in self._connections:
                self._connections[handler.request] = busy

    def handle_error(self, request, client_address) -> None:
        err = sys.exc_info()[1]
        if isinstance(err, ConnectionError | TimeoutError):  # the client's doing: one line
            log.info("client %s went away: %s", client_address[0], err)
        else:
            log.exception("connection from %s failed", client_address[0])

    def drain(self, grace_seconds: float, *, retire: bool = False) -> bool:
        """Stops accepting, answers /readyz 503, waits for the open connections' requests.

        Call after ``serve_forever`` returned (``shutdown()``). Idle keep-alive
        connections close within a fraction of a second; a connection busy with a request
        closes once it is answered.

        With ``retire=True`` (a process making way for its successor on the same listening
        socket, ``serving.supervisor``) ``/readyz`` stays 200 and idle keep-alive
        connections stay open until their idle timeout: a client that honours
        ``Keep-Alive: timeout=`` never writes to a connection being closed, and a request
        sent on one is answered with ``Connection: close``. Setting ``app.draining``
        meanwhile (a SIGTERM) turns it into the fast drain.

        Returns:
          True if every connection closed within ``grace_seconds``.
        """
        if retire:
            self.app.retiring = True
        else:
            self.app.draining = True
        # Closes this process's descriptor only: a listening socket shared with a successor
        # keeps accepting there. Alone, new connections are refused from now on.
        self.socket.close()
        deadline = time.monotonic() + grace_seconds
        with self._lock:
            while self._connections:
                left = deadline - time.monotonic()
                if left <= 0:
                    busy = sum(self._connections.values())
                    log.warning(
                        "drain: %d connection(s) still open (%d busy) after %g s; exiting",
                        len(self._connections),
                        busy,
                        grace_seconds,
                    )
                    return False
                self._lock.wait(left)
        return True

    def server_close(self) -> None:
        super().server_close()
        self._pool.close()


def make_server(
    store: ModelStore,
    host: str = "127.0.0.1",
    port: int = 8501,
    limits: Limits | None = None,
    access_log: bool = True,
    sock: socket.socket | None = None,
) -> Server:
    """An HTTP server over ``store`` bound to ``(host, port)`` (port 0 picks a free one),
    or accepting on ``sock``, an already listening socket (``host``/``port`` then unused).

    Call ``serve_forever()`` on it (in a thread for tests); ``server_address`` has the
    bound port. ``access_log=False`` drops the per-request INFO lines.
    """
    return Server((host, port), App(store), limits, access_log, sock)


def _refuse(sock: socket.socket, max_connections: int) -> None:
    """Answers a connection beyond ``max_connections`` 503 without a thread; never blocks."""
    body = json.dumps({"error": f"too many connections (at most {max_connections})"}).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nServer: movierec\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"Retry-After: {RETRY_AFTER_SECONDS}\r\nConnection: close\r\n\r\n"
    )
    try:
        sock.setblocking(False)
        try:
            sock.recv(1 << 16)  # read away what already came, so close sends no reset
        except BlockingIOError:
            pass
        sock.send(head.encode("latin-1") + body)
    except OSError:
        pass


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
