"""movierec serve's bounds and operability, in process over an empty serving directory: the
worker pool's queue (503 + Retry-After), the request deadline (504), the read deadline
against slow clients (408), the connection cap (503, closed, no thread), HEAD, duplicate
Content-Length, one-line logs of client resets, access logs, readiness reasons, the drain,
and ``movierec serve``'s flag checks."""

import argparse
import http.client
import json
import logging
import socket
import struct
import threading
import time
from pathlib import Path

import pytest

from serving import commands, server, service


class GatedApp(server.App):
    """An App whose ``/block`` requests wait for ``gate`` (at most 10 s)."""

    def __init__(self, store):
        super().__init__(store)
        self.gate = threading.Event()

    def handle(self, method, target, body):
        if target == "/block":
            self.gate.wait(10)
            return 200, {"blocked": True}, {}
        return super().handle(method, target, body)


@pytest.fixture
def start(tmp_path):
    """``start(**limits)`` -> a running :class:`server.Server` over a GatedApp."""
    started = []

    def run(access_log=True, serving_dir=None, **limits):
        store = service.open_store(serving_dir or tmp_path)
        store.poll()  # as movierec serve does: finds no models (and a missing directory)
        httpd = server.Server(
            ("127.0.0.1", 0), GatedApp(store), server.Limits(**limits), access_log
        )
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        started.append(httpd)
        return httpd

    yield run
    for httpd in started:
        httpd.app.gate.set()
        httpd.shutdown()
        httpd.server_close()


def _conn(httpd, timeout=10):
    return http.client.HTTPConnection(*httpd.server_address[:2], timeout=timeout)


def _get(httpd, path, method="GET", headers=None):
    conn = _conn(httpd)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response, response.read()
    finally:
        conn.close()


def _in_background(httpd, path):
    """Sends ``path`` from a thread; returns the list its (status, body) lands in."""
    out = []

    def send():
        response, data = _get(httpd, path)
        out.append((response.status, json.loads(data)))

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return out, thread


def _wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _raw(httpd) -> socket.socket:
    return socket.create_connection(httpd.server_address[:2], timeout=10)


def _read_all(sock) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_full_queue_gets_503_with_retry_after(start):
    httpd = start(workers=1, queue=1)
    first, t1 = _in_background(httpd, "/block")
    _wait_for(lambda: httpd._state()["busy_workers"] == 1)
    second, t2 = _in_background(httpd, "/block")
    _wait_for(lambda: httpd._state()["queued_requests"] == 1)
    response, data = _get(httpd, "/healthz")
    assert response.status == 503 and response.getheader("Retry-After") == "1"
    assert json.loads(data) == {"error": "overloaded: 1 requests running and 1 queued; retry later"}
    httpd.app.gate.set()
    t1.join(10)
    t2.join(10)
    assert first == second == [(200, {"blocked": True})]
    assert _get(httpd, "/healthz")[0].status == 200  # room again


def test_request_past_its_deadline_gets_504(start):
    httpd = start(request_timeout=0.3)
    began = time.monotonic()
    response, data = _get(httpd, "/block")
    assert response.status == 504
    assert json.loads(data) == {"error": "deadline exceeded: no answer within 0.3 s"}
    assert time.monotonic() - began < 3
    httpd.app.gate.set()
    _wait_for(lambda: httpd._state()["busy_workers"] == 0)
    assert _get(httpd, "/healthz")[0].status == 200


@pytest.mark.parametrize(
    "head, trickle",
    [
        (b"", b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),  # headers a byte at a time
        (b"POST /v1/recommend HTTP/1.1\r\nContent-Length: 30\r\n\r\n", b'{"user_id": "u1"}' * 2),
    ],
)
def test_slow_client_is_cut_off_after_the_read_timeout(start, head, trickle):
    httpd = start(read_timeout=0.6)
    sock = _raw(httpd)
    began = time.monotonic()
    sock.sendall(head or trickle[:1])
    try:
        for byte in trickle[0 if head else 1 :]:
            time.sleep(0.1)
            sock.sendall(bytes([byte]))
    except (BrokenPipeError, ConnectionResetError):
        pass  # cut off while still sending
    answer = _read_all(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"Connection: close" in answer
    assert answer.endswith(b'{"error": "the request was not sent within 0.6 s"}')
    assert 0.5 < time.monotonic() - began < 3


def test_connections_beyond_the_cap_get_503_and_are_closed(start):
    httpd = start(max_connections=2)
    idle = [_raw(httpd), _raw(httpd)]
    _wait_for(lambda: httpd._state()["open_connections"] == 2)
    threads = threading.active_count()
    extra = _raw(httpd)
    extra.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
    answer = _read_all(extra)  # closed by the server after the 503
    extra.close()
    assert answer.startswith(b"HTTP/1.1 503 ")
    assert b"Retry-After: 1\r\n" in answer and b"Connection: close\r\n" in answer
    assert answer.endswith(b'{"error": "too many connections (at most 2)"}')
    assert threading.active_count() == threads  # answered without a thread
    idle.pop().close()
    _wait_for(lambda: httpd._state()["open_connections"] == 1)
    assert _get(httpd, "/healthz")[0].status == 200
    for sock in idle:
        sock.close()


def test_keep_alive_through_the_pool(start):
    httpd = start(workers=2)
    conn = _conn(httpd)
    socks = []
    for _ in range(5):
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        assert (response.status, json.loads(response.read())) == (200, {"status": "ok"})
        socks.append(conn.sock)
        assert response.getheader("Keep-Alive") == "timeout=60"  # Limits' idle timeout
    assert len(set(map(id, socks))) == 1
    conn.close()


def test_the_idle_timeout_is_announced_and_closes_the_connection(start):
    httpd = start(idle_timeout=0.5)
    sock = _raw(httpd)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = _read_all(sock)  # the answer, then EOF when the idle connection is closed
    sock.close()
    assert answer.startswith(b"HTTP/1.1 200 ") and b"Keep-Alive: timeout=1\r\n" in answer
    assert answer.endswith(b'{"status": "ok"}')


@pytest.mark.parametrize("lengths", [("2", "2"), ("2", "3")])
def test_two_content_lengths_get_400(start, lengths):
    httpd = start()
    sock = _raw(httpd)
    headers = "".join(f"Content-Length: {n}\r\n" for n in lengths)
    sock.sendall(f"POST /v1/recommend HTTP/1.1\r\n{headers}\r\n{{}}".encode())
    answer = _read_all(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert answer.endswith(b'{"error": "2 Content-Length headers; send one"}')


def test_head_is_get_without_a_body(start):
    httpd = start()
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        got, got_body = _get(httpd, path)
        head, head_body = _get(httpd, path, "HEAD")
        assert head.status == got.status and head_body == b""
        assert head.getheader("Content-Type") == got.getheader("Content-Type")
        if path != "/metrics":  # a scrape changes the next one's counters
            assert head.getheader("Content-Length") == str(len(got_body))
    head, body = _get(httpd, "/v1/recommend", "HEAD")
    assert head.status == 405 and head.getheader("Allow") == "POST" and body == b""
    response, data = _get(httpd, "/healthz", "POST")
    assert response.status == 405 and response.getheader("Allow") == "GET, HEAD"
    assert json.loads(data) == {"error": "use GET here, not POST"}


def test_client_reset_is_one_log_line(start, caplog):
    caplog.set_level(logging.INFO, logger="serving.server")
    httpd = start()
    sock = _raw(httpd)
    sock.sendall(b"GET /block HTTP/1.1\r\n\r\n")
    _wait_for(lambda: httpd._state()["busy_workers"] == 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # a reset, not a FIN
    time.sleep(0.1)
    httpd.app.gate.set()
    _wait_for(lambda: httpd._state()["open_connections"] == 0)
    records = [r for r in caplog.records if r.name == "serving.server"]
    assert len(records) == 1 and "went away" in records[0].getMessage()
    assert records[0].exc_info is None


def test_access_log_lines_and_no_access_log(start, caplog):
    caplog.set_level(logging.INFO, logger="serving.access")
    httpd = start()
    _get(httpd, "/healthz")
    _get(httpd, "/nothing?x=1")
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "serving.access"]
    assert [(x["method"], x["path"], x["status"]) for x in lines] == [
        ("GET", "/healthz", 200),
        ("GET", "/nothing?x=1", 404),
    ]
    assert lines[0]["bytes"] == len(b'{"status": "ok"}') and lines[0]["client"] == "127.0.0.1"
    assert all(0 <= x["duration_ms"] < 5000 for x in lines)
    caplog.clear()
    quiet = start(access_log=False)
    _get(quiet, "/healthz")
    assert not [r for r in caplog.records if r.name == "serving.access"]


def test_readyz_names_a_missing_serving_directory(start, tmp_path):
    missing = tmp_path / "no such dir"
    httpd = start(serving_dir=missing)
    problem = server.serving_dir_problem(httpd.app.store)
    assert problem and (str(missing) in problem or "exist" in problem)
    response, data = _get(httpd, "/readyz")
    message = json.loads(data)["error"]
    assert response.status == 503
    assert message == f"not ready: no retrieval, ranking model loaded; {problem}"
    # The fallback when the store has no status(): the directory's existence.
    fallback = server.serving_dir_problem(argparse.Namespace(serving_dir=missing))
    assert fallback == f"the serving directory {missing} does not exist"
    assert server.serving_dir_problem(argparse.Namespace(serving_dir=tmp_path)) is None


def test_drain_answers_in_flight_requests_and_refuses_new_ones(start):
    httpd = start()
    busy = _raw(httpd)
    busy.sendall(b"GET /block HTTP/1.1\r\n\r\n")
    slow = _raw(httpd)
    slow.sendall(b"GET /readyz HTTP/1.1\r\n")  # the rest is sent during the drain
    idle = _conn(httpd)
    idle.request("GET", "/healthz")
    assert idle.getresponse().read() == b'{"status": "ok"}'  # left idle, kept alive
    _wait_for(lambda: httpd._state()["busy_workers"] == 1)
    httpd.shutdown()
    result = []
    drainer = threading.Thread(target=lambda: result.append(httpd.drain(10)), daemon=True)
    drainer.start()
    _wait_for(lambda: httpd.app.draining)
    with pytest.raises(ConnectionRefusedError):
        _wait_for(lambda: bool(_raw(httpd).close()), timeout=2)
    slow.sendall(b"\r\n")
    readyz = _read_all(slow)
    assert readyz.startswith(b"HTTP/1.1 503 ") and b"Connection: close" in readyz
    assert readyz.endswith(b'{"error": "not ready: draining before shutdown"}')
    assert drainer.is_alive()  # /block is still running
    httpd.app.gate.set()
    answer = _read_all(busy)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b'{"blocked": true}')
    drainer.join(10)
    assert result == [True]
    assert httpd._state()["open_connections"] == 0  # the idle one was closed too
    for sock in (busy, slow):
        sock.close()
    idle.close()


def test_drain_gives_up_after_the_grace_period(start):
    httpd = start()
    busy = _raw(httpd)
    busy.sendall(b"GET /block HTTP/1.1\r\n\r\n")
    _wait_for(lambda: httpd._state()["busy_workers"] == 1)
    httpd.shutdown()
    began = time.monotonic()
    assert httpd.drain(0.3) is False
    assert 0.25 < time.monotonic() - began < 2
    busy.close()


def _parse(argv):
    parser = argparse.ArgumentParser()
    commands.add_serve_command(parser.add_subparsers(dest="command"))
    return parser.parse_args(["serve", *argv])


def test_serve_limit_flags_and_defaults():
    args = _parse([])
    assert (
        args.workers,
        args.queue,
        args.request_timeout_seconds,
        args.read_timeout_seconds,
        args.max_connections,
        args.idle_timeout_seconds,
        args.drain_seconds,
        args.access_log,
    ) == (8, 64, 30.0, 10.0, 256, 60.0, 20.0, True)
    assert _parse(["--no-access-log"]).access_log is False
    assert commands.check_flags(args) is None


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--poll-seconds", "nan", "--poll-seconds must be > 0 and <= 86400, got nan"),
        ("--poll-seconds", "inf", "--poll-seconds must be > 0 and <= 86400, got inf"),
        ("--poll-seconds", "0", "--poll-seconds must be > 0 and <= 86400, got 0.0"),
        ("--port", "-1", "--port must be >= 0 and <= 65535, got -1"),
        ("--port", "65536", "--port must be >= 0 and <= 65535, got 65536"),
        ("--workers", "0", "--workers must be >= 1"),
        ("--queue", "-1", "--queue must be >= 0"),
        ("--request-timeout-seconds", "nan", "--request-timeout-seconds must be > 0"),
        ("--request-timeout-seconds", "0", "--request-timeout-seconds must be > 0"),
        ("--read-timeout-seconds", "-inf", "--read-timeout-seconds must be > 0"),
        ("--max-connections", "0", "--max-connections must be >= 1"),
        ("--idle-timeout-seconds", "0", "--idle-timeout-seconds must be > 0"),
        ("--drain-seconds", "-1", "--drain-seconds must be >= 0"),
        ("--drain-seconds", "inf", "--drain-seconds must be >= 0 and <= 3600, got inf"),
    ],
)
def test_bad_serve_flags_exit_2_naming_the_flag(flag, value, message, tmp_path, capsys):
    assert commands.cmd_serve(_parse([f"{flag}={value}"]), Path(tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.startswith("movierec: ") and message in err
