"""Soak: ``movierec serve`` under mixed traffic for minutes, hot reloads, then a SIGTERM restart.

``bench/__main__.py`` calls :func:`run` (``make bench ARGS=soak``; ``--soak-seconds`` sets
the length, 600 by default; ``--soak-recycle`` the server's ``--recycle-after-reloads``).
One server (``python -m serving.commands serve``: a supervisor and its worker processes)
over ml-100k models (built as ``bench.serving`` builds them) takes a closed loop of 32
keep-alive connections: 60% ``POST /v1/recommend``, 20% ``POST /v1/rate``, 10%
``GET /v1/movies/{id}/similar``, 10% ``POST /v1/models/ranking:predict``. Every minute new
versions of the three models are pushed (``publish.push.push_atomically``, as the Pusher
does) and the server hot-reloads them. At the end the server gets SIGTERM under the same
load and a new one is started on the same port; the load generator, like a load balancer,
sends no new request to a server whose ``/readyz`` is not 200 (it waits and retries) but
counts every request that was sent and did not get its answer.

Printed: requests, failed requests (non-2xx answers, or an accepted request whose answer
never came; target 0), p50/p99 per minute, the server's RSS (its process tree's) after
warm-up and before the SIGTERM (target: < 5% growth), its peak and its value before each
push, the drain's exit code, and how many requests were sent again because the server had
closed their idle keep-alive connection. Nothing is asserted.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # TFRS needs Keras 2: set before TensorFlow loads

import http.client
import json
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench import proc

CONCURRENCY = 32
# Failures of a request on a reused keep-alive connection before any answer byte: the server
# closed the idle connection (drain, idle timeout) and never read the request.
_NOT_SENT = (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected)
RELOAD_EVERY_SECONDS = 60.0
WARMUP_SECONDS = 20.0


class _RssSampler:
    """The server tree's RSS once a second: its peak, and its value before each push (the
    steady state a minute after the previous one)."""

    def __init__(self, pid: int):
        self.pid, self.peak, self.stop = pid, 0.0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(1.0):
            self.peak = max(self.peak, proc.tree_rss_mb(self.pid))


def _requests(ids: dict, rng: random.Random):
    """An endless stream of ``(method, path, body)`` in the soak's mix."""
    users, movies = ids["users"], ids["movies"]
    while True:
        roll = rng.random()
        user, movie = rng.choice(users), rng.choice(movies)
        if roll < 0.6:
            yield "POST", "/v1/recommend", json.dumps({"user_id": user, "k": 10})
        elif roll < 0.8:
            yield "POST", "/v1/rate", json.dumps({"user_id": user, "movie_id": movie})
        elif roll < 0.9:
            yield "GET", f"/v1/movies/{movie}/similar?k=10", None
        else:
            body = {"instances": [{"user_id": user, "movie_id": movie}]}
            yield "POST", "/v1/models/ranking:predict", json.dumps(body)


class _Load:
    """The closed-loop load: ``CONCURRENCY`` threads, one keep-alive connection each."""

    def __init__(self, host: str, port: int, ids: dict):
        self.host, self.port, self.ids = host, port, ids
        self.routable = threading.Event()  # what a load balancer's health check decides
        self.routable.set()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.samples: list[tuple[float, float]] = []  # (end time, seconds)
        self.failed: list[str] = []
        self.refused = 0
        self.resent = 0  # requests sent again after a reused idle connection was closed

    def _worker(self, slot: int) -> None:
        stream = _requests(self.ids, random.Random(slot))
        conn = None
        headers = {"Content-Type": "application/json"}
        while not self.stop.is_set():
            if not self.routable.wait(timeout=0.5):
                continue
            method, path, body = next(stream)
            if conn is None:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
                try:
                    conn.connect()
                except OSError:  # nothing listening: not routed, not a failed request
                    conn = None
                    with self.lock:
                        self.refused += 1
                    time.sleep(0.2)
                    continue
            t0 = time.perf_counter()
            for attempt in (1, 2):
                reused = attempt == 1 and getattr(conn, "answered", False)  # not its first request
                try:
                    conn.request(method, path, body, headers)
                    response = conn.getresponse()
                    response.read()
                    status = response.status
                    conn.answered = True
                    if response.getheader("Connection", "").lower() == "close":
                        conn.close()
                        conn = None
                    break
                except (OSError, http.client.HTTPException) as err:
                    conn.close()
                    if reused and isinstance(err, _NOT_SENT):
                        # The server had closed this idle keep-alive connection: the request
                        # was never read, so it is sent again on a new connection, as
                        # urllib3, Go's net/http and Envoy do. Counted apart from failures.
                        with self.lock:
                            self.resent += 1
                        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
                        continue
                    status = f"{type(err).__name__}"
                    conn = None
                    break
            t1 = time.perf_counter()
            with self.lock:
                self.samples.append((t1, t1 - t0))
                if not (isinstance(status, int) and 200 <= status < 300):
                    self.failed.append(f"{method} {path}: {status}")
        if conn is not None:
            conn.close()

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._worker, args=(i,)) for i in range(CONCURRENCY)]
        for t in threads:
            t.start()
        return threads


def _push_new_versions(serving_dir: Path) -> dict:
    from publish import push
    from serving import names

    pushed = {}
    for name in names.MODEL_NAMES:
        first = serving_dir / name / str(names.list_versions(serving_dir / name)[0])
        pushed[name] = push.push_atomically(first, serving_dir / name)[0]
    return pushed


def _wait_ready(host: str, port: int, timeout: float = 300) -> None:
    from bench.serving import _request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if _request(host, port, "GET", "/readyz", None)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the restarted server did not get ready")


def _serve(serving_dir: Path, port: int, log_path: Path, flags: list[str]) -> subprocess.Popen:
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, "-m", "serving.commands", "serve", "--port", str(port)]
    with open(log_path, "a") as log:
        return subprocess.Popen(
            [*command, "--serving-dir", str(serving_dir), "--poll-seconds", "2", *flags],
            stdout=log,
            stderr=log,
            env=env,
        )


def run(
    out=sys.stdout,
    seconds: float = 600.0,
    serving_dir: str | None = None,
    recycle_after_reloads: int = 1,
) -> dict:
    """Runs the soak for ``seconds`` (plus warm-up and the restart); returns the figures.
    ``recycle_after_reloads`` is ``serve``'s flag (0: one process reloading in place)."""
    import shutil

    from bench import serving as serving_bench

    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        served = Path(tmp) / "serving"
        if serving_dir is None:
            print("\nSoak: training on MovieLens 100k and pushing ...", file=out)
            ids = serving_bench.build_ml100k_serving_dir(served)
        else:
            shutil.copytree(serving_dir, served)
            ids = serving_bench._ids_of(served)
        log_path = Path(tmp) / "server.log"
        flags = ["--recycle-after-reloads", str(recycle_after_reloads)]
        proc, host, port = serving_bench.start_server(served, log_path, flags)
        load = _Load(host, port, ids)
        threads = load.start()
        time.sleep(WARMUP_SECONDS)
        rss_start = proc.tree_rss_mb(proc.pid)
        sampler = _RssSampler(proc.pid)
        before_push = []  # the tree's RSS just before each push
        start = time.perf_counter()
        reloads = []
        next_reload = start + RELOAD_EVERY_SECONDS
        while time.perf_counter() - start < seconds:
            time.sleep(min(1.0, max(0.0, next_reload - time.perf_counter())))
            if time.perf_counter() >= next_reload:
                before_push.append(proc.tree_rss_mb(proc.pid))
                reloads.append(_push_new_versions(served))
                next_reload += RELOAD_EVERY_SECONDS
        rss_end = proc.tree_rss_mb(proc.pid)
        sampler.stop.set()
        # Restart under load: SIGTERM drains; the balancer stops routing at once.
        load.routable.clear()
        proc.send_signal(signal.SIGTERM)
        drain_code = proc.wait(timeout=120)
        proc = _serve(served, port, log_path, flags)
        _wait_ready(host, port)
        load.routable.set()
        time.sleep(10)
        load.stop.set()
        for t in threads:
            t.join()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        print(
            f"\nSoak: {seconds:.0f} s at c={CONCURRENCY}, mixed traffic, a push every "
            f"{RELOAD_EVERY_SECONDS:.0f} s ({len(reloads)} hot reloads), then SIGTERM and a "
            "restart under load:",
            file=out,
        )
        ends = np.array([e for e, _ in load.samples])
        latencies = np.array([s for _, s in load.samples]) * 1e3
        print(f"  {'minute':>6}{'requests':>10}{'p50 ms':>9}{'p99 ms':>9}", file=out)
        minute = 0
        while True:
            lo, hi = start + 60 * minute, start + 60 * (minute + 1)
            mask = (ends >= lo) & (ends < hi)
            if lo > ends.max(initial=0):
                break
            if mask.any():
                p50, p99 = np.percentile(latencies[mask], [50, 99])
                print(f"  {minute:>6}{int(mask.sum()):>10}{p50:>9.1f}{p99:>9.1f}", file=out)
            minute += 1
        p99_all = float(np.percentile(latencies, 99)) if latencies.size else float("nan")
        growth = (rss_end - rss_start) / rss_start
        result = {
            "requests": len(load.samples),
            "failed": len(load.failed),
            "refused_while_not_listening": load.refused,
            "resent_after_idle_close": load.resent,
            "p99_ms": p99_all,
            "rss_start_mb": rss_start,
            "rss_end_mb": rss_end,
            "rss_growth": growth,
            "rss_peak_mb": sampler.peak,
            "rss_before_pushes_mb": before_push,
            "recycle_after_reloads": recycle_after_reloads,
            "drain_exit_code": drain_code,
            "reloads": len(reloads),
        }
        print(
            f"  requests {result['requests']}, failed {result['failed']} (target 0), "
            f"p99 {p99_all:.1f} ms\n"
            f"  server RSS (its process tree) {rss_start:.0f} MB after warm-up -> "
            f"{rss_end:.0f} MB before SIGTERM ({100 * growth:+.1f}%, target < 5%); "
            f"peak {sampler.peak:.0f} MB; before each push: "
            f"{', '.join(f'{v:.0f}' for v in before_push)} MB; a fresh worker process "
            f"after {recycle_after_reloads or 'no'} hot reload(s)\n"
            f"  SIGTERM: exit code {drain_code} (0: drained); connections refused while no "
            f"server listened: {load.refused}; requests sent again after the server closed an "
            f"idle keep-alive connection: {load.resent}",
            file=out,
        )
        for failure in load.failed[:10]:
            print(f"  failed: {failure}", file=out)
        return result


if __name__ == "__main__":
    run(seconds=float(sys.argv[1]) if len(sys.argv) > 1 else 600.0)
