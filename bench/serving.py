"""``movierec serve`` under load: latency and throughput of /v1/recommend and ranking :predict.

``bench/__main__.py`` calls :func:`run`. It trains the model on MovieLens 100k's train split
(the pipeline's random split) and pushes the three serving models into a temporary serving
directory, the way the Pusher does (or takes an existing serving directory), starts
``python -m serving.commands serve`` in a subprocess, and drives it from this process with
a threaded keep-alive HTTP load generator: for each concurrency, every worker thread sends
its next request as soon as the previous answer arrived, for a fixed time after a warm-up
(closed loop), plus one run at a fixed offered rate; ``wrk`` repeats the closed loop when it
is installed. Server and load generator share the machine's cores, as in the target setup.
Figures are printed; nothing is asserted.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # TFRS needs Keras 2: set before TensorFlow loads

import http.client
import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

from data import data_home, records, splits
from publish import push, retrieval
from serving import names
from trainer import data, export, features
from trainer.config import TrainerConfig
from trainer.run import train

CONCURRENCY = (1, 8, 32)
TARGET_RPS = 200
RECOMMEND = "POST /v1/recommend (k=10)"
_LISTENING = re.compile(r"http://([0-9.]+):([0-9]+) ")

_SPLIT = splits.SplitConfig()  # ExampleGen's default split


def build_ml100k_serving_dir(serving_dir: Path, retrieval_k: int = 100) -> dict[str, list[str]]:
    """Trains on ml-100k's train split and pushes retrieval (ScaNN), brute force and ranking.

    Returns:
      ``{"users": [...], "movies": [...]}``: the trained vocabularies (request ids).
    """
    data_dir = data_home.ensure_ml100k(data_home.resolve_data_home(os.environ))
    train_rows = [
        r
        for r in records.iter_ratings(data_dir / "u.data")
        if not isinstance(r, records.Reject)
        and splits.split_of(r.user_id, r.movie_id, _SPLIT.seed, _SPLIT.eval_fraction)
        == features.TRAIN_SPLIT
    ]
    users = [u for u, _ in Counter(r.user_id for r in train_rows).most_common()]
    movies = [m for m, _ in Counter(r.movie_id for r in train_rows).most_common()]
    uidx, midx = {u: i for i, u in enumerate(users)}, {m: i for i, m in enumerate(movies)}
    columns = {
        features.USER_IDX: np.array([uidx[r.user_id] for r in train_rows]),
        features.MOVIE_IDX: np.array([midx[r.movie_id] for r in train_rows]),
        features.RATING: np.array([r.rating for r in train_rows], np.float32),
    }
    model, _ = train(columns, data.Vocabularies(users, movies), TrainerConfig())
    catalogue = records.read_movies(data_dir / "u.item")
    seen_users = np.array([r.user_id for r in train_rows])
    seen_movies = np.array([r.movie_id for r in train_rows])
    histories = export.Histories.from_ids(seen_users, seen_movies)
    counts = Counter(seen_movies.tolist())
    with tempfile.TemporaryDirectory(prefix="bench-staging-") as tmp:
        staging = Path(tmp)
        vocab = data.Vocabularies(users, movies)
        export.export_serving_model(model, vocab, histories, str(staging / names.RANKING))
        for name, kind in (
            (names.RETRIEVAL, "scann"),
            (names.RETRIEVAL_BRUTE_FORCE, "brute_force"),
        ):
            retrieval.export_retrieval_model(
                str(staging / names.RANKING),
                np.array(list(catalogue), dtype=object),
                np.array([m.title for m in catalogue.values()], dtype=object),
                np.array([counts.get(m, 0) for m in catalogue], np.int64),
                histories.max_length(),
                str(staging / name),
                index_kind=kind,
                k=retrieval_k,
            )
        for name in names.MODEL_NAMES:
            push.push_atomically(staging / name, serving_dir / name)
    push.write_models_config(serving_dir, {n: serving_dir / n for n in names.MODEL_NAMES})
    return {"users": users, "movies": movies}


def start_server(
    serving_dir: Path, log_path: Path, flags: tuple[str, ...] | list[str] = ()
) -> tuple[subprocess.Popen, str, int]:
    """``python -m serving.commands serve`` on a free port (and ``flags``); returns once it
    is ready."""
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, "-m", "serving.commands", "serve", "--port", "0"]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [*command, "--serving-dir", str(serving_dir), *flags],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
        )
    for line in proc.stdout:
        match = _LISTENING.search(line)
        if match:
            host, port = match[1], int(match[2])
            status, _ = _request(host, port, "GET", "/readyz", None)
            if status != 200:
                proc.terminate()
                raise RuntimeError(f"the server is not ready (status {status}); see {log_path}")
            return proc, host, port
    raise RuntimeError(f"the server exited with {proc.wait()}; see {log_path}")


def load(host, port, path, bodies, concurrency, seconds=6.0, warmup=1.0, rate=None) -> dict:
    """Drives the server with ``concurrency`` threads, one keep-alive connection each.

    Args:
      host, port, path: where to POST.
      bodies: JSON request bodies, picked at random.
      concurrency: worker threads (connections).
      seconds: measured time, after ``warmup`` seconds that are not measured.
      rate: None for a closed loop (each worker sends its next request as soon as the
        previous answer arrived: the server's saturation throughput); else requests/s in
        total, sent on a fixed schedule, latency counted from the scheduled send time so
        a slow answer also delays the ones queued behind it (no coordinated omission).

    Returns:
      ``requests``, ``errors`` (non-200 or failed), ``rps``, ``p50_ms``, ``p99_ms`` over
      the measured ``seconds``.
    """
    start = time.perf_counter()
    measure_from, stop_at = start + warmup, start + warmup + seconds
    latencies, errors = [[] for _ in range(concurrency)], [0] * concurrency

    def worker(slot: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        rng = random.Random(slot)
        headers = {"Content-Type": "application/json"}
        interval = None if rate is None else concurrency / rate
        scheduled = start + (0 if interval is None else slot * interval / concurrency)
        while True:
            body = rng.choice(bodies)
            if interval is not None:
                time.sleep(max(0.0, scheduled - time.perf_counter()))
            t0 = time.perf_counter() if interval is None else scheduled
            if t0 >= stop_at:
                break
            try:
                conn.request("POST", path, body, headers)
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=30)
                ok = False
            t1 = time.perf_counter()
            if t0 >= measure_from:
                latencies[slot].append(t1 - t0)
                errors[slot] += not ok
            if interval is not None:
                scheduled += interval
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ms = np.concatenate([np.array(x) for x in latencies]) * 1e3
    p50, p99 = np.percentile(ms, [50, 99]) if ms.size else (np.nan, np.nan)
    return {
        "requests": int(ms.size),
        "errors": int(sum(errors)),
        "rps": ms.size / seconds,
        "p50_ms": float(p50),
        "p99_ms": float(p99),
    }


def wrk_load(host, port, path, bodies, concurrency, seconds=6.0) -> dict:
    """The same closed loop driven by Debian's ``wrk`` (C, so it leaves the server more CPU).

    Returns:
      As :func:`load`; ``errors`` counts non-2xx answers and socket errors.
    """
    script = "bodies = {" + ",".join(f"[[{b}]]" for b in bodies) + "}\n" + _WRK_SCRIPT
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        lua.write(script)
        lua.flush()
        threads = str(min(concurrency, 2))
        proc = subprocess.run(
            ["wrk", "-t", threads, "-c", str(concurrency), "-d", f"{seconds:g}s", "--latency"]
            + ["-s", lua.name, f"http://{host}:{port}{path}"],
            capture_output=True,
            text=True,
            check=True,
        )
    text = proc.stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    socket = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    errors = (int(non_2xx[1]) if non_2xx else 0) + (sum(map(int, socket.groups())) if socket else 0)
    return {
        "requests": int(re.search(r"(\d+) requests in", text)[1]),
        "errors": errors,
        "rps": float(re.search(r"Requests/sec:\s+([0-9.]+)", text)[1]),
        "p50_ms": _wrk_ms(re.search(r"50%\s+([0-9.]+\w+)", text)[1]),
        "p99_ms": _wrk_ms(re.search(r"99%\s+([0-9.]+\w+)", text)[1]),
    }


_WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, bodies[(n % #bodies) + 1])
end
"""


def _wrk_ms(value: str) -> float:
    number, unit = re.fullmatch(r"([0-9.]+)(\w+)", value).groups()
    return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def run(out=sys.stdout, serving_dir: str | None = None, seconds: float = 6.0) -> dict:
    """Benchmarks the server on ml-100k models (trained here unless ``serving_dir`` is given).

    Returns:
      ``{endpoint: {concurrency: load() result}}``.
    """
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        if serving_dir is None:
            print("\nServing benchmark: training on MovieLens 100k and pushing ...", file=out)
            ids = build_ml100k_serving_dir(Path(tmp) / "serving")
            serving_dir = Path(tmp) / "serving"
        else:
            ids = _ids_of(Path(serving_dir))
        proc, host, port = start_server(Path(serving_dir), Path(tmp) / "server.log")
        rng = random.Random(0)
        users = ids["users"]
        recommend = [json.dumps({"user_id": u, "k": 10}) for u in users]
        predict = [
            json.dumps({"instances": [{"user_id": u, "movie_id": rng.choice(ids["movies"])}]})
            for u in users
        ]
        endpoints = {
            RECOMMEND: ("/v1/recommend", recommend),
            "POST /v1/models/ranking:predict (1 instance)": ("/v1/models/ranking:predict", predict),
        }
        results = {}
        try:
            for name, (path, bodies) in endpoints.items():
                results[name] = {c: load(host, port, path, bodies, c, seconds) for c in CONCURRENCY}
            results[f"{RECOMMEND} at {TARGET_RPS} req/s offered"] = {
                8: load(host, port, "/v1/recommend", recommend, 8, seconds, rate=TARGET_RPS)
            }
            if shutil.which("wrk"):  # apt-get install wrk
                results[f"{RECOMMEND}, wrk"] = {
                    c: wrk_load(host, port, "/v1/recommend", recommend, c, seconds)
                    for c in CONCURRENCY
                }
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    print(
        f"\n`movierec serve` on {os.cpu_count()} cores, load generator on the same machine:",
        file=out,
    )
    print(
        f"  {'endpoint':<50}{'conc':>5}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}",
        file=out,
    )
    for name, by_concurrency in results.items():
        for c, r in by_concurrency.items():
            print(
                f"  {name:<50}{c:>5}{r['rps']:>9.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
                f"{r['errors']:>8}",
                file=out,
            )
    print(
        "  closed loop (each connection sends on as soon as answered) except the offered-rate "
        "row;\n  Python load generator (threads, keep-alive) except the wrk rows\n"
        f"  target: /v1/recommend p99 <= 25 ms and >= {TARGET_RPS} req/s at concurrency 8",
        file=out,
    )
    return results


def _ids_of(serving_dir: Path) -> dict[str, list[str]]:
    """The trained vocabularies of the newest pushed ranking model."""
    import tensorflow as tf

    version = push.list_versions(serving_dir / names.RANKING)[-1]
    model = tf.saved_model.load(str(serving_dir / names.RANKING / str(version)))
    return {
        "users": [u.decode() for u in model.user_ids.numpy()],
        "movies": [m.decode() for m in model.movie_ids.numpy()],
    }


def _request(host, port, method, path, body):
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request(method, path, body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


if __name__ == "__main__":
    run(serving_dir=sys.argv[1] if len(sys.argv) > 1 else None)
