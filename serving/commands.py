"""``movierec serve``: the HTTP server over a serving directory, reloading new pushes.

``pipeline.cli`` adds the subcommand with :func:`add_serve_command` and runs
:func:`cmd_serve` with its parsed ``args`` and working directory;
``python -m serving.commands serve ...`` runs it alone (``bench/serving.py`` does).
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # TFRS needs Keras 2: set before TensorFlow loads

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8501  # TF Serving's REST port
DEFAULT_POLL_SECONDS = 2.0
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
    serve.add_argument("--serving-dir", help="default: $MOVIEREC_WORKDIR/serving")
    serve.add_argument("--host", default=DEFAULT_HOST, help=f"default: {DEFAULT_HOST}")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default: {DEFAULT_PORT}")
    serve.add_argument(
        "--poll-seconds",
        type=float,
        default=DEFAULT_POLL_SECONDS,
        help=f"how often to look for newly pushed versions (default: {DEFAULT_POLL_SECONDS})",
    )
    return serve


def cmd_serve(args, workdir: Path, out=sys.stdout) -> int:
    """Loads the newest models, then serves until SIGINT or SIGTERM.

    Args:
      args: ``serving_dir`` (None: ``<workdir>/serving``), ``host``, ``port``,
        ``poll_seconds``.
      workdir: the working directory (:func:`workdir_from`).
      out: where the listening line is printed.

    Returns:
      The exit code: 0 after a clean shutdown, 2 for a bad flag or a port in use.
    """
    if args.poll_seconds <= 0:
        print(f"movierec: --poll-seconds must be > 0, got {args.poll_seconds}", file=sys.stderr)
        return 2
    # Imported here so that building the CLI's parser does not load TensorFlow.
    from serving import server as server_lib
    from serving import service

    serving_dir = Path(args.serving_dir) if args.serving_dir else workdir / "serving"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    store = service.open_store(serving_dir)
    store.poll()
    try:
        server = server_lib.make_server(store, args.host, args.port)
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
        # shutdown() waits for serve_forever() to return, so it cannot run on its thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
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
