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
}
_DEFAULTS = {
    "workers": DEFAULT_WORKERS,
    "queue": DEFAULT_QUEUE,
    "request_timeout_seconds": DEFAULT_REQUEST_TIMEOUT_SECONDS,
    "read_timeout_seconds": DEFAULT_READ_TIMEOUT_SECONDS,
    "max_connections": DEFAULT_MAX_CONNECTIONS,
    "idle_timeout_seconds": DEFAULT_IDLE_TIMEOUT_SECONDS,
    "drain_seconds": DEFAULT_DRAIN_SECONDS,
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
        "--no-access-log",
        dest="access_log",
        action="store_false",
        help="no INFO line per request",
    )
    return serve


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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    log = logging.getLogger("serving.commands")
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
    try:
        server = server_lib.make_server(
            store, args.host, args.port, limits, access_log=flag["access_log"]
        )
    except OSError as err:
        print(f"movierec: cannot listen on {args.host}:{args.port}: {err}", file=sys.stderr)
        return 2
    store.start(args.poll_seconds)
    host, port = server.server_address[:2]
    versions = store.snapshot.versions() or "none yet"
    print(
        f"movierec serve: http://{host}:{port} over {serving_dir} (models: {versions}; "
        f"polling every {args.poll_seconds:g} s)",
        file=out,
        flush=True,
    )

    def stop(signum, frame):
        if server.app.draining:
            return
        server.app.draining = True  # /readyz answers 503 from now on
        log.info("%s: draining (up to %g s)", signal.Signals(signum).name, flag["drain_seconds"])
        # shutdown() waits for serve_forever() to return, so it cannot run on its thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever()
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
