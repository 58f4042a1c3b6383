"""publish.index: brute force vs a numpy top-k, ScaNN recall, SavedModels in fresh processes."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from publish import index

DIM = 32
REPO = Path(__file__).resolve().parents[2]


def _gaussian(rows: int, seed: int) -> np.ndarray:
    # Isotropic Gaussian embeddings: continuous (ties improbable) and, having no cluster
    # structure, the hardest case for ScaNN's partitioning.
    return np.random.default_rng(seed).normal(size=(rows, DIM)).astype(np.float32)


def _ids(n: int) -> np.ndarray:
    return np.array([f"movie-{i}" for i in range(n)])


def _numpy_top_k(queries: np.ndarray, candidates: np.ndarray, k: int):
    """(scores [Q, k] float64, row indices [Q, k]) best first, in float64 to be the reference."""
    scores = queries.astype(np.float64) @ candidates.astype(np.float64).T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


def _recall(got_ids: np.ndarray, want_ids: np.ndarray) -> float:
    return float(
        np.mean([len(set(g) & set(w)) / len(w) for g, w in zip(got_ids, want_ids, strict=True)])
    )


def _rows_of(got_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    row_of = {movie: row for row, movie in enumerate(ids)}
    return np.vectorize(row_of.__getitem__)(got_ids)


@pytest.mark.parametrize("k", [1, 10, 100])
def test_brute_force_equals_numpy_argsort(k):
    candidates, queries, ids = _gaussian(2000, 0), _gaussian(50, 1), _ids(2000)
    want_scores, want_rows = _numpy_top_k(queries, candidates, k + 1)

    topk = index.build_index("brute_force", ids, candidates, k)
    scores, got = topk(tf.constant(queries))
    got = got.numpy().astype(str)

    assert topk.is_exact()
    assert got.shape == scores.shape == (50, k)
    np.testing.assert_allclose(scores.numpy(), want_scores[:, :k], rtol=1e-5, atol=1e-4)
    # Scores within float32 rounding of a neighbour's (including the (k+1)-th) may come back
    # in either order; every other position must hold exactly numpy's id, and a tied
    # position must hold an id whose exact score is the one numpy has there.
    tol = 1e-4
    close = np.abs(np.diff(want_scores, axis=1)) <= tol  # [50, k]: position i ties i + 1
    tied = close.copy()
    tied[:, 1:] |= close[:, :-1]
    assert tied.mean() < 0.05, "too many near-ties for this comparison to mean much"
    np.testing.assert_array_equal(got[~tied], ids[want_rows[:, :k]][~tied])
    got_exact = np.einsum("qd,qkd->qk", queries.astype(np.float64), candidates[_rows_of(got, ids)])
    np.testing.assert_allclose(got_exact, want_scores[:, :k], rtol=0, atol=tol)


@pytest.mark.parametrize(
    "num_candidates, min_recall",
    [
        (1682, 1.0),  # MovieLens 100k: below SCANN_EXACT_BELOW, built to be exact
        (10_000, 0.9),  # the smallest catalogue ScaNN approximates (measured 0.95)
        (20_000, 0.95),  # measured 0.97
    ],
)
def test_scann_recall_at_10_against_numpy(num_candidates, min_recall):
    candidates, queries, ids = _gaussian(num_candidates, 2), _gaussian(200, 3), _ids(num_candidates)
    _, want_rows = _numpy_top_k(queries, candidates, 10)

    topk = index.build_index("scann", ids, candidates, 10)
    scores, got = topk(tf.constant(queries))

    assert not topk.is_exact()
    assert got.dtype == tf.string and scores.shape == (200, 10)
    assert _recall(got.numpy().astype(str), ids[want_rows]) >= min_recall
    # Whatever ScaNN returns, the reported scores are the exact dot products of those ids.
    rows = _rows_of(got.numpy().astype(str), ids)
    exact = np.einsum("qd,qkd->qk", queries, candidates[rows])
    np.testing.assert_allclose(scores.numpy(), exact, rtol=1e-4, atol=1e-4)


def test_scann_params_follow_catalogue_size():
    # Hand-worked: round(sqrt(1682)) = 41 leaves, all searched and all 1682 re-scored (exact);
    # 20k: round(141.4) = 141 leaves, ceil(70.5) = 71 searched, max(250, 4 * 71, 10 * k);
    # 1M: 1000 leaves, 500 searched, max(250, 2000, 100) = 2000 re-scored.
    assert index.scann_params(1682, 10) == index.ScannParams(41, 41, 1682)
    assert index.scann_params(20_000, 10) == index.ScannParams(141, 71, 284)
    assert index.scann_params(20_000, 100) == index.ScannParams(141, 71, 1000)
    assert index.scann_params(1_000_000, 10) == index.ScannParams(1000, 500, 2000)
    assert index.scann_params(16, 16) == index.ScannParams(4, 4, 16)


def test_search_ladder_rungs():
    # 1M, k=10: ceil(f * 1000) leaves for f in 2/5/10/20/30/50%, max(250, 4 * leaves, 100).
    ladder = index.scann_search_ladder(1_000_000, 10)
    rungs = ((20, 250), (50, 250), (100, 400), (200, 800), (300, 1200), (500, 2000))
    assert ladder == [index.ScannParams(1000, leaves, reorder) for leaves, reorder in rungs]
    assert ladder[-1] == index.scann_params(1_000_000, 10)
    # 20k, k=100: ceil(f * 141) = 3, 8, 15, 29, 43, 71 leaves; 10 * k = 1000 re-scored.
    ladder = index.scann_search_ladder(20_000, 100)
    assert [p.num_leaves_to_search for p in ladder] == [3, 8, 15, 29, 43, 71]
    assert {p.num_reordering_candidates for p in ladder} == {1000}
    # 10k: 100 leaves, 2% and 5% round up to 2 and 5; below 10k the exact setting only.
    assert index.scann_search_ladder(10_000, 10)[0] == index.ScannParams(100, 2, 250)
    assert index.scann_search_ladder(9_999, 10) == [index.ScannParams(100, 100, 9_999)]


def _clustered(rows: int, seed: int, centres: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picked = centres[rng.integers(0, len(centres), rows)]
    return (picked + 0.3 * rng.normal(size=(rows, DIM))).astype(np.float32)


def test_clustered_embeddings_search_fewer_leaves_at_the_same_recall():
    centres = np.random.default_rng(9).normal(size=(200, DIM))
    candidates, queries = _clustered(20_000, 10, centres), _clustered(200, 11, centres)
    ids = _ids(20_000)
    _, want_rows = _numpy_top_k(queries, candidates, 10)

    topk = index.build_index("scann", ids, candidates, 10)
    _, got = topk(tf.constant(queries))

    fallback = index.scann_params(20_000, 10)
    assert topk.search_params in index.scann_search_ladder(20_000, 10)
    assert topk.search_params.num_leaves_to_search < fallback.num_leaves_to_search
    assert topk.calibration_recall >= 0.99
    assert _recall(got.numpy().astype(str), ids[want_rows]) >= 0.95


def test_queries_search_with_the_chosen_settings():
    # One leaf of 141 cannot hold most of the true top 10 of isotropic embeddings; the same
    # index searching with its calibrated settings finds them.
    candidates, queries, ids = _gaussian(20_000, 12), _gaussian(100, 13), _ids(20_000)
    _, want_rows = _numpy_top_k(queries, candidates, 10)
    topk = index.build_index("scann", ids, candidates, 10)
    _, calibrated = topk(tf.constant(queries))

    topk.search_params = index.ScannParams(141, 1, 10)
    _, starved = topk(tf.constant(queries))

    assert _recall(calibrated.numpy().astype(str), ids[want_rows]) >= 0.95
    assert _recall(starved.numpy().astype(str), ids[want_rows]) < 0.5


def test_query_model_is_applied_before_the_index():
    candidates, raw_queries = _gaussian(1682, 4), _gaussian(20, 5)
    projection = np.random.default_rng(6).normal(size=(DIM, DIM)).astype(np.float32)
    query_model = tf.keras.Sequential(
        [
            tf.keras.layers.Dense(
                DIM, use_bias=False, kernel_initializer=tf.constant_initializer(projection)
            )
        ]
    )
    _, want_rows = _numpy_top_k(raw_queries @ projection, candidates, 10)
    for kind in index.INDEX_KINDS:  # ScaNN is exact at this size, so both must match
        topk = index.build_index(kind, _ids(1682), candidates, 10, query_model=query_model)
        _, got = topk(tf.constant(raw_queries))
        np.testing.assert_array_equal(got.numpy().astype(str), _ids(1682)[want_rows])


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError, match="'faiss'"):
        index.make_index("faiss", 100, 10)
    with pytest.raises(ValueError, match="k must be in"):
        index.make_index("brute_force", 5, 6)
    with pytest.raises(ValueError, match="at least 16 candidates"):
        index.make_index("scann", 15, 10)
    with pytest.raises(ValueError, match=r"\[N\]"):
        index.build_index("brute_force", _ids(3), _gaussian(4, 0), 2)


class _Retriever(tf.Module):
    def __init__(self, topk):
        super().__init__()
        self.topk = topk

    @tf.function(input_signature=[tf.TensorSpec([None, DIM], tf.float32)])
    def retrieve(self, queries):
        scores, ids = self.topk(queries)
        return {"scores": scores, "ids": ids}


_LOAD_AND_QUERY = """
import sys
import numpy as np
import tensorflow as tf
from serving import loading

queries = tf.constant(np.load(sys.argv[1]))
for model_dir in sys.argv[2:]:
    out = loading.load_saved_model(model_dir).signatures["serving_default"](queries=queries)
    np.savez(model_dir + ".npz", scores=out["scores"].numpy(), ids=out["ids"].numpy().astype(str))
"""

_WITHOUT_SCANN = """
import sys
sys.modules["scann"] = None  # makes `import scann` raise ImportError, as if not installed
from publish import index
from serving import loading

for build in (lambda: index.make_index("scann", 100, 10),
              lambda: loading.load_saved_model(sys.argv[1])):
    try:
        build()
    except ImportError as err:
        print(err)
loading.load_saved_model(sys.argv[2])
print("brute force loaded")
"""


def _fresh_python(script: str, *args: str) -> str:
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def saved_indexes(tmp_path_factory):
    """Both kinds over 2000 candidates saved as SavedModels, with their in-process answers."""
    tmp = tmp_path_factory.mktemp("saved_indexes")
    candidates, queries = _gaussian(2000, 7), _gaussian(30, 8)
    np.save(tmp / "queries.npy", queries)
    models = {}
    for kind in index.INDEX_KINDS:
        module = _Retriever(index.build_index(kind, _ids(2000), candidates, 10))
        path = str(tmp / kind)
        tf.saved_model.save(
            module,
            path,
            signatures={"serving_default": module.retrieve.get_concrete_function()},
            options=index.SCANN_SAVE_OPTIONS,
        )
        models[kind] = (path, module.retrieve(tf.constant(queries)))
    return tmp / "queries.npy", models


def test_saved_model_answers_the_same_in_a_fresh_process(saved_indexes):
    queries_path, models = saved_indexes
    _fresh_python(_LOAD_AND_QUERY, str(queries_path), *(path for path, _ in models.values()))
    for path, in_process in models.values():
        fresh = np.load(path + ".npz")
        np.testing.assert_array_equal(fresh["ids"], in_process["ids"].numpy().astype(str))
        np.testing.assert_allclose(fresh["scores"], in_process["scores"].numpy(), rtol=1e-6)


def test_missing_scann_is_reported_with_the_install_command(saved_indexes):
    _, models = saved_indexes
    out = _fresh_python(_WITHOUT_SCANN, models["scann"][0], models["brute_force"][0])
    lines = out.splitlines()
    assert lines[0] == "pip install scann==1.3.2 to use the ScaNN index"
    assert lines[1] == f"{models['scann'][0]} holds a ScaNN index: {lines[0]}"
    assert lines[2] == "brute force loaded"
