"""``movierec serve``: the HTTP server over a serving directory, reloading new pushes.

``pipeline.cli`` adds the subcommand with :func:`add_serve_command` and runs
:func:`cmd_serve` with its parsed ``args`` and working directory;
``python -m serving.commands serve ...`` runs it alone (``bench/serving.py`` does).

Flags (validated before anything loads: a non-finite or out-of-range value exits 2 with a
message naming the flag): ``--serving-dir``, ``--host``, ``--port`` (0 picks a free one),
``--poll-seconds``; the server's bounds ``--workers``, ``--queue``,
``--request-timeout-seconds`` (then 504), ``--read-timeout-seconds`` (then 408),
``--max-connections`` (then 503 and closed), ``--idle-timeout-seconds``,
see ``serving.server.Limits``;
``--drain-seconds`` and ``--no-access-log``.

Shutdown: SIGTERM or SIGINT stops accepting connections and answers ``/readyz`` 503 at
once, lets the requests in flight finish for up to ``--drain-seconds``, then exits 0.

Processes: with ``--recycle-after-reloads N`` (default 1) the command is a supervisor
(``serving.supervisor``: no TensorFlow in it) that binds the port and runs the server in a
worker process, replaced by a fresh one on the same socket after N hot reloads, so memory a
reload leaves behind in TensorFlow is given back; 0 serves in this one process. The workers
are this module run with the hidden ``--listen-fd``/``--control-fd``.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # TFRS needs Keras 2: set before TensorFlow loads

import argparse
import logging
import math
import signal
import sys
import threading
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8501  # TF Serving's REST port
DEFAULT_POLL_SECONDS = 2.0
DEFAULT_WORKERS = 8  # 2 cores; TensorFlow releases the GIL, so a few more than cores
DEFAULT_QUEUE = 64  # c=32 closed-loop load stays well inside it
DEFAULT_REQUEST_TIMEOUT_SECONDS = 30.0
DEFAULT_READ_TIMEOUT_SECONDS = 10.0
DEFAULT_MAX_CONNECTIONS = 256
DEFAULT_IDLE_TIMEOUT_SECONDS = 60.0  # keep it above a load balancer's own idle timeout
DEFAULT_DRAIN_SECONDS = 20.0
DEFAULT_RECYCLE_AFTER_RELOADS = 1  # the soak's RSS stays flat only when every reload recycles

# flag -> (lowest, lowest allowed itself, highest): numbers checked by cmd_serve.
_RANGES = {
    "port": (0, True, 65535),
    "poll_seconds": (0, False, 86400),
    "workers": (1, True, 1024),
    "queue": (0, True, 100_000),
    "request_timeout_seconds": (0, False, 3600),
    "read_timeout_seconds": (0, False, 3600),
    "max_connections": (1, True, 100_000),
    "idle_timeout_seconds": (0, False, 86400),
    "drain_seconds": (0, True, 3600),
    "recycle_after_reloads": (0, True, 1_000_000),
}
_DEFAULTS = {
    "workers": DEFAULT_WORKERS,
    "queue": DEFAULT_QUEUE,
    "request_timeout_seconds": DEFAULT_REQUEST_TIMEOUT_SECONDS,
    "read_timeout_seconds": DEFAULT_READ_TIMEOUT_SECONDS,
    "max_connections": DEFAULT_MAX_CONNECTIONS,
    "idle_timeout_seconds": DEFAULT_IDLE_TIMEOUT_SECONDS,
    "drain_seconds": DEFAULT_DRAIN_SECONDS,
    "recycle_after_reloads": 0,  # a caller building args itself serves in its own process
    "access_log": True,
}
WORKDIR_ENV = "MOVIEREC_WORKDIR"
DEFAULT_WORKDIR = "movierec_work"


def workdir_from(env) -> Path:
    """The working directory ``$MOVIEREC_WORKDIR`` names (default ``./movierec_work``), absolute."""
    return Path(env.get(WORKDIR_ENV, DEFAULT_WORKDIR)).resolve()


def add_serve_command(subparsers) -> argparse.ArgumentParser:
    """Adds ``serve`` and its flags to the ``movierec`` subparsers; returns its parser."""
    serve = subparsers.add_parser(
        "serve", help="HTTP server: TF Serving's REST API and /v1/recommend over pushed models"
    )
    serve.add_argument(
        "--serving-dir",
        help="a directory or gs://BUCKET/PATH (polled through Cloud Storage's API; newest "
        "complete versions mirrored to a temporary directory); default: $MOVIEREC_WORKDIR/serving",
    )
    serve.add_argument("--host", default=DEFAULT_HOST, help=f"default: {DEFAULT_HOST}")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default: {DEFAULT_PORT}")
    serve.add_argument(
        "--poll-seconds",
        type=float,
        default=DEFAULT_POLL_SECONDS,
        help=f"how often to look for newly pushed versions (default: {DEFAULT_POLL_SECONDS})",
    )
    for flag, kind, default, text in (
        ("--workers", int, DEFAULT_WORKERS, "threads running requests"),
        ("--queue", int, DEFAULT_QUEUE, "requests waiting for a worker; beyond: 503"),
        (
            "--request-timeout-seconds",
            float,
            DEFAULT_REQUEST_TIMEOUT_SECONDS,
            "a request not answered this long after it was read gets 504",
        ),
        (
            "--read-timeout-seconds",
            float,
            DEFAULT_READ_TIMEOUT_SECONDS,
            "a request (headers and body) not received within this gets 408, closed",
        ),
        ("--max-connections", int, DEFAULT_MAX_CONNECTIONS, "open connections; beyond: 503"),
        (
            "--idle-timeout-seconds",
            float,
            DEFAULT_IDLE_TIMEOUT_SECONDS,
            "an idle keep-alive connection is closed after this (sent as Keep-Alive: timeout=)",
        ),
        (
            "--drain-seconds",
            float,
            DEFAULT_DRAIN_SECONDS,
            "on SIGTERM/SIGINT, how long requests in flight may take to finish",
        ),
    ):
        serve.add_argument(flag, type=kind, default=default, help=f"{text} (default: {default})")
    serve.add_argument(
        "--recycle-after-reloads",
        type=int,
        default=DEFAULT_RECYCLE_AFTER_RELOADS,
        help="serve in a worker process replaced by a fresh one on the same port after this "
        "many hot reloads, giving back what TensorFlow keeps of replaced models; 0: one "
        f"process (default: {DEFAULT_RECYCLE_AFTER_RELOADS})",
    )
    serve.add_argument(
        "--no-access-log",
        dest="access_log",
        action="store_false",
        help="no INFO line per request",
    )
    # A worker of serving.supervisor: the inherited listening socket and control pipe.
    serve.add_argument("--listen-fd", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--control-fd", type=int, help=argparse.SUPPRESS)
    return serve


def _worker_args(args, serving_dir) -> list[str]:
    """The ``serve`` flags a supervisor's workers get: ``args`` without the supervisor's own."""
    argv = ["--serving-dir", str(serving_dir), "--poll-seconds", repr(args.poll_seconds)]
    for key in _DEFAULTS:
        if key in ("recycle_after_reloads", "access_log"):
            continue
        argv += ["--" + key.replace("_", "-"), repr(getattr(args, key, _DEFAULTS[key]))]
    if not getattr(args, "access_log", True):
        argv.append("--no-access-log")
    return argv


def _supervise(args, serving_dir, flag, out) -> int:
    """``movierec serve`` as a supervisor of worker processes (``serving.supervisor``)."""
    from serving import supervisor

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        sock = supervisor.listen(args.host, args.port)
    except OSError as err:
        print(f"movierec: cannot listen on {args.host}:{args.port}: {err}", file=sys.stderr)
        return 2
    host, port = sock.getsockname()[:2]
    n = flag["recycle_after_reloads"]
    announce = supervisor.announce_line(
        out,
        host,
        port,
        serving_dir,
        args.poll_seconds,
        f"; a fresh worker process after {n} hot reload{'s' if n > 1 else ''}",
    )
    boss = supervisor.Supervisor(sock, _worker_args(args, serving_dir), n, flag["drain_seconds"])
    try:
        return boss.run(announce)
    finally:
        sock.close()


def check_flags(args) -> str | None:
    """The first flag out of its range (NaN and infinities included), as a message."""
    for key, (low, inclusive, high) in _RANGES.items():
        value = getattr(args, key, _DEFAULTS.get(key))
        ok = (value >= low if inclusive else value > low) and value <= high
        if not (ok and math.isfinite(value)):
            flag = "--" + key.replace("_", "-")
            return f"{flag} must be {'>=' if inclusive else '>'} {low} and <= {high}, got {value}"
    return None


def _serving_dir(value: str | None, workdir: Path) -> str | Path:
    """The serving directory to serve: ``gs://`` URIs stay strings (``Path`` would fold their
    double slash), paths become ``Path``s."""
    if value is None:
        return workdir / "serving"
    from serving import gcs

    if gcs.is_gcs(value):
        gcs.split_uri(value)  # a bad bucket name fails here, naming it
        return value
    return Path(value)


def cmd_serve(args, workdir: Path, out=sys.stdout) -> int:
    """Loads the newest models, then serves until SIGINT or SIGTERM, then drains.

    Args:
      args: ``serving_dir`` (None: ``<workdir>/serving``), ``host``, ``port``,
        ``poll_seconds``, ``workers``, ``queue``, ``request_timeout_seconds``,
        ``read_timeout_seconds``, ``max_connections``, ``drain_seconds``, ``access_log``
        (the last seven default when absent).
      workdir: the working directory (:func:`workdir_from`).
      out: where the listening line is printed.

    Returns:
      The exit code: 0 after a shutdown (drained or not), 2 for a bad flag or a port in
      use.
    """
    problem = check_flags(args)
    if problem:
        print(f"movierec: {problem}", file=sys.stderr)
        return 2
    # Imported here so that building the CLI's parser does not load TensorFlow.
    from serving import server as server_lib
    from serving import service

    flag = {key: getattr(args, key, default) for key, default in _DEFAULTS.items()}
    try:
        serving_dir = _serving_dir(args.serving_dir, workdir)
    except ValueError as err:
        print(f"movierec: --serving-dir: {err}", file=sys.stderr)
        return 2
    listen_fd = getattr(args, "listen_fd", None)
    if flag["recycle_after_reloads"] and listen_fd is None:
        return _supervise(args, serving_dir, flag, out)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    log = logging.getLogger("serving.commands")
    reporter = None
    if getattr(args, "control_fd", None) is not None:
        from serving import supervisor

        reporter = supervisor.Reporter(args.control_fd)
    store = service.open_store(serving_dir)
    store.poll()
    dir_problem = server_lib.serving_dir_problem(store)
    if dir_problem:
        log.warning("%s: not ready until models are pushed there", dir_problem)
    limits = server_lib.Limits(
        workers=flag["workers"],
        queue=flag["queue"],
        request_timeout=flag["request_timeout_seconds"],
        read_timeout=flag["read_timeout_seconds"],
        max_connections=flag["max_connections"],
        idle_timeout=flag["idle_timeout_seconds"],
    )
    sock = None
    if listen_fd is not None:
        import socket

        sock = socket.socket(fileno=listen_fd)
    try:
        server = server_lib.make_server(
            store, args.host, args.port, limits, access_log=flag["access_log"], sock=sock
        )
    except OSError as err:
        print(f"movierec: cannot listen on {args.host}:{args.port}: {err}", file=sys.stderr)
        return 2
    if reporter is None:
        from serving import supervisor

        store.start(args.poll_seconds)
        host, port = server.server_address[:2]
        supervisor.announce_line(out, host, port, serving_dir, args.poll_seconds, "")(
            store.snapshot.versions()
        )
    else:
        store.start(
            args.poll_seconds,
            on_switch=lambda _: reporter.send("switched", versions=store.snapshot.versions()),
        )
        ready = dir_problem is None and bool(store.snapshot.versions())
        reporter.send("started", ready=ready, versions=store.snapshot.versions())
    how = {}  # "drain" or "retire": the first signal decides, a SIGTERM may hasten a retire

    def stop(signum, frame):
        if server.app.draining:
            return
        server.app.draining = True  # /readyz answers 503 from now on
        log.info("%s: draining (up to %g s)", signal.Signals(signum).name, flag["drain_seconds"])
        if not how:
            how["mode"] = "drain"
            # shutdown() waits for serve_forever() to return, so it cannot run on its thread.
            threading.Thread(target=server.shutdown, daemon=True).start()

    def retire(signum, frame):
        if how:
            return
        how["mode"] = "retire"
        log.info("a successor serves: retiring once open connections close")
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if reporter is not None:
        from serving import supervisor

        signal.signal(supervisor.RETIRE_SIGNAL, retire)
    try:
        server.serve_forever()
        if how.get("mode") == "retire":
            # Idle connections reach their idle timeout; a request read meanwhile finishes.
            grace = limits.idle_timeout + limits.read_timeout + limits.request_timeout
            drained = server.drain(grace, retire=True)
        else:
            drained = server.drain(flag["drain_seconds"])
        log.info("drained; exiting" if drained else "drain period over; exiting")
    finally:
        store.stop()
        server.server_close()
    return 0


def main(argv=None) -> int:
    """``python -m serving.commands serve [flags]``, outside the ``movierec`` CLI."""
    parser = argparse.ArgumentParser(prog="python -m serving.commands")
    add_serve_command(parser.add_subparsers(dest="command", required=True))
    return cmd_serve(parser.parse_args(argv), workdir_from(os.environ))


if __name__ == "__main__":
    sys.exit(main())
