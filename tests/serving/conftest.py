"""Fixtures of the ``movierec serve`` tests: a tiny trained model, pushed and served.

Built by code in seconds: 40 users rate random movies among 120 (5 more catalogue movies
are never rated); the retrieval models return 30 candidates. Session-scoped, since
training, exporting and loading are the slow part; tests that push new versions copy the
serving directory first (``tests/serving/test_hot_reload.py``).
"""

import dataclasses
import http.client
import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from publish import push, retrieval
from serving import names, server, service
from trainer import data, export, features
from trainer.config import TrainerConfig
from trainer.run import train

NUM_USERS, NUM_MOVIES, NUM_UNRATED = 40, 120, 5
NUM_RATINGS = 1200
RETRIEVAL_K = 30
CONFIG = TrainerConfig(
    hidden_dim=16,
    epochs=4,
    validate_every=2,
    batch_size=16,
    ease_rank=8,
    embedding_dim=8,
    rating_epochs=2,
    candidates=RETRIEVAL_K,
)


@dataclasses.dataclass(frozen=True)
class Staged:
    """The exported SavedModels (``models[name]``) and the data they were built from.

    Attributes:
      models: model name -> SavedModel directory, ready to push (again).
      catalogue: every movie id, rated or not; titles: id -> title.
      seen: user id -> the movies the user rated (the seen data the models carry).
      num_ratings: movie id -> its number of ratings.
    """

    models: dict[str, Path]
    catalogue: list[str]
    titles: dict[str, str]
    seen: dict[str, set[str]]
    num_ratings: Counter


@pytest.fixture(scope="session")
def staged(tmp_path_factory) -> Staged:
    return build_staged(tmp_path_factory.mktemp("staged"), seed=7)


@pytest.fixture(scope="session")
def other_run(tmp_path_factory) -> Staged:
    """The models of another training run: the same ids, other ratings, other weights."""
    return build_staged(tmp_path_factory.mktemp("other-run"), seed=8)


def build_staged(root: Path, seed: int) -> Staged:
    """Trains the tiny model on ratings drawn with ``seed`` and exports the three models."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, NUM_USERS, NUM_RATINGS)
    # Skewed popularity, so the popularity fallback has a clear order.
    movies = np.minimum(rng.geometric(1 / 40, NUM_RATINGS) - 1, NUM_MOVIES - 1)
    vocab = data.Vocabularies(
        [f"u{i}" for i in range(NUM_USERS)], [f"m{i}" for i in range(NUM_MOVIES)]
    )
    cols = {
        features.USER_IDX: users.astype(np.int64),
        features.MOVIE_IDX: movies.astype(np.int64),
        features.RATING: rng.integers(1, 6, NUM_RATINGS).astype(np.float32),
    }
    model, _ = train(cols, vocab, CONFIG)
    models = {name: root / name for name in names.MODEL_NAMES}
    seen_users = np.array([f"u{u}" for u in users])
    seen_movies = np.array([f"m{m}" for m in movies])
    histories = export.Histories.from_ids(seen_users, seen_movies)
    export.export_serving_model(model, vocab, histories, str(models[names.RANKING]))
    catalogue = [f"m{i}" for i in range(NUM_MOVIES + NUM_UNRATED)]
    titles = {m: f"Film {m[1:]} ({1950 + int(m[1:])})" for m in catalogue}
    titles["m3"] = "Amélie (2001)"  # non-ASCII survives JSON both ways
    counts = Counter(seen_movies.tolist())
    for name, kind in ((names.RETRIEVAL, "scann"), (names.RETRIEVAL_BRUTE_FORCE, "brute_force")):
        retrieval.export_retrieval_model(
            str(models[names.RANKING]),
            np.array(catalogue, dtype=object),
            np.array([titles[m] for m in catalogue], dtype=object),
            np.array([counts.get(m, 0) for m in catalogue], np.int64),
            histories.max_length(),
            str(models[name]),
            index_kind=kind,
            k=RETRIEVAL_K,
        )
    seen = {}
    for u, m in zip(seen_users, seen_movies, strict=True):
        seen.setdefault(u, set()).add(m)
    return Staged(models, catalogue, titles, seen, Counter(seen_movies.tolist()))


@pytest.fixture(scope="session")
def serving_dir(staged, tmp_path_factory) -> Path:
    """A serving directory holding version 1 of each model."""
    path = tmp_path_factory.mktemp("serving")
    for name in names.MODEL_NAMES:
        push.push_atomically(staged.models[name], path / name)
    return path


class Client:
    """A small JSON client of one server (a new connection per request)."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port

    def request(
        self, method: str, path: str, body: Any = None, raw: bytes | None = None, headers=None
    ) -> tuple[int, Any]:
        """Sends ``body`` as JSON (or ``raw`` bytes); returns ``(status, parsed JSON)``."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            payload = raw if raw is not None else None if body is None else json.dumps(body)
            conn.request(method, path, payload, headers or {})
            response = conn.getresponse()
            return response.status, json.loads(response.read())
        finally:
            conn.close()

    def get(self, path: str) -> tuple[int, Any]:
        return self.request("GET", path)

    def post(self, path: str, body: Any) -> tuple[int, Any]:
        return self.request("POST", path, body)


def _start(serving_dir: Path, poll_seconds: float | None):
    store = service.open_store(serving_dir)
    store.poll()
    if poll_seconds is not None:
        store.start(poll_seconds)
    httpd = server.make_server(store, "127.0.0.1", 0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return store, httpd


def _stop(store, httpd) -> None:
    httpd.shutdown()
    httpd.server_close()
    store.stop()


@pytest.fixture(scope="session")
def live(serving_dir):
    """``(store, client)`` of a server over :func:`serving_dir` that does not poll."""
    store, httpd = _start(serving_dir, None)
    yield store, Client(*httpd.server_address[:2])
    _stop(store, httpd)


@pytest.fixture
def start_server():
    """Starts servers (store polled once, then every ``poll_seconds`` if given) in threads;
    each is stopped when the test ends. Call as ``store, client = start_server(dir, 0.2)``."""
    started = []

    def start(serving_dir: Path, poll_seconds: float | None = None):
        store, httpd = _start(serving_dir, poll_seconds)
        started.append((store, httpd))
        return store, Client(*httpd.server_address[:2])

    yield start
    for store, httpd in started:
        _stop(store, httpd)


@pytest.fixture(scope="session")
def product(live) -> service.Product:
    return service.product_of(live[0].snapshot)
