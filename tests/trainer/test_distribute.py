"""The Trainer under tf.distribute: strategy resolution, two logical CPUs under
MirroredStrategy and two worker processes under MultiWorkerMirroredStrategy, each training
the real model on a synthetic fixture (``distributed_run.py``) to one device's quality.

The tolerance: a distributed run differs from one device in its dropout masks and in the
order gradients are summed, which is the same kind of difference as another seed. So each
quality figure must agree with one device's within 3 standard errors of the paired
difference (per user for recall@10, per rating for squared error): what a paired test
would call no difference at the 0.3% level. A broken loss scaling (gradients summed over
replicas without dividing by N, or one replica's batch only) moves recall and RMSE far more.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trainer import distribute
from trainer.config import TrainerConfig

RUN = Path(__file__).with_name("distributed_run.py")
_TIMEOUT = 600


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}  # only the test's own
    return {**env, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def _start(out: Path, strategy: str, logical_cpus: int = 1, **env):
    return subprocess.Popen(
        [sys.executable, str(RUN), str(out), strategy, str(logical_cpus)],
        env=_env(**env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(procs) -> None:
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=_TIMEOUT)
            assert proc.returncode == 0, err[-3000:]
    finally:
        for proc in procs:  # one failed worker leaves the other waiting on collectives
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _run(tmp_path: Path, name: str, strategy: str, logical_cpus: int = 1) -> dict:
    out = tmp_path / f"{name}.json"
    _finish([_start(out, strategy, logical_cpus)])
    return json.loads(out.read_text())


def _recall(result: dict) -> float:
    return sum(result["hits"]) / sum(result["held_out"])


def _rmse(result: dict) -> float:
    return float(np.sqrt(np.mean(result["squared_errors"])))


def _assert_same_quality(result: dict, one: dict) -> None:
    """recall@10 and the mean squared error within 3 paired standard errors of one device's."""
    total = sum(one["held_out"])
    per_user = (np.asarray(result["hits"]) - np.asarray(one["hits"])) / total
    se = np.std(per_user, ddof=1) * np.sqrt(len(per_user))
    assert abs(per_user.sum()) <= 3 * se + 1e-9, (_recall(result), _recall(one), se)
    errors = np.asarray(result["squared_errors"]) - np.asarray(one["squared_errors"])
    se = np.std(errors, ddof=1) / np.sqrt(len(errors))
    assert abs(errors.mean()) <= 3 * se + 1e-9, (_rmse(result), _rmse(one), se)


@pytest.fixture(scope="module")
def one_device(tmp_path_factory):
    result = _run(tmp_path_factory.mktemp("one"), "one", "default")
    assert result["distribution"] == {"strategy": "default", "replicas": 1, "task": None}
    # The fixture is learnable: far above popularity's share (about 0.25 here) and the
    # ratings' spread (a standard deviation of about 1).
    assert _recall(result) > 0.3 and _rmse(result) < 0.9
    return result


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_strategy_resolution_follows_tf_config():
    workers = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}
    vertex = {"cluster": {"chief": ["a:1"], "worker": ["b:2", "c:3"]}, "task": {"type": "chief"}}
    alone = {"cluster": {"chief": ["a:1"]}, "task": {"type": "chief", "index": 0}}
    assert distribute.cluster_tasks({}) == 0
    assert distribute.cluster_tasks({"TF_CONFIG": json.dumps(workers)}) == 2
    assert distribute.cluster_tasks({"TF_CONFIG": json.dumps(vertex)}) == 3
    assert distribute.resolve("auto", {"TF_CONFIG": json.dumps(workers)}) == "multi_worker_mirrored"
    assert distribute.resolve("auto", {"TF_CONFIG": json.dumps(alone)}) == "default"  # no GPUs
    assert distribute.resolve("auto", {}) == "default"
    assert distribute.resolve("mirrored", {}) == "mirrored"
    with pytest.raises(ValueError, match="TF_CONFIG is not JSON"):
        distribute.cluster_tasks({"TF_CONFIG": "{"})
    with pytest.raises(ValueError, match="TF_CONFIG has no cluster"):
        distribute.cluster_tasks({"TF_CONFIG": "[1]"})
    with pytest.raises(ValueError, match="multi_worker_mirrored needs TF_CONFIG"):
        distribute.make_strategy("multi_worker_mirrored", {})
    with pytest.raises(ValueError, match="strategy must be one of auto, default, mirrored"):
        TrainerConfig.from_custom_config({"strategy": "tpu"})
    assert TrainerConfig.from_custom_config({"strategy": "mirrored"}).strategy == "mirrored"


def test_two_logical_cpus_under_mirrored_strategy_train_to_one_devices_quality(
    tmp_path, one_device
):
    result = _run(tmp_path, "mirrored", "mirrored", logical_cpus=2)
    assert result["distribution"] == {"strategy": "mirrored", "replicas": 2, "task": None}
    assert result["chief"]
    _assert_same_quality(result, one_device)


def test_two_workers_under_multi_worker_mirrored_strategy_train_one_model(tmp_path, one_device):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = [
        _start(
            tmp_path / f"worker{i}.json",
            "auto",  # resolved from TF_CONFIG, as on Vertex AI Training
            TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}),
        )
        for i in range(2)
    ]
    _finish(procs)
    results = [json.loads((tmp_path / f"worker{i}.json").read_text()) for i in range(2)]
    for i, result in enumerate(results):
        assert result["distribution"] == {
            "strategy": "multi_worker_mirrored",
            "replicas": 2,
            "task": f"worker:{i}",
        }
    # Worker 0 writes the outputs (the cluster has no chief); the variables are one model.
    assert [r["chief"] for r in results] == [True, False]
    assert results[0]["hits"] == results[1]["hits"]
    np.testing.assert_allclose(
        results[0]["squared_errors"], results[1]["squared_errors"], rtol=1e-5
    )
    assert results[0]["chosen_retrieval_epochs"] == results[1]["chosen_retrieval_epochs"]
    _assert_same_quality(results[0], one_device)
