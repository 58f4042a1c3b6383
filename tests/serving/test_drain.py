"""``movierec serve`` behind a load balancer: on SIGTERM it answers /readyz 503, refuses new
connections, answers every request it had accepted (some still being uploaded), and exits
0; over a missing serving directory it warns and says why it is not ready."""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_LISTENING = re.compile(r"http://([0-9.]+):([0-9]+) ")


def _serve(serving_dir, *flags, stderr=subprocess.DEVNULL):
    proc = subprocess.Popen(
        [sys.executable, "-m", "serving.commands", "serve", "--serving-dir", str(serving_dir)]
        + ["--port", "0", "--poll-seconds", "0.5", *flags],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        cwd=REPO,
        env={
            **os.environ,
            "TF_USE_LEGACY_KERAS": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONPATH": str(REPO),
        },
    )
    line = proc.stdout.readline()
    match = _LISTENING.search(line)
    assert match, f"no listening line: {line!r}"
    return proc, match[1], int(match[2])


def _read_response(sock) -> tuple[int, dict, bytes]:
    """Reads one whole HTTP response from ``sock``: status, headers, body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before the headers: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    size = int(headers["Content-Length"])
    while len(body) < size:
        chunk = sock.recv(65536)
        assert chunk, "closed mid-body"
        body += chunk
    return int(lines[0].split()[1]), headers, body[:size]


def test_sigterm_drains_accepted_requests_then_exits_0(serving_dir):
    proc, host, port = _serve(serving_dir, "--drain-seconds", "30")
    try:
        conn = http.client.HTTPConnection(host, port, timeout=60)
        conn.request("GET", "/readyz")
        assert conn.getresponse().status == 200
        conn.close()
        # Uploads in flight at SIGTERM: headers and half the body sent.
        body = json.dumps({"user_id": "u1", "k": 3}).encode()
        uploads = []
        for _ in range(4):
            sock = socket.create_connection((host, port), timeout=60)
            sock.sendall(
                b"POST /v1/recommend HTTP/1.1\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body[: len(body) // 2]
            )
            uploads.append(sock)
        probe = socket.create_connection((host, port), timeout=60)
        probe.sendall(b"GET /readyz HTTP/1.1\r\n")  # a health check half sent
        # Keep-alive clients hammering /v1/recommend through the SIGTERM.
        answers, failures, stop = [], [], threading.Event()

        def hammer():
            client = http.client.HTTPConnection(host, port, timeout=60)
            while not stop.is_set():
                try:
                    client.request("POST", "/v1/recommend", body)
                    response = client.getresponse()
                    data = json.loads(response.read())
                except (OSError, http.client.HTTPException) as err:
                    failures.append(type(err).__name__)  # not accepted: refused or closed
                    return
                answers.append((response.status, len(data["recommendations"])))
                if response.getheader("Connection") == "close":
                    return
            client.close()

        threads = [threading.Thread(target=hammer, daemon=True) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        served_before = len(answers)
        proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)  # the listening socket closes within serve_forever's 0.5 s poll
        try:
            socket.create_connection((host, port), timeout=5).close()
            refused = False
        except ConnectionRefusedError:
            refused = True
        probe.sendall(b"\r\n")
        status, headers, data = _read_response(probe)
        assert (status, json.loads(data)) == (503, {"error": "not ready: draining before shutdown"})
        assert headers["Connection"] == "close"
        assert proc.poll() is None  # still draining: the uploads are not finished
        for sock in uploads:
            sock.sendall(body[len(body) // 2 :])
        for sock in uploads:
            status, headers, data = _read_response(sock)
            assert status == 200 and headers["Connection"] == "close"
            assert len(json.loads(data)["recommendations"]) == 3
            sock.close()
        probe.close()
        assert proc.wait(timeout=60) == 0
        stop.set()
        for thread in threads:
            thread.join(10)
        assert refused
        assert served_before > 0 and len(answers) >= served_before
        assert set(answers) == {(200, 3)}  # every answer received is a complete 200
    finally:
        proc.kill()


def test_missing_serving_dir_warns_and_readyz_says_why(tmp_path):
    missing = tmp_path / "nothing here"
    proc, host, port = _serve(missing, stderr=subprocess.PIPE)
    try:
        conn = http.client.HTTPConnection(host, port, timeout=60)
        conn.request("GET", "/readyz")
        response = conn.getresponse()
        message = json.loads(response.read())["error"]
        conn.close()
        assert response.status == 503
        assert message.startswith("not ready: no retrieval, ranking model loaded; ")
        assert str(missing) in message and "does not exist" in message
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        err = proc.stderr.read()
        warnings = [line for line in err.splitlines() if " WARNING " in line]
        assert any(str(missing) in line for line in warnings), err
    finally:
        proc.kill()
