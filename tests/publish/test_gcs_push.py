"""publish.serving_dir on a Cloud Storage emulator: pushes, claims, killed and concurrent pushes.

The emulator is fake-gcs-server on 127.0.0.1 (``tests/conftest.py``), reached through the
same google-cloud-storage client production uses."""

import multiprocessing
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from publish import push
from publish.serving_dir import GcsServingDir, LocalServingDir, open_serving_dir
from serving import gcs

REPO = Path(__file__).resolve().parents[2]


def _fake_saved_model(path: Path, seed: int = 0) -> Path:
    rng = random.Random(seed)
    for name, size in {
        "saved_model.pb": 2048,
        "fingerprint.pb": 64,
        "variables/variables.index": 300,
        "variables/variables.data-00000-of-00001": 300_000,
        "assets/vocabulary.txt": 100,
    }.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(rng.randbytes(size))
    return path


def _files(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def _objects(bucket: str, prefix: str = "") -> list[str]:
    return sorted(blob.name for blob in gcs.client().list_blobs(bucket, prefix=prefix))


def _env() -> dict:
    return dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    )


def test_open_serving_dir_refuses_what_the_pusher_cannot_write(tmp_path):
    assert isinstance(open_serving_dir(tmp_path), LocalServingDir)
    assert isinstance(open_serving_dir("gs://my-bucket/serving"), GcsServingDir)
    with pytest.raises(ValueError, match=r"cannot write the serving directory 's3://b/x'"):
        open_serving_dir("s3://b/x")
    with pytest.raises(ValueError, match=r"'gs://My_Bucket/s'.*'My_Bucket' is not a Cloud"):
        open_serving_dir("gs://My_Bucket/s")
    with pytest.raises(ValueError, match=r"'..' path segments"):
        open_serving_dir("gs://bucket-1/a/../b")


def test_a_push_lays_out_the_version_with_its_marker_and_deletes_the_staging(gcs_bucket, tmp_path):
    src = _fake_saved_model(tmp_path / "model")
    target = open_serving_dir(f"gs://{gcs_bucket}/serving")

    assert target.push("ranking", src) == (1, f"gs://{gcs_bucket}/serving/ranking/1")
    assert target.push("ranking", src) == (2, f"gs://{gcs_bucket}/serving/ranking/2")

    files = sorted(_files(src))
    assert _objects(gcs_bucket) == sorted(
        [f"serving/ranking/.versions/{v}" for v in (1, 2)]
        + [f"serving/ranking/{v}/{f}" for v in (1, 2) for f in [*files, gcs.COMPLETE_MARKER]]
    )  # no staging object is left
    assert target.list_versions("ranking") == [1, 2]
    marker = gcs.read_marker(f"gs://{gcs_bucket}/serving/ranking", 2)
    assert sorted(marker["files"]) == files
    assert marker["files"]["saved_model.pb"]["size"] == 2048
    fetched = target.fetch("ranking", 2, tmp_path / "fetched")
    assert _files(fetched) == _files(src)


def test_models_config_names_the_gs_base_paths(gcs_bucket):
    target = open_serving_dir(f"gs://{gcs_bucket}/serving/")
    uri = target.write_models_config(["ranking", "retrieval"])
    assert uri == f"gs://{gcs_bucket}/serving/models.config"
    text = gcs.bucket(gcs_bucket).blob("serving/models.config").download_as_text()
    local = Path(os.environ.get("TMPDIR", "/tmp")) / f"models-{gcs_bucket}.config"
    local.write_text(text)
    try:
        assert push.read_models_config(local) == {
            "ranking": f"gs://{gcs_bucket}/serving/ranking",
            "retrieval": f"gs://{gcs_bucket}/serving/retrieval",
        }
    finally:
        local.unlink()


def test_a_version_without_its_marker_is_not_listed(gcs_bucket, tmp_path):
    src = _fake_saved_model(tmp_path / "model")
    target = open_serving_dir(f"gs://{gcs_bucket}/s")
    target.push("m", src)
    gcs.bucket(gcs_bucket).blob("s/m/2/saved_model.pb").upload_from_string(b"half a push")
    assert target.list_versions("m") == [1]
    assert target.push("m", src)[0] == 3  # a numbered directory is never reused


def _push(uri: str, src: str, emulator: str) -> int:
    os.environ[gcs.EMULATOR_ENV] = emulator
    return open_serving_dir(uri).push("m", src)[0]


def test_concurrent_pushes_get_distinct_complete_versions(gcs_bucket, tmp_path):
    src = _fake_saved_model(tmp_path / "model")
    uri = f"gs://{gcs_bucket}/serving"
    emulator = os.environ[gcs.EMULATOR_ENV]
    # spawn, not fork: the parent may hold TensorFlow's threads, which fork does not copy.
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        versions = pool.starmap(_push, [(uri, str(src), emulator)] * 6)

    assert sorted(versions) == [1, 2, 3, 4, 5, 6]
    target = open_serving_dir(uri)
    assert target.list_versions("m") == [1, 2, 3, 4, 5, 6]
    for version in versions:
        assert _files(target.fetch("m", version, tmp_path / f"v{version}")) == _files(src)
    assert not _objects(gcs_bucket, "serving/m/.staging/")


_DIE = """
import os, sys
from publish import serving_dir
from serving import gcs

phase, calls = sys.argv[3], {"n": 0}
def die_after(real, limit):
    def wrapper(*args, **kwargs):
        real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == limit:
            os._exit(3)  # as if killed: no finally clause runs, nothing is cleaned up
    return wrapper

from google.cloud.storage import Blob, Bucket
if phase == "upload":
    Blob.upload_from_string = die_after(Blob.upload_from_string, 2)
else:
    Bucket.copy_blob = die_after(Bucket.copy_blob, 2)
serving_dir.open_serving_dir(sys.argv[1]).push("m", sys.argv[2])
"""


@pytest.mark.parametrize("phase", ["upload", "copy"])
def test_a_push_killed_midway_shows_no_version_and_the_next_push_succeeds(
    gcs_bucket, tmp_path, phase
):
    src = _fake_saved_model(tmp_path / "model")
    uri = f"gs://{gcs_bucket}/serving"
    target = open_serving_dir(uri)
    target.push("m", src)

    pusher = subprocess.run(
        [sys.executable, "-c", _DIE, uri, str(src), phase], env=_env(), timeout=120, check=False
    )

    assert pusher.returncode == 3
    assert target.list_versions("m") == [1]
    if phase == "upload":  # died before its claim: only its staging upload is left
        assert _objects(gcs_bucket, "serving/m/.staging/")
        assert gcs.numeric_children(gcs_bucket, "serving/m") == [1]
    else:  # died after claiming 2, two files into the copy, the SavedModel proto not among them
        leftover = _objects(gcs_bucket, "serving/m/2/")
        assert len(leftover) == 2
        assert "serving/m/2/saved_model.pb" not in leftover
    next_version = 2 if phase == "upload" else 3
    assert target.push("m", src)[0] == next_version
    assert target.list_versions("m") == [1, next_version]
    assert _files(target.fetch("m", next_version, tmp_path / "next")) == _files(src)


def test_what_dead_pushes_left_is_deleted_by_a_push_once_stale(gcs_bucket, tmp_path):
    src = _fake_saved_model(tmp_path / "model")
    left = ["s/m/.staging/dead-push/saved_model.pb", "s/m/7/variables/variables.index"]
    for name in left:
        gcs.bucket(gcs_bucket).blob(name).upload_from_string(b"x")
    assert GcsServingDir(f"gs://{gcs_bucket}/s", stale_staging_seconds=3600).push("m", src)[0] == 8
    assert _objects(gcs_bucket, "s/m/.staging/") + _objects(gcs_bucket, "s/m/7/") == left
    GcsServingDir(f"gs://{gcs_bucket}/s", stale_staging_seconds=0).push("m", src)
    assert not _objects(gcs_bucket, "s/m/.staging/") and not _objects(gcs_bucket, "s/m/7/")
    assert _objects(gcs_bucket, "s/m/8/")  # a complete version is never removed
    assert GcsServingDir(f"gs://{gcs_bucket}/s").list_versions("m") == [8, 9]


def test_a_download_that_does_not_match_its_marker_fails_naming_the_object(gcs_bucket, tmp_path):
    src = _fake_saved_model(tmp_path / "model")
    target = open_serving_dir(f"gs://{gcs_bucket}/s")
    target.push("m", src)
    name = "s/m/1/variables/variables.index"
    gcs.bucket(gcs_bucket).blob(name).upload_from_string(b"tampered")
    with pytest.raises(ValueError, match=rf"gs://{gcs_bucket}/{name}: 8 bytes"):
        target.fetch("m", 1, tmp_path / "fetched")
    assert not (tmp_path / "fetched").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
