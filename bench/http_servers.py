"""The standard-library HTTP server of ``movierec serve`` against uvicorn serving the same App.

``bench/__main__.py`` calls :func:`run` (``make bench ARGS=http_servers``). Both servers run
in a child process over one serving directory (ml-100k models, built as ``bench.serving``
builds them) and answer through the same ``serving.server.App`` (same routes, same JSON
shapes and error bodies): the stdlib one is ``python -m serving.commands serve``; the uvicorn
one is this module's ``__main__``, an ASGI adapter that runs ``App.handle`` in uvicorn's
thread pool (one process: more workers would each hold a copy of the models). The same
closed-loop keep-alive load (``bench.serving.load``) measures req/s and p99 at c=8 and c=32
on ``POST /v1/recommend``, three runs each, medians printed.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # TFRS needs Keras 2: set before TensorFlow loads

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONCURRENCY = (8, 32)
REPEATS = 3


def asgi_app(serving_dir: str):
    """An ASGI application answering every request with ``serving.server.App``."""
    import asyncio

    from serving import server, service

    store = service.open_store(serving_dir)
    store.poll()
    app = server.App(store)

    async def application(scope, receive, send):
        if scope["type"] != "http":
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        target = scope["path"] + (
            "?" + scope["query_string"].decode() if scope["query_string"] else ""
        )
        status, payload, headers = await asyncio.to_thread(
            app.handle, scope["method"], target, body
        )
        if isinstance(payload, server.RawBody):  # /metrics
            data, content_type = payload.data, payload.content_type.encode()
        else:
            data, content_type = json.dumps(payload).encode(), b"application/json"
        raw = [(b"content-type", content_type), (b"content-length", str(len(data)).encode())]
        raw += [(k.lower().encode(), str(v).encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": data})

    return application


def _start_uvicorn(serving_dir: Path, port: int, log_path: Path) -> subprocess.Popen:
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.http_servers", "--serve", str(serving_dir), str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    from bench.serving import _request

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"uvicorn exited with {proc.returncode}; see {log_path}")
        try:
            status, _ = _request("127.0.0.1", port, "GET", "/readyz", None)
            if status == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError(f"uvicorn did not get ready; see {log_path}")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _measure(host, port, bodies, seconds) -> dict:
    from bench.serving import load

    out = {}
    for c in CONCURRENCY:
        runs = [load(host, port, "/v1/recommend", bodies, c, seconds) for _ in range(REPEATS)]
        out[c] = {
            "rps": statistics.median(r["rps"] for r in runs),
            "p99_ms": statistics.median(r["p99_ms"] for r in runs),
            "errors": sum(r["errors"] for r in runs),
        }
    return out


def run(out=sys.stdout, serving_dir: str | None = None, seconds: float = 5.0) -> dict:
    """Measures both servers; returns ``{server: {concurrency: {rps, p99_ms, errors}}}``."""
    from bench import serving as serving_bench

    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        if serving_dir is None:
            print("\nHTTP servers: training on MovieLens 100k and pushing ...", file=out)
            ids = serving_bench.build_ml100k_serving_dir(Path(tmp) / "serving")
            serving_dir = Path(tmp) / "serving"
        else:
            ids = serving_bench._ids_of(Path(serving_dir))
        rng = random.Random(0)
        bodies = [json.dumps({"user_id": u, "k": 10}) for u in rng.sample(ids["users"], 500)]
        results = {}
        proc, host, port = serving_bench.start_server(Path(serving_dir), Path(tmp) / "std.log")
        try:
            results["stdlib ThreadingHTTPServer"] = _measure(host, port, bodies, seconds)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        port = _free_port()
        proc = _start_uvicorn(Path(serving_dir), port, Path(tmp) / "uvicorn.log")
        try:
            results["uvicorn (1 process, App in its thread pool)"] = _measure(
                "127.0.0.1", port, bodies, seconds
            )
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    print(
        f"\nPOST /v1/recommend, medians of {REPEATS} closed-loop runs of {seconds:.0f} s:", file=out
    )
    print(f"  {'server':<46}{'conc':>5}{'req/s':>9}{'p99 ms':>9}{'errors':>8}", file=out)
    for name, by_c in results.items():
        for c, r in by_c.items():
            print(
                f"  {name:<46}{c:>5}{r['rps']:>9.0f}{r['p99_ms']:>9.1f}{r['errors']:>8}", file=out
            )
    std, uv = results.values()
    for c in CONCURRENCY:
        print(f"  c={c}: uvicorn / stdlib req/s = {uv[c]['rps'] / std[c]['rps']:.2f}", file=out)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.http_servers")
    parser.add_argument("--serve", nargs=2, metavar=("SERVING_DIR", "PORT"))
    args = parser.parse_args()
    if args.serve:
        import uvicorn

        uvicorn.run(
            asgi_app(args.serve[0]),
            host="127.0.0.1",
            port=int(args.serve[1]),
            log_level="warning",
            access_log=False,
        )
    else:
        run()
