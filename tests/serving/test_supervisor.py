"""``movierec serve`` as a supervisor (``serving.supervisor``): after a hot reload a fresh worker
process takes over the same port with no request lost, a worker that dies is replaced, and
SIGTERM still drains and exits 0."""

import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from publish import push
from serving import commands, names

REPO = Path(__file__).resolve().parents[2]
_LISTENING = re.compile(r"http://([0-9.]+):([0-9]+) ")


def _serve(serving_dir, *flags):
    proc = subprocess.Popen(
        [sys.executable, "-m", "serving.commands", "serve", "--serving-dir", str(serving_dir)]
        + ["--port", "0", "--poll-seconds", "0.5", "--no-access-log", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    log: list[str] = []
    threading.Thread(target=lambda: log.extend(proc.stderr), daemon=True).start()
    line = proc.stdout.readline()
    match = _LISTENING.search(line)
    assert match, f"no listening line: {line!r}"
    assert "a fresh worker process after 1 hot reload" in line
    return proc, match[1], int(match[2]), log


def _workers(pid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return {int(p) for p in f.read().split()}


def _wait(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {seconds:g} s: {what}")


def _ranking_version(host: str, port: int) -> int | None:
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request("GET", f"/v1/models/{names.RANKING}")
        response = conn.getresponse()
        body = json.loads(response.read())
    except OSError:
        return None
    finally:
        conn.close()
    if response.status != 200:
        return None
    return int(body["model_version_status"][0]["version"])


class _Load:
    """Clients on keep-alive connections (``http.client`` reconnects after a
    ``Connection: close``); every request that does not get a 200 is a failure: none is
    sent again."""

    def __init__(self, host: str, port: int, clients: int = 4):
        self.host, self.port = host, port
        self.stop = threading.Event()
        self.ok = 0
        self.failed: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, args=(i,)) for i in range(clients)]
        for t in self.threads:
            t.start()

    def _client(self, i: int) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        n = 0
        while not self.stop.is_set():
            n += 1
            user = f"u{(i * 7 + n) % 20}"
            try:
                if n % 3:
                    conn.request("POST", "/v1/recommend", json.dumps({"user_id": user, "k": 3}))
                else:
                    conn.request("GET", "/v1/movies/m1/similar?k=3")
                response = conn.getresponse()
                response.read()
                outcome = None if response.status == 200 else f"status {response.status}"
            except OSError as err:
                outcome = f"{type(err).__name__}: {err}"
                conn.close()
            with self.lock:
                if outcome is None:
                    self.ok += 1
                else:
                    self.failed.append(outcome)
        conn.close()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


def test_a_hot_reload_hands_the_port_to_a_fresh_worker_losing_no_request(
    serving_dir, staged, tmp_path
):
    served = tmp_path / "serving"
    for name in names.MODEL_NAMES:
        push.push_atomically(staged.models[name], served / name)
    proc, host, port, log = _serve(served)
    load = None
    try:
        (first,) = _workers(proc.pid)
        load = _Load(host, port)
        _wait(lambda: load.ok >= 20, 60, "requests answered")
        for name in names.MODEL_NAMES:  # version 2 of each: the first worker reloads it
            push.push_atomically(staged.models[name], served / name)
        successor = _wait(lambda: (_workers(proc.pid) - {first}) or None, 60, "a successor started")
        _wait(lambda: _workers(proc.pid) == successor, 120, "the first worker retired")
        assert _ranking_version(host, port) == 2
        answered = load.ok
        _wait(lambda: load.ok >= answered + 20, 60, "the successor answering")
        load.finish()
        assert load.failed == [], load.failed[:5]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if load is not None:
            load.finish()
        proc.kill()
    text = "".join(log)
    assert "starting its successor" in text and "retires" in text, text[-2000:]
    assert "Traceback" not in text, text[-2000:]


def test_a_worker_that_dies_is_replaced(serving_dir):
    proc, host, port, log = _serve(serving_dir)
    try:
        (first,) = _workers(proc.pid)
        os.kill(first, signal.SIGKILL)
        second = _wait(lambda: (_workers(proc.pid) - {first}) or None, 60, "a replacement worker")
        assert len(second) == 1
        assert _wait(lambda: _ranking_version(host, port), 120, "the replacement serving") == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
    assert "died with exit code -9" in "".join(log)


def _parse(argv):
    parser = argparse.ArgumentParser()
    commands.add_serve_command(parser.add_subparsers(dest="command"))
    return parser.parse_args(["serve", *argv])


def test_workers_get_the_supervisors_flags():
    args = _parse(
        ["--workers", "3", "--queue", "5", "--drain-seconds", "1.5", "--no-access-log"]
        + ["--poll-seconds", "0.25", "--recycle-after-reloads", "4"]
    )
    again = _parse(commands._worker_args(args, "/srv/models"))
    for key in commands._DEFAULTS:
        if key != "recycle_after_reloads":
            assert getattr(again, key) == getattr(args, key), key
    assert (again.serving_dir, again.poll_seconds) == ("/srv/models", 0.25)
    assert args.recycle_after_reloads == 4 and _parse([]).recycle_after_reloads == 1


@pytest.mark.parametrize("value", ["-1", "2000000"])
def test_recycle_flag_out_of_range_exits_2(value, tmp_path, capsys):
    assert commands.cmd_serve(_parse(["--recycle-after-reloads", value]), tmp_path) == 2
    assert "--recycle-after-reloads must be" in capsys.readouterr().err
