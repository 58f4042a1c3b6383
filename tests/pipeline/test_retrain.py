"""``movierec retrain`` end to end, as cron would call it: spans arrive one by one.

One workdir (ML-Metadata, serving directory) carries over from step to step:

- span-1: the first retrain is SIGKILLed inside the Trainer, and a second call made meanwhile
  refuses; the rerun reuses the finished components from cache and pushes v1; a further
  call finds nothing new.
- span-2 (new users, new movies): the Trainer warm-starts from v1; v2 is pushed.
- span-3 (corrupted: random ratings of popularity-driven pairs; every value valid): the
  model fails blessing, nothing is pushed, v2 keeps serving.

Spans are written here by a generator with structure a model can learn (users and movies in
taste groups) and renamed into place, as a producer of spans should. Window 2 throughout.
"""

import csv
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from pipeline.config import config_from_dict
from publish import push
from serving import names
from trainer import data, features, warm_start
from trainer.model import JointModel, movie_counts

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ENV = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
GROUPS = 6
# span -> (users, movies, ratings per user, movies new in this span, corrupted)
SPANS = {
    1: (range(1, 101), range(1, 201), 25, (), False),
    2: (range(41, 141), range(1, 261), 25, range(201, 261), False),
    3: (range(41, 141), range(1, 261), 50, (), True),
}


def _ratings(span: int) -> list[tuple[int, int, float, int]]:
    """(user, movie, rating, timestamp) of one span.

    Users pick movies of their own group (movie % GROUPS == user % GROUPS) 8 times as often,
    new movies 3 times, and rate their group's movies 4-5, others 1-2. The corrupted span
    has pairs drawn by popularity alone and uniformly random ratings: all valid values.
    """
    users, movies, per_user, new, corrupted = SPANS[span]
    rng = np.random.default_rng(span)
    movies = np.array(movies)
    popularity = 1.0 / (1 + movies % 50) ** (1.0 if corrupted else 0.3)
    popularity = popularity * np.where(np.isin(movies, new), 3, 1)
    rows = []
    for user in users:
        own = movies % GROUPS == user % GROUPS
        weight = popularity if corrupted else popularity * np.where(own, 8, 1)
        picked = rng.choice(movies, per_user, replace=False, p=weight / weight.sum())
        for i, movie in enumerate(picked):
            if corrupted:
                rating = float(rng.choice(np.arange(1, 11) / 2))
            else:
                liked = movie % GROUPS == user % GROUPS
                rating = float(rng.choice([4.0, 4.5, 5.0] if liked else [1.0, 1.5, 2.0]))
            rows.append(
                (
                    user,
                    int(movie),
                    rating,
                    1_000_000_000 + 10_000_000 * span + 60 * (user * 100 + i),
                )
            )
    return rows


def _drop(root: Path, span: int) -> None:
    """Writes a span beside the root and renames it in: readers never see half a span."""
    staging = root.parent / f"staging-{span}"
    staging.mkdir()
    with open(staging / "ratings.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["userId", "movieId", "rating", "timestamp"])
        writer.writerows(_ratings(span))
    with open(staging / "movies.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["movieId", "title", "genres"])
        for movie in SPANS[span][1]:
            writer.writerow([movie, f"Movie {movie} ({1950 + movie % 60})", f"G{movie % GROUPS}"])
    os.rename(staging, root / f"span-{span}")


def _argv(root: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pipeline.cli",
        "retrain",
        "--spans",
        str(root),
        "--window",
        "2",
        "--index",
        "brute_force",
        "--trainer-config",
        '{"epochs": 8, "batch_size": 256}',
    ]


def _retrain(world, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(
        _argv(world.root),
        env=world.env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _summary(world) -> dict:
    latest = sorted(world.workdir.glob("runs/*/summary.json"), key=os.path.getmtime)[-1]
    return json.loads(latest.read_text())


def _versions(world) -> dict[str, list[int]]:
    return {
        name: push.list_versions(world.workdir / "serving" / name) for name in names.MODEL_NAMES
    }


def _store(world) -> metadata_store.MetadataStore:
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(world.workdir / "metadata.sqlite")
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def _runs(world) -> list[dict[str, str]]:
    """Per pipeline run, oldest first: execution type's last name -> state name."""
    store = _store(world)
    runs = sorted(store.get_contexts_by_type("pipeline_run"), key=lambda c: c.id)
    out = []
    for run in runs:
        states = {}
        for execution in store.get_executions_by_context(run.id):
            name = execution.type.rsplit(".", 1)[-1]
            states[name] = metadata_store_pb2.Execution.State.Name(execution.last_known_state)
        out.append(states)
    return out


def _wait_for(path_glob, text: str, proc: subprocess.Popen, world, timeout=420) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"retrain ended before {text!r}: {proc.stdout.read()}"
        for log in world.workdir.glob(path_glob):
            if text in log.read_text(errors="replace"):
                return
        time.sleep(0.2)
    pytest.fail(f"no {text!r} in {path_glob} after {timeout} s")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("retrain")
    root = base / "spans"
    root.mkdir()
    workdir = base / "work"
    return SimpleNamespace(
        root=root, workdir=workdir, env={**ENV, "MOVIEREC_WORKDIR": str(workdir)}
    )


@pytest.fixture(scope="module")
def span1(world):
    _drop(world.root, 1)
    first = subprocess.Popen(
        _argv(world.root),
        env=world.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the CLI and its pipeline child
    )
    try:
        # run_fn's first line: the Trainer is past its start-up, inside training.
        _wait_for("runs/*/pipeline.log", "INFO:absl:training on ", first, world)
        concurrent = _retrain(world, timeout=120)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    after_kill = _versions(world)
    resumed = _retrain(world)
    again = _retrain(world, timeout=120)
    return SimpleNamespace(
        concurrent=concurrent,
        after_kill=after_kill,
        resumed=resumed,
        summary=_summary(world),
        again=again,
        runs=_runs(world),
    )


@pytest.fixture(scope="module")
def span2(world, span1):
    _drop(world.root, 2)
    proc = _retrain(world)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return SimpleNamespace(proc=proc, summary=_summary(world))


@pytest.fixture(scope="module")
def span3(world, span2):
    before = (world.workdir / "serving" / "models.config").read_bytes()
    _drop(world.root, 3)
    proc = _retrain(world)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = _summary(world)
    return SimpleNamespace(proc=proc, summary=summary, config_before=before, again=_retrain(world))


def test_a_concurrent_retrain_refuses_while_one_runs(world, span1):
    proc = span1.concurrent
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "another retrain (pid " in proc.stderr
    assert f"holds {world.workdir / 'retrain.lock'}; not starting a second one" in proc.stderr
    assert proc.stdout == ""


def test_the_lock_is_checked_before_any_work(tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    with open(workdir / "retrain.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write("4242\n")
        lock.flush()
        proc = subprocess.run(
            _argv(tmp_path / "no-such-root"),  # would be exit 2, were the lock free
            env={**ENV, "MOVIEREC_WORKDIR": str(workdir)},
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 3
    assert proc.stderr.strip().splitlines()[-1] == (
        f"movierec: another retrain (pid 4242) holds {workdir / 'retrain.lock'}; not starting "
        "a second one"
    )
    assert sorted(p.name for p in workdir.iterdir()) == ["retrain.lock"]
    free = subprocess.run(
        _argv(tmp_path / "no-such-root"),
        env={**ENV, "MOVIEREC_WORKDIR": str(workdir)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert free.returncode == 2 and "no-such-root is not a directory" in free.stderr


def test_a_killed_run_resumes_from_cache_and_pushes_once(world, span1):
    assert span1.after_kill == {name: [] for name in names.MODEL_NAMES}
    assert span1.resumed.returncode == 0, span1.resumed.stdout + span1.resumed.stderr
    killed, resumed = span1.runs
    # Killed inside the Trainer: everything before it had finished, nothing after it ran.
    assert killed["Trainer"] == "RUNNING"
    assert killed["MovieRecExampleGen"] == killed["Transform"] == "COMPLETE"
    assert "MovieRecPusher" not in killed
    for name in ("MovieRecExampleGen", "StatisticsGen", "DataValidationGate", "Transform"):
        assert resumed[name] == "CACHED", resumed
    assert resumed["Trainer"] == resumed["MovieRecPusher"] == "COMPLETE"
    assert span1.summary["component_states"]["Transform"] == "CACHED"
    reused = next(
        line for line in span1.resumed.stdout.splitlines() if line.startswith("Reused from")
    )
    assert {"MovieRecExampleGen", "Transform"} <= set(reused.split(": ")[1].split(", "))
    assert span1.summary["blessed"] is True
    assert span1.summary["warm_start"] is None  # nothing blessed yet
    assert _versions(world) == {name: [1] for name in names.MODEL_NAMES}
    for name in names.MODEL_NAMES:  # no half-copied version left behind
        entries = sorted(p.name for p in (world.workdir / "serving" / name).iterdir())
        assert entries == sorted(["1", push.LOCK_FILE])


def test_nothing_new_is_a_no_op(world, span1):
    assert span1.again.returncode == 0, span1.again.stderr
    assert span1.again.stdout.startswith("movierec: nothing new: a run on spans span-1 of ")
    assert len(span1.runs) == 2  # counted after it: it added no pipeline run
    assert _versions(world) == {name: [1] for name in names.MODEL_NAMES}


def _vocabularies(transform_uri: str) -> data.Vocabularies:
    return data.read_vocabularies(tft.TFTransformOutput(transform_uri))


def _transform_graphs(world) -> list[str]:
    store = _store(world)
    return [
        a.uri for a in sorted(store.get_artifacts_by_type("TransformGraph"), key=lambda a: a.id)
    ]


def _evaluated(run_summary) -> Path:
    """The ranking model the Evaluator blessed in a run (what was pushed is its refit on
    every ingested rating; the Resolver hands the evaluated one to the next run)."""
    return Path(run_summary["push"]["refit_of"]) / "ranking"


def test_second_span_warm_starts_from_the_blessed_model_and_is_pushed(world, span1, span2):
    summary = span2.summary
    assert summary["spans"] == ["span-1", "span-2"]
    assert summary["blessed"] is True, summary["evaluation"]["reasons"]
    assert summary["push"]["ranking"]["version"] == 2
    assert _versions(world) == {name: [1, 2] for name in names.MODEL_NAMES}
    # The base model is the model blessed with span 1 (v1 is its refit on span 1's
    # ingested ratings).
    warm = summary["warm_start"]
    v1 = _evaluated(span1.summary)
    base = Path(warm["base_model"])
    assert (base / "saved_model.pb").read_bytes() == (v1 / "saved_model.pb").read_bytes()
    # The counts of training.json: ids in both runs' vocabularies (read from the Transform
    # outputs here), among them every user of span 1 that span 2 kept (41..100) and more.
    old_vocab, new_vocab = (_vocabularies(uri) for uri in _transform_graphs(world)[-2:])
    shared_users = set(old_vocab.users) & set(new_vocab.users)
    shared_movies = set(old_vocab.movies) & set(new_vocab.movies)
    assert warm["rows_carried_over"] == {"users": len(shared_users), "movies": len(shared_movies)}
    assert warm["rows_new"] == {
        "users": len(new_vocab.users) - len(shared_users),
        "movies": len(new_vocab.movies) - len(shared_movies),
    }
    assert len(new_vocab.users) == 140 and len(shared_users) == 100
    assert {str(m) for m in range(201, 261)} <= set(new_vocab.movies) - shared_movies
    # The Trainer's initialisation: rebuilt with its config and vocabularies, the rows of
    # shared ids are the embeddings the blessed model has for those ids.
    config = config_from_dict(summary["config"]).trainer
    tf.keras.utils.set_random_seed(config.seed)
    n_movies = len(new_vocab.movies)
    model = JointModel(
        len(new_vocab.users),
        n_movies,
        movie_counts(np.arange(n_movies), n_movies),
        3.0,
        config,
    )
    again = warm_start.warm_start(model, new_vocab, warm_start.read_previous_model(str(base)))
    assert again["rows_carried_over"] == warm["rows_carried_over"]
    served = tf.saved_model.load(str(v1))
    users = sorted(shared_users)
    # Users: the rating model's factor rows of v1, read through v1's own vocabulary.
    v1_users = [u.decode() for u in served.user_ids.numpy()]
    expected = served.model.user_factors.embeddings.numpy()[[v1_users.index(u) for u in users]]
    rows = model.id_tables()["users"][0].numpy()[[new_vocab.users.index(u) for u in users]]
    np.testing.assert_array_equal(rows, expected)
    # Movies: v1's served retrieval embeddings start with the decoder row.
    movies = sorted(shared_movies)
    expected = served.signatures[features.SIG_MOVIE_EMBEDDING](movie_id=tf.constant(movies))
    rows = model.id_tables()["movies"][0].numpy()[[new_vocab.movies.index(m) for m in movies]]
    np.testing.assert_array_equal(rows, expected["embedding"].numpy()[:, : config.hidden_dim])
    assert "Warm start from " in span2.proc.stdout
    assert f"embeddings of {len(shared_users)} users and {len(shared_movies)} movies" in (
        span2.proc.stdout
    )


def test_a_regressing_span_is_not_pushed_and_v2_keeps_serving(world, span2, span3):
    summary = span3.summary
    assert summary["spans"] == ["span-2", "span-3"]
    evaluation = summary["evaluation"]
    assert evaluation["blessed"] is False
    # Measured: recall@10 0.155 against popularity 0.232 on the corrupted pairs.
    reasons = evaluation["reasons"]
    assert any(r.startswith("FAIL: recall@10") for r in reasons), reasons
    assert evaluation["previous_model"] is not None  # compared with v2, the latest blessed
    assert summary["push"] == {"pushed": False, "reason": "model not blessed"}
    v2 = _evaluated(span2.summary)  # blessed with span 2; v2 is its refit
    base = Path(summary["warm_start"]["base_model"])
    assert (base / "saved_model.pb").read_bytes() == (v2 / "saved_model.pb").read_bytes()
    assert _versions(world) == {name: [1, 2] for name in names.MODEL_NAMES}
    assert (world.workdir / "serving" / "models.config").read_bytes() == span3.config_before
    # Cron calls again: nothing new, nothing pushed.
    assert span3.again.returncode == 0
    assert "nothing new: a run on spans span-2, span-3 of " in span3.again.stdout
    assert _versions(world) == {name: [1, 2] for name in names.MODEL_NAMES}
