"""``movierec serve``'s parent process: owns the listening socket, runs the server in a
worker process and replaces the worker after ``recycle_after`` hot reloads.

Why: TensorFlow does not give back all that ``tf.saved_model.load`` took when a loaded model
is dropped (tensorflow/tensorflow#45453, #40171; here 5-10 MB per load, and 35 MB per
ml-100k bundle in the 10-minute soak even after ``gc.collect`` and ``malloc_trim``). A
process that hot-reloads daily grows without end; a fresh process does not carry it.

How (the pre-fork servers' hand-over, gunicorn's ``max_requests`` in spirit):

1. The supervisor binds and listens (a port in use fails here, exit 2), then starts a worker
   ``python -m serving.commands serve ... --listen-fd N --control-fd M``: the worker inherits
   the listening socket and a pipe on which it writes JSON lines: ``{"event": "started",
   "ready": bool, "versions": {...}}`` once its first load is done, ``{"event": "switched",
   "versions": {...}}`` after each hot reload.
2. After the worker's ``recycle_after``-th hot reload a successor is started on the same
   socket. It loads the same serving directory from scratch (the old worker keeps serving
   meanwhile: it already serves the new versions, the reload happened in place). Once the
   successor has started, and is ready or the old worker was not, the old worker gets
   SIGUSR1: it stops accepting (closing only its own descriptor, so the kernel hands new
   connections to the successor), keeps ``/readyz`` 200, answers each request still sent on
   its connections with ``Connection: close``, lets idle keep-alive connections reach their
   idle timeout, then exits. A successor that fails to start is retried with backoff while
   the old worker serves on.
3. A worker that dies (a crash, the OOM killer) is replaced at once, with backoff if it keeps
   dying within a minute of its start.
4. SIGTERM or SIGINT: the supervisor closes its listening descriptor and sends SIGTERM to every
   worker (each drains as ``serving.server.Server.drain`` says), waits for them (SIGKILL after
   the drain period and a margin), and exits 0.

The supervisor never imports TensorFlow: its RSS is a Python interpreter's. Each worker has
its own ``/metrics`` registry, so counters restart with a successor (Prometheus' ``rate``
treats a reset as one).
"""

import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any, TextIO

log = logging.getLogger(__name__)

BACKLOG = 128  # as serving.server.Server.request_queue_size: c=32 load connects at once
BACKOFF_INITIAL_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 60.0
_CRASH_WINDOW_SECONDS = 60.0  # a worker dying sooner than this after its start backs off
_KILL_MARGIN_SECONDS = 10.0
RETIRE_SIGNAL = signal.SIGUSR1


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``(host, port)`` (0 picks a free port), inheritable.

    Raises:
      OSError: the address cannot be bound (in use, not local).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class Reporter:
    """The worker's side of the control pipe: one JSON line per event, never raising (a
    supervisor gone is no reason for the worker to fail a request)."""

    def __init__(self, fd: int):
        self._file = os.fdopen(fd, "w", buffering=1)
        self._lock = threading.Lock()

    def send(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, **fields})
        with self._lock:
            try:
                self._file.write(line + "\n")
            except (OSError, ValueError):
                pass


class _Worker:
    """One worker process and what it reported."""

    def __init__(self, number: int, proc: subprocess.Popen):
        self.number = number
        self.proc = proc
        self.started_at = time.monotonic()
        self.ready = False
        self.versions: dict[str, int] = {}
        self.switches = 0
        self.retiring = False

    @property
    def pid(self) -> int:
        return self.proc.pid


class Supervisor:
    """Runs and replaces ``movierec serve`` workers on one listening socket.

    Args:
      sock: the listening socket (:func:`listen`).
      worker_args: the ``serve`` flags each worker gets (without ``--listen-fd``,
        ``--control-fd``, ``--recycle-after-reloads``).
      recycle_after: hot reloads after which a worker is replaced (>= 1).
      drain_seconds: the workers' drain period on SIGTERM, plus a margin before SIGKILL.
      env: the workers' environment (default: this process's).
    """

    def __init__(
        self,
        sock: socket.socket,
        worker_args: list[str],
        recycle_after: int,
        drain_seconds: float,
        env: dict[str, str] | None = None,
    ):
        self.sock = sock
        self.worker_args = list(worker_args)
        self.recycle_after = recycle_after
        self.drain_seconds = drain_seconds
        self.env = dict(os.environ if env is None else env)
        self._events: queue.Queue = queue.Queue()
        self._workers: list[_Worker] = []
        self._current: _Worker | None = None  # the worker that serves (not retiring)
        self._successor: _Worker | None = None
        self._count = 0
        self._backoff = BACKOFF_INITIAL_SECONDS
        self._spawn_at: float | None = None  # when to start the next worker, if due
        self._stopping = False

    def run(self, announce) -> int:
        """Serves until SIGTERM/SIGINT; ``announce(versions)`` is called once, when the first
        worker has started. Returns the exit code (0 after a shutdown)."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda signum, frame: self._events.put(("signal", None, signum)))
        self._current = self._spawn()
        announced = False
        while True:
            timeout = None
            if self._spawn_at is not None:
                timeout = max(0.0, self._spawn_at - time.monotonic())
            try:
                kind, worker, payload = self._events.get(timeout=timeout)
            except queue.Empty:
                self._spawn_due()
                continue
            if kind == "signal":
                return self._shutdown(payload)
            if kind == "exited":
                self._exited(worker, payload)
            elif kind == "started":
                worker.ready = bool(payload.get("ready"))
                worker.versions = payload.get("versions", {})
                if not announced and worker is self._current:
                    announce(worker.versions)
                    announced = True
                if worker is self._successor:
                    self._hand_over(worker)
            elif kind == "switched":
                worker.versions = payload.get("versions", worker.versions)
                worker.ready = True
                worker.switches += 1
                if (
                    worker is self._current
                    and worker.switches >= self.recycle_after
                    and self._successor is None
                    and self._spawn_at is None
                ):
                    log.info(
                        "worker %d (pid %d): %d hot reload(s); starting its successor",
                        worker.number,
                        worker.pid,
                        worker.switches,
                    )
                    self._successor = self._spawn()

    # --- workers -------------------------------------------------------------------------

    def _spawn(self) -> _Worker:
        self._count += 1
        read_fd, write_fd = os.pipe()
        fd = self.sock.fileno()
        command = [sys.executable, "-m", "serving.commands", "serve", *self.worker_args]
        command += ["--listen-fd", str(fd), "--control-fd", str(write_fd)]
        proc = subprocess.Popen(
            command,
            pass_fds=(fd, write_fd),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # the supervisor prints the listening line
            env=self.env,
        )
        os.close(write_fd)
        worker = _Worker(self._count, proc)
        self._workers.append(worker)
        log.info("worker %d started (pid %d)", worker.number, worker.pid)
        threading.Thread(target=self._read, args=(worker, read_fd), daemon=True).start()
        return worker

    def _read(self, worker: _Worker, read_fd: int) -> None:
        """Forwards the worker's control lines, then its exit, to the event queue."""
        with os.fdopen(read_fd) as lines:
            for line in lines:
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                if isinstance(message, dict) and message.get("event") in ("started", "switched"):
                    self._events.put((message["event"], worker, message))
        self._events.put(("exited", worker, worker.proc.wait()))

    def _hand_over(self, successor: _Worker) -> None:
        old = self._current
        if not successor.ready and old is not None and old.ready:
            log.warning(
                "worker %d (pid %d) started without models to serve; worker %d serves on",
                successor.number,
                successor.pid,
                old.number,
            )
            self._successor = None
            successor.retiring = True
            _signal(successor, signal.SIGTERM)
            self._retry_later()
            return
        self._current, self._successor = successor, None
        self._backoff = BACKOFF_INITIAL_SECONDS
        if old is not None and old.proc.poll() is None:
            log.info(
                "worker %d (pid %d) serves %s; worker %d (pid %d) retires",
                successor.number,
                successor.pid,
                successor.versions or "nothing yet",
                old.number,
                old.pid,
            )
            old.retiring = True
            _signal(old, RETIRE_SIGNAL)

    def _exited(self, worker: _Worker, code: int) -> None:
        self._workers.remove(worker)
        if worker.retiring:
            level = logging.INFO if code == 0 else logging.WARNING
            log.log(level, "worker %d (pid %d) exited with %d", worker.number, worker.pid, code)
            return
        log.error("worker %d (pid %d) died with exit code %d", worker.number, worker.pid, code)
        if worker is self._successor:
            self._successor = None
            self._retry_later()
        elif worker is self._current:
            self._current = None
            if self._successor is not None:  # it takes over once started
                self._current, self._successor = self._successor, None
            elif time.monotonic() - worker.started_at < _CRASH_WINDOW_SECONDS:
                self._retry_later()
            else:
                self._current = self._spawn()

    def _retry_later(self) -> None:
        log.info("starting a worker again in %g s", self._backoff)
        self._spawn_at = time.monotonic() + self._backoff
        self._backoff = min(BACKOFF_MAX_SECONDS, self._backoff * 2)

    def _spawn_due(self) -> None:
        self._spawn_at = None
        if self._current is None:
            self._current = self._spawn()
        elif self._successor is None:
            self._successor = self._spawn()

    def _shutdown(self, signum: int) -> int:
        name = signal.Signals(signum).name
        log.info("%s: stopping %d worker(s)", name, len(self._workers))
        self.sock.close()  # with the workers' own descriptors closed, connections are refused
        for worker in self._workers:
            _signal(worker, signal.SIGTERM)
        deadline = time.monotonic() + self.drain_seconds + _KILL_MARGIN_SECONDS
        for worker in list(self._workers):
            try:
                worker.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker %d (pid %d) did not exit; killed", worker.number, worker.pid)
                worker.proc.kill()
                worker.proc.wait()
        return 0


def _signal(worker: _Worker, signum: int) -> None:
    try:
        worker.proc.send_signal(signum)
    except ProcessLookupError:
        pass


def announce_line(out: TextIO, host: str, port: int, source, poll_seconds: float, extra: str):
    """The line ``movierec serve`` prints once it serves (tests and scripts read its URL)."""

    def announce(versions) -> None:
        print(
            f"movierec serve: http://{host}:{port} over {source} (models: "
            f"{versions or 'none yet'}; polling every {poll_seconds:g} s{extra})",
            file=out,
            flush=True,
        )

    return announce
