"""publish.push: version numbering, atomic and concurrent pushes, models.config round trips."""

import fcntl
import multiprocessing
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from publish import push

REPO = Path(__file__).resolve().parents[2]


def _fake_saved_model(path: Path, seed: int = 0) -> Path:
    """A directory shaped like a SavedModel, with distinct binary contents per file."""
    rng = random.Random(seed)
    files = {
        "saved_model.pb": 2048,
        "fingerprint.pb": 64,
        "variables/variables.index": 300,
        "variables/variables.data-00000-of-00001": 200_000,
        "assets/vocabulary.txt": 100,
    }
    for name, size in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(rng.randbytes(size))
    (path / "assets.extra").mkdir()  # an empty directory must survive the copy too
    return path


def _tree(path: Path) -> dict[str, bytes | None]:
    """Relative path -> file bytes (None for a directory) of everything under ``path``."""
    return {
        str(p.relative_to(path)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(path.rglob("*"))
    }


def test_versions_count_up_from_one(tmp_path):
    src, base = _fake_saved_model(tmp_path / "model"), tmp_path / "serving" / "retrieval"
    assert push.list_versions(base) == [] and push.next_version(base) == 1

    pushed = [push.push_atomically(src, base) for _ in range(3)]

    assert pushed == [(1, base / "1"), (2, base / "2"), (3, base / "3")]
    assert push.list_versions(base) == [1, 2, 3]
    # Only all-digit directories are versions, as for TF Serving.
    for name in (".tmp-4-999", "latest", "4.bak", "v5"):
        (base / name).mkdir()
    (base / "7").write_text("a file, not a version")
    assert push.list_versions(base) == [1, 2, 3]
    assert push.next_version(base) == 4
    assert sorted(p.name for p in base.iterdir()) == sorted(
        [".push.lock", "1", "2", "3", ".tmp-4-999", "latest", "4.bak", "v5", "7"]
    )


def test_push_copies_every_byte(tmp_path):
    src = _fake_saved_model(tmp_path / "model", seed=1)
    before = _tree(src)

    version, path = push.push_atomically(src, tmp_path / "serving" / "ranking")

    assert (version, path) == (1, tmp_path / "serving" / "ranking" / "1")
    assert _tree(path) == before
    assert _tree(src) == before
    assert len(before) == 8  # 5 files and 3 directories: the comparison is not vacuous


def test_push_refuses_a_directory_without_saved_model(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no SavedModel"):
        push.push_atomically(tmp_path / "empty", tmp_path / "serving" / "m")
    assert push.list_versions(tmp_path / "serving" / "m") == []


def test_failed_copy_leaves_no_version(tmp_path, monkeypatch):
    src, base = _fake_saved_model(tmp_path / "model"), tmp_path / "serving" / "m"
    real_copy, copied = push._copy_file, []

    def copy_one_then_fail(a, b, durable):
        if copied:
            raise OSError("disk full")
        real_copy(a, b, durable)
        copied.append(Path(b))

    monkeypatch.setattr(push, "_copy_file", copy_one_then_fail)
    with pytest.raises(OSError, match="disk full"):
        push.push_atomically(src, base)

    assert copied[0].parent.name.startswith(".tmp-1-")  # it had started copying
    assert push.list_versions(base) == []
    assert [p.name for p in base.iterdir()] == [".push.lock"]  # the half copy is gone
    monkeypatch.setattr(push, "_copy_file", real_copy)
    assert push.push_atomically(src, base) == (1, base / "1")
    assert _tree(base / "1") == _tree(src)


_DIE_MID_COPY = """
import os, sys
from pathlib import Path
from publish import push

real_copy = push._copy_file
def copy_one_then_die(src, dst, durable):
    real_copy(src, dst, durable)
    os._exit(3)  # as if killed: no except clause, no cleanup, the lock dies with the process
push._copy_file = copy_one_then_die
push.push_atomically(Path(sys.argv[1]), Path(sys.argv[2]))
"""


def test_killed_push_is_invisible_and_cleaned_by_the_next_push(tmp_path):
    src, base = _fake_saved_model(tmp_path / "model"), tmp_path / "serving" / "m"
    push.push_atomically(src, base)
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    )

    pusher = subprocess.Popen([sys.executable, "-c", _DIE_MID_COPY, str(src), str(base)], env=env)

    assert pusher.wait(timeout=60) == 3
    leftover = base / f".tmp-2-{pusher.pid}"
    assert sorted(p.name for p in base.iterdir()) == sorted([".push.lock", "1", leftover.name])
    assert any(f.is_file() for f in leftover.rglob("*"))  # it died with a partial copy
    assert push.list_versions(base) == [1]

    assert push.push_atomically(src, base) == (2, base / "2")
    assert not leftover.exists()
    assert _tree(base / "2") == _tree(src)
    assert sorted(p.name for p in base.iterdir()) == [".push.lock", "1", "2"]


def test_concurrent_pushes_get_distinct_versions(tmp_path):
    src, base = _fake_saved_model(tmp_path / "model"), tmp_path / "serving" / "m"
    # spawn, not fork: the parent may hold TensorFlow's threads, which fork does not copy.
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pushed = pool.starmap(push.push_atomically, [(src, base)] * 8)

    assert sorted(version for version, _ in pushed) == list(range(1, 9))
    assert push.list_versions(base) == list(range(1, 9))
    for version, path in pushed:
        assert path == base / str(version)
        assert _tree(path) == _tree(src)
    assert not [p for p in base.iterdir() if p.name.startswith(".tmp-")]


def test_push_waits_for_the_lock(tmp_path):
    src, base = _fake_saved_model(tmp_path / "model"), tmp_path / "serving" / "m"
    base.mkdir(parents=True)
    with open(base / ".push.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another pusher is choosing its version
        pusher = multiprocessing.get_context("spawn").Process(
            target=push.push_atomically, args=(src, base)
        )
        pusher.start()
        time.sleep(2)
        assert pusher.is_alive() and push.list_versions(base) == []
        assert not [p for p in base.iterdir() if p.name.startswith(".tmp-")]
        fcntl.flock(lock, fcntl.LOCK_UN)
        pusher.join(timeout=60)
    assert pusher.exitcode == 0
    assert push.list_versions(base) == [1]


def test_models_config_round_trip(tmp_path, monkeypatch):
    serving = tmp_path / "serving"
    monkeypatch.chdir(tmp_path)
    models = {"retrieval": serving / "retrieval", "ranking": Path("serving/ranking")}

    path = push.write_models_config(serving, models)

    assert path == serving / "models.config"
    want = {"retrieval": str(serving / "retrieval"), "ranking": str(serving / "ranking")}
    assert push.read_models_config(path) == want  # relative paths are made absolute
    assert [p.name for p in serving.iterdir()] == ["models.config"]  # no temp file left
    push.write_models_config(serving, {"ranking": serving / "ranking"})
    assert push.read_models_config(path) == {"ranking": want["ranking"]}


def test_models_config_is_a_model_server_config(tmp_path):
    pb2 = pytest.importorskip("tensorflow_serving.config.model_server_config_pb2")
    from google.protobuf import text_format

    path = push.write_models_config(
        tmp_path, {"retrieval": tmp_path / "r", "ranking": tmp_path / "k"}
    )

    config = text_format.Parse(path.read_text(), pb2.ModelServerConfig())
    assert [(c.name, c.base_path, c.model_platform) for c in config.model_config_list.config] == [
        ("retrieval", str(tmp_path / "r"), "tensorflow"),
        ("ranking", str(tmp_path / "k"), "tensorflow"),
    ]


def test_models_config_without_tf_serving_protos(tmp_path, monkeypatch):
    models = {"retrieval": tmp_path / 'odd "dir" \\ name', "ranking": tmp_path / "k"}
    with_protos = push.write_models_config(tmp_path / "a", models).read_text()
    monkeypatch.setattr(push, "model_server_config_pb2", None)

    path = push.write_models_config(tmp_path / "b", models)

    assert path.read_text() == with_protos  # the fallback writes the same text format
    assert push.read_models_config(path) == {name: str(p) for name, p in models.items()}


def test_models_config_needs_models(tmp_path):
    with pytest.raises(ValueError, match="named models"):
        push.write_models_config(tmp_path, {})
