"""Stock TF Serving can load the ranking and brute-force retrieval models: their graphs use
only ops registered by plain TensorFlow. The ScaNN retrieval model needs the ScaNN ops."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from publish import index as index_lib
from publish import retrieval
from trainer import data, export, features
from trainer.config import TrainerConfig
from trainer.run import train

# Runs in a fresh process that imports TensorFlow only (not scann, not TFRS), so the op
# registry holds exactly the stock ops.
_LIST_OPS = """
import json, sys
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry
result = {}
for path in sys.argv[1:]:
    sm = saved_model_pb2.SavedModel()
    with open(path + "/saved_model.pb", "rb") as f:
        sm.ParseFromString(f.read())
    ops = set()
    for graph in (mg.graph_def for mg in sm.meta_graphs):
        ops |= {n.op for n in graph.node}
        for fn in graph.library.function:
            ops |= {n.op for n in fn.node_def}
    fns = {fn.signature.name for g in (mg.graph_def for mg in sm.meta_graphs)
           for fn in g.library.function}
    result[path] = sorted(op for op in ops if op not in fns and op_def_registry.get(op) is None)
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stock")
    rng = np.random.default_rng(2)
    cols = {
        features.USER_IDX: rng.integers(0, 20, 500),
        features.MOVIE_IDX: rng.integers(0, 40, 500),
        features.RATING: rng.choice([2.0, 4.0], 500).astype(np.float32),
    }
    vocab = data.Vocabularies([f"u{i}" for i in range(20)], [f"m{i}" for i in range(40)])
    config = TrainerConfig(
        hidden_dim=8, epochs=2, validate_every=1, batch_size=16, ease_rank=4, candidates=5
    )
    model, _ = train(cols, vocab, config)
    ranking = str(tmp / "ranking")
    histories = export.Histories.from_indices(
        cols[features.USER_IDX], cols[features.MOVIE_IDX], vocab
    )
    export.export_serving_model(model, vocab, histories, ranking)
    ids = np.array([f"m{i}" for i in range(40)], dtype=object)
    paths = {"ranking": ranking}
    for kind in (index_lib.BRUTE_FORCE, index_lib.SCANN):
        paths[kind] = str(tmp / kind)
        retrieval.export_retrieval_model(
            ranking, ids, ids, np.ones(40, np.int64), histories.max_length(), paths[kind], kind, k=5
        )
    return paths


def test_only_stock_ops_except_in_the_scann_model(exported):
    env = {k: v for k, v in os.environ.items()}
    proc = subprocess.run(
        [sys.executable, "-c", _LIST_OPS, *exported.values()],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=True,
    )
    unknown = json.loads(proc.stdout.strip().splitlines()[-1])
    assert unknown[exported["ranking"]] == []
    assert unknown[exported[index_lib.BRUTE_FORCE]] == []
    scann_ops = unknown[exported[index_lib.SCANN]]
    assert scann_ops and all(op.startswith("Scann") for op in scann_ops), scann_ops
