"""Retrieval at scale: a synthetic 1M-movie catalogue served the way the Pusher serves it.

Run by ``python -m bench.retrieval_scale`` or through :func:`run`. The catalogue is 1M x 32-d
clustered Gaussian embeddings (1000 clusters), the users 1000 queries drawn the same way,
each with 10 random rated ("seen") movies. A stand-in for the trained model holding these
embeddings (the trained towers embed histories, not arbitrary vectors) is wrapped by
``publish.retrieval.export_retrieval_model``, the servable builder's own code path, so the
measured SavedModel is what would be served. Measured
against the exact top-k of ``publish.index``'s brute force:

- (a) raw ScaNN: ``scann_ops_pybind`` with the index's settings and with the reference
  settings, and the ``scann_ops`` TF ops on the index's own searcher, called eagerly;
- (b) the ``publish.index`` ScaNN layer (a TFRS ``ScaNN``) called eagerly;
- (c) the loaded retrieval SavedModel: ``signatures["serving_default"]`` from Python (what
  ``serving.client`` does) and a graph ``Session`` over the same signature (the C++ executor
  TF Serving runs), with the per-op time of single-user queries and the per-call cost of
  both ways of calling (measured on a SavedModel that returns its input).

Latencies are medians: single = one query per call, batched = one call of 256 queries
divided by 256. Figures are printed, nothing is asserted. Takes 2-4 minutes on 2 cores,
about 3 GB of memory and 1 GB of temporary disk.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # TFRS needs Keras 2: set before TensorFlow loads

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import numpy as np

# isort: split
import scann
import tensorflow as tf
from scann.scann_ops.py import scann_ops

from publish import index, retrieval
from trainer import export

NUM_MOVIES = 1_000_000
DIM = 32
NUM_CLUSTERS = 1000
CLUSTER_NOISE = 0.5  # per-dimension std around centres whose entries have std 1
NUM_USERS = 1000
SEEN_PER_USER = 10
K = 10  # recall@K; the index retrieves K + SEEN_PER_USER, as the Pusher sizes it
NUM_RETRIEVED = K + SEEN_PER_USER
BATCH = 256
SINGLE_REPEATS = 300
BATCH_REPEATS = 15
TARGET_MS, TARGET_RECALL = 0.5, 0.95


def run(out: TextIO = sys.stdout) -> dict:
    """Builds, exports and measures everything; prints the figures to ``out``.

    Returns:
      ``{"rows": {method: {"single_ms", "batched_ms", "recall"}}, "seconds": {step: s},
      "search_params": the ScannParams the index chose}``.
    """
    tf.get_logger().setLevel("ERROR")  # Keras's notes on saving a never-trained model
    data = _synthetic(seed=0)
    seconds = {}
    truth = _timed(seconds, "exact top-k of 1000 users (brute force layer)", _exact_top, data)
    rows = _bench_brute_force(data)
    topk = _timed(
        seconds,
        "publish.index ScaNN index (build + search calibration)",
        index.build_index,
        index.SCANN,
        data["movie_ids"],
        data["movies"],
        NUM_RETRIEVED,
    )
    chosen = topk.search_params
    rows |= _bench_raw_scann(data, chosen, truth, seconds)
    rows |= _bench_scann_layer(data, topk, truth)
    overheads = _overheads(topk)
    topk = None  # frees the index (about 400 MB) before the exports
    with tempfile.TemporaryDirectory(prefix="bench-retrieval-") as tmp:
        overheads |= _call_floors(Path(tmp), data["user_ids"])
        saved_rows, op_stats = _bench_saved_models(Path(tmp), data, truth, seconds)
    rows |= saved_rows
    _report(out, rows, seconds, chosen, overheads, op_stats)
    return {"rows": rows, "seconds": seconds, "search_params": chosen}


def _synthetic(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(NUM_CLUSTERS, DIM))

    def draw(n):
        noise = CLUSTER_NOISE * rng.normal(size=(n, DIM))
        return (centres[rng.integers(0, NUM_CLUSTERS, n)] + noise).astype(np.float32)

    movies, users = draw(NUM_MOVIES), draw(NUM_USERS)
    return {
        "movies": movies,
        "users": users,
        "queries": tf.constant(users),
        "movie_ids": np.array([f"m{i}" for i in range(NUM_MOVIES)], dtype=object),
        "user_ids": np.array([f"u{i}" for i in range(NUM_USERS)], dtype=object),
        "seen": rng.integers(0, NUM_MOVIES, (NUM_USERS, SEEN_PER_USER)),
    }


def _exact_top(data: dict) -> dict:
    """Exact top-K rows per user from the brute force index: all movies, and unseen ones."""
    brute = index.build_index(index.BRUTE_FORCE, data["movie_ids"], data["movies"], NUM_RETRIEVED)
    queries = data["queries"]
    top = np.concatenate(
        [_rows(brute(queries[lo : lo + 100])[1]) for lo in range(0, NUM_USERS, 100)]
    )
    unseen = [
        [m for m in row if m not in set(seen)][:K]
        for row, seen in zip(top, data["seen"], strict=True)
    ]
    return {"all": top[:, :K], "unseen": np.array(unseen)}


def _bench_brute_force(data: dict) -> dict:
    movies, users, queries = data["movies"], data["users"], data["queries"]
    brute = index.build_index(index.BRUTE_FORCE, data["movie_ids"], movies, NUM_RETRIEVED)
    return {
        "numpy brute force (argpartition of 1M dot products)": _row(
            lambda i: np.argpartition(-(movies @ users[i]), K)[:K], None, 1.0, repeats=(20, 0)
        ),
        "brute force layer (publish.index), eager": _row(
            lambda i: brute(queries[i : i + 1]),
            lambda: brute(queries[:BATCH]),
            1.0,
            repeats=(20, 3),
        ),
    }


def _bench_raw_scann(data: dict, chosen: index.ScannParams, truth: dict, seconds: dict) -> dict:
    """(a) ScaNN's own Python API: the index's settings, its fallback, the reference."""
    movies, users = data["movies"], data["users"]
    fallback = index.scann_params(NUM_MOVIES, NUM_RETRIEVED)
    searcher = _timed(
        seconds,
        "raw ScaNN pybind (index's fallback settings)",
        lambda: scann.scann_ops_pybind.builder(movies, NUM_RETRIEVED, "dot_product")
        .tree(num_leaves=fallback.num_leaves, num_leaves_to_search=fallback.num_leaves_to_search)
        .score_ah(2)
        .reorder(fallback.num_reordering_candidates)
        .build(),
    )
    rows = {}
    for label, params in (("index's settings", chosen), ("index's fallback", fallback)):
        opts = {
            "leaves_to_search": params.num_leaves_to_search,
            "pre_reorder_num_neighbors": params.num_reordering_candidates,
        }
        rows[f"(a) raw ScaNN pybind, {label} {_describe(params)}"] = _row(
            lambda i, o=opts: searcher.search(users[i], **o),
            lambda o=opts: searcher.search_batched(users[:BATCH], **o),
            _recall(searcher.search_batched(users, **opts)[0][:, :K], truth["all"]),
        )
    reference = _timed(
        seconds,
        "raw ScaNN pybind (reference settings)",
        lambda: scann.scann_ops_pybind.builder(movies, K, "dot_product")
        .tree(num_leaves=1000, num_leaves_to_search=100, training_sample_size=250_000)
        .score_ah(2, anisotropic_quantization_threshold=0.2)
        .reorder(100)
        .build(),
    )
    rows["(a) raw ScaNN pybind, reference (100/1000 leaves, AH 0.2, 100 re-scored)"] = _row(
        lambda i: reference.search(users[i]),
        lambda: reference.search_batched(users[:BATCH]),
        _recall(reference.search_batched(users)[0], truth["all"]),
    )
    return rows


def _bench_scann_layer(data: dict, topk, truth: dict) -> dict:
    """(a) the ScaNN TF ops, eagerly, on the layer's searcher; (b) the layer, eagerly."""
    queries = data["queries"]
    searcher = scann_ops.searcher_from_module(topk._serialized_searcher)  # created once
    leaves = topk.search_params.num_leaves_to_search
    reorder = topk.search_params.num_reordering_candidates

    def search(q):
        return searcher.search_batched_parallel(q, NUM_RETRIEVED, reorder, leaves).indices

    return {
        "(a) raw ScaNN TF ops (scann_ops), eager, index's settings": _row(
            lambda i: search(queries[i : i + 1]),
            lambda: search(queries[:BATCH]),
            _recall(search(queries).numpy()[:, :K], truth["all"]),
        ),
        "(b) publish.index ScaNN layer (TFRS ScaNN), eager": _row(
            lambda i: topk(queries[i : i + 1]),
            lambda: topk(queries[:BATCH]),
            _recall(_rows(topk(queries)[1])[:, :K], truth["all"]),
        ),
    }


def _overheads(topk) -> dict:
    return {
        "eager TFRS layer: its searcher re-created from its state per call": _median_ms(
            lambda i: topk._serialized_searcher.recreate_handle(), SINGLE_REPEATS
        ),
    }


class _Echo(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def echo(self, user_id):
        return {"user_id": tf.identity(user_id)}


def _call_floors(tmp: Path, user_ids: np.ndarray) -> dict:
    """Per-call cost of the two ways of running a SavedModel, on one that returns its input."""
    module, path = _Echo(), str(tmp / "echo")
    tf.saved_model.save(module, path, signatures={"serving_default": module.echo})
    signature = tf.saved_model.load(path).signatures["serving_default"]
    singles = [tf.constant(user_ids[i : i + 1]) for i in range(NUM_USERS)]
    session = _GraphSession(path, output="user_id")
    floors = {
        "call floor: TF2 signature of a SavedModel returning its input": _median_ms(
            lambda i: signature(user_id=singles[i]), SINGLE_REPEATS
        ),
        "call floor: graph Session run of that SavedModel": _median_ms(
            lambda i: session(user_ids[i : i + 1]), SINGLE_REPEATS
        ),
    }
    session.close()
    return floors


def _bench_saved_models(tmp: Path, data: dict, truth: dict, seconds: dict):
    """(c) the retrieval SavedModels, exported and loaded as the Pusher and the client do."""
    trained_dir = str(tmp / "trained")
    _timed(seconds, "trained SavedModel export", _export_trained, trained_dir, data)
    movie_ids, user_ids = data["movie_ids"], data["user_ids"]
    titles = np.array([f"Movie {i}" for i in range(NUM_MOVIES)], dtype=object)
    batches = [tf.constant(user_ids[lo : lo + BATCH]) for lo in range(0, NUM_USERS, BATCH)]
    singles = [tf.constant(user_ids[i : i + 1]) for i in range(NUM_USERS)]
    rows, op_stats = {}, {}
    for kind, name in ((index.SCANN, "retrieval"), (index.BRUTE_FORCE, "retrieval_brute_force")):
        path = str(tmp / name)
        _timed(
            seconds,
            f"{name} SavedModel export (publish.retrieval)",
            retrieval.export_retrieval_model,
            trained_dir,
            movie_ids,
            titles,
            np.ones(NUM_MOVIES, np.int64),
            SEEN_PER_USER,
            path,
            index_kind=kind,
            k=K,
        )
        loaded = _timed(seconds, f"{name} SavedModel load (TF2)", index.load_saved_model, path)
        signature = loaded.signatures["serving_default"]
        got = np.concatenate([_rows(signature(user_id=b)["movie_ids"]) for b in batches])
        rows[f"(c) {name} SavedModel, TF2 signature from Python"] = _row(
            lambda i, s=signature: s(user_id=singles[i]),
            lambda s=signature: s(user_id=batches[0]),
            _recall(got, truth["unseen"]),
            repeats=(SINGLE_REPEATS, BATCH_REPEATS) if kind == index.SCANN else (20, 2),
        )
        if kind == index.BRUTE_FORCE:
            continue
        session = _timed(seconds, f"{name} SavedModel load (graph Session)", _GraphSession, path)
        got = np.concatenate([_rows(session(b.numpy())) for b in batches])
        rows[f"(c) {name} SavedModel, graph Session (TF Serving's executor)"] = _row(
            lambda i, s=session: s(user_ids[i : i + 1]),
            lambda s=session: s(user_ids[:BATCH]),
            _recall(got, truth["unseen"]),
        )
        op_stats = session.op_times(user_ids, 50)
        session.close()
    return rows, op_stats


class _FixedTowers(tf.Module):
    """A stand-in for the trained model with the interface ``publish.retrieval`` wraps
    (``trainer.export.ServingModule``'s user_embedding, history_embedding, movie_embedding,
    seen_movies and is_seen), holding the synthetic embeddings and seen movies as they are:
    the trained towers compute user vectors from histories, which cannot hold arbitrary
    synthetic queries."""

    def __init__(self, data: dict):
        super().__init__()
        users, movies = list(data["user_ids"]), list(data["movie_ids"])
        self.user_vectors = tf.Variable(np.asarray(data["users"], np.float32), trainable=False)
        self.movie_vectors = tf.Variable(np.asarray(data["movies"], np.float32), trainable=False)
        self.user_table = export.lookup_table(users)
        self.movie_table = export.lookup_table(movies)
        seen = np.asarray(data["movie_ids"])[data["seen"]]
        pairs = [
            f"{u}{export.SEPARATOR}{m}" for u, row in zip(users, seen, strict=True) for m in row
        ]
        self.pairs = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(pairs, tf.zeros(len(pairs), tf.int64)), -1
        )
        joined = [export.SEPARATOR.join(row) for row in seen]
        self.histories = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(users, joined), ""
        )

    def _rows(self, table, vectors, ids):
        idx = table.lookup(ids)
        known = idx < tf.cast(tf.shape(vectors)[0], tf.int64)
        safe = tf.where(known, idx, tf.zeros_like(idx))
        return {"embedding": tf.gather(vectors, safe), "known": known}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def user_embedding(self, user_id):
        return self._rows(self.user_table, self.user_vectors, user_id)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def movie_embedding(self, movie_id):
        return self._rows(self.movie_table, self.movie_vectors, movie_id)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.string)])
    def history_embedding(self, movie_ids):
        rows = self._rows(self.movie_table, self.movie_vectors, tf.reshape(movie_ids, [-1]))
        dim = tf.shape(self.movie_vectors)[1]
        vectors = tf.reshape(rows["embedding"], [tf.shape(movie_ids)[0], -1, dim])
        known = tf.reduce_any(tf.reshape(rows["known"], tf.shape(movie_ids)), axis=1)
        return {"embedding": tf.reduce_mean(vectors, axis=1), "known": known}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def seen_movies(self, user_id):
        ragged = tf.strings.split(self.histories.lookup(user_id), sep=export.SEPARATOR)
        return {"movie_ids": ragged.to_tensor(default_value=""), "count": ragged.row_lengths()}

    @tf.function(
        input_signature=[tf.TensorSpec([None], tf.string), tf.TensorSpec([None, None], tf.string)]
    )
    def is_seen(self, user_id, movie_ids):
        users = tf.broadcast_to(tf.expand_dims(user_id, 1), tf.shape(movie_ids))
        pairs = tf.strings.join([users, movie_ids], separator=export.SEPARATOR)
        return self.pairs.lookup(pairs) >= 0


def _export_trained(path: str, data: dict) -> None:
    """The stand-in trained model (:class:`_FixedTowers`) as a SavedModel."""
    module = _FixedTowers(data)
    tf.saved_model.save(
        module,
        path,
        signatures={
            "user_embedding": module.user_embedding.get_concrete_function(),
            "movie_embedding": module.movie_embedding.get_concrete_function(),
        },
    )


class _GraphSession:
    """A SavedModel's serving_default run by a TF1 graph Session, as TF Serving runs it."""

    def __init__(self, path: str, output: str = "movie_ids"):
        graph = tf.Graph()
        with graph.as_default():
            self._session = tf.compat.v1.Session(graph=graph)
            meta = tf.compat.v1.saved_model.loader.load(self._session, ["serve"], path)
        signature = meta.signature_def["serving_default"]
        self._input = signature.inputs["user_id"].name
        self._outputs = [t.name for t in signature.outputs.values()]
        self._output = self._outputs.index(signature.outputs[output].name)
        self._run = self._session.make_callable(self._outputs, [self._input])

    def __call__(self, user_ids: np.ndarray) -> np.ndarray:
        """``[batch]`` user ids -> the ``output`` tensor (``[batch, K]`` movie ids)."""
        return self._run(user_ids)[self._output]

    def op_times(self, user_ids: np.ndarray, repeats: int) -> dict:
        """Per op type, median over single-user runs of its summed microseconds in a run."""
        from tensorflow.core.protobuf import config_pb2

        options = config_pb2.RunOptions(trace_level=config_pb2.RunOptions.FULL_TRACE)
        per_op = {}
        for i in range(repeats):
            metadata = config_pb2.RunMetadata()
            feed = {self._input: user_ids[i : i + 1]}
            self._session.run(self._outputs, feed, options=options, run_metadata=metadata)
            in_run = {}
            for device in metadata.step_stats.dev_stats:
                for node in device.node_stats:
                    # timeline_label reads "node_name = OpType(inputs)"
                    op = node.timeline_label.split("(")[0].split(" = ")[-1] or node.node_name
                    in_run[op] = in_run.get(op, 0) + node.all_end_rel_micros
            for op, micros in in_run.items():
                per_op.setdefault(op, []).append(micros)
        return {op: statistics.median(times) for op, times in per_op.items()}

    def close(self) -> None:
        self._session.close()


def _rows(ids) -> np.ndarray:
    """``[n, k]`` ids ``b"m<row>"`` (tensor or array) -> ``[n, k]`` int catalogue rows."""
    ids = ids.numpy() if hasattr(ids, "numpy") else np.asarray(ids)
    return np.vectorize(lambda s: int(s[1:]))(ids)


def _recall(got: np.ndarray, want: np.ndarray) -> float:
    """Mean over rows of |got ∩ want| / |want|."""
    return float(np.mean([len(set(g) & set(w)) / len(w) for g, w in zip(got, want, strict=True)]))


def _row(single, batched, recall, repeats=(SINGLE_REPEATS, BATCH_REPEATS)) -> dict:
    """Median latency of ``single(i)`` (user i alone) and of ``batched()`` divided by BATCH."""
    return {
        "single_ms": _median_ms(single, repeats[0]),
        "batched_ms": _median_ms(lambda i: batched(), repeats[1]) / BATCH if batched else None,
        "recall": recall,
    }


def _median_ms(fn: Callable[[int], object], repeats: int) -> float:
    fn(0)  # traces, warms caches
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        fn(i % NUM_USERS)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _timed(seconds: dict, step: str, fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    seconds[step] = time.perf_counter() - start
    return result


def _describe(params: index.ScannParams) -> str:
    return (
        f"({params.num_leaves_to_search}/{params.num_leaves} leaves, "
        f"{params.num_reordering_candidates} re-scored)"
    )


def _report(out, rows, seconds, chosen, overheads, op_stats) -> None:
    def p(line=""):
        print(line, file=out)

    p(
        f"\nRetrieval at scale: {NUM_MOVIES:,} movies x {DIM}-d ({NUM_CLUSTERS} Gaussian "
        f"clusters), {NUM_USERS} users, top {NUM_RETRIEVED} retrieved, recall@{K} vs brute force"
    )
    p(f"  publish.index chose {_describe(chosen)} for this catalogue")
    p(f"  {'method':<76}{'single ms':>10}{'batch ms/q':>12}{'recall@10':>11}")
    for name, r in rows.items():
        batched = f"{r['batched_ms']:.3f}" if r["batched_ms"] is not None else "-"
        p(f"  {name:<76}{r['single_ms']:>10.3f}{batched:>12}{r['recall']:>11.3f}")
    p(f"  target: <= {TARGET_MS} ms per query at recall@{K} >= {TARGET_RECALL}")
    p("\n  Where a single query's time goes:")
    for name, ms in overheads.items():
        p(f"    {name:<72}{ms:7.3f} ms")
    ops = sorted(op_stats.items(), key=lambda kv: -kv[1])
    total = sum(us for _, us in ops)
    p(f"    retrieval graph ops of one single-user Session run: {total / 1e3:.3f} ms; slowest:")
    for op, us in ops[:5]:
        p(f"      {op:<70}{us:7.0f} us")
    p("\n  Build, export and load times:")
    for step, secs in seconds.items():
        p(f"    {step:<72}{secs:7.1f} s")


if __name__ == "__main__":
    run(sys.stdout)
