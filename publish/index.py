"""Top-k retrieval indexes behind one interface: TFRS's ``factorized_top_k.TopK``.

``publish.retrieval`` calls :func:`build_index` to bake an index over the whole catalogue into
the retrieval SavedModel (saved with :data:`SCANN_SAVE_OPTIONS`), and ``serving.client`` loads
that SavedModel with :func:`load_saved_model`. Every index is filled with
``index(candidates, identifiers)`` or ``index_from_dataset(dataset)``, called on queries for
``(scores, identifiers)`` and says whether it ``is_exact()``; brute force and ScaNN differ
only in how :func:`make_index` builds them. A ScaNN index, once filled, measures how few of
its leaves a query needs to search (:class:`ScaNN`), so the SavedModel it is baked into
searches no more than the catalogue requires.

ScaNN is an optional heavy dependency: without it this module still works for brute force,
and building or loading a ScaNN index raises "pip install scann==1.3.2 to use the ScaNN
index".
"""

import dataclasses
import math

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from serving.loading import import_scann
from serving.names import INDEX_BRUTE_FORCE as BRUTE_FORCE
from serving.names import INDEX_KINDS
from serving.names import INDEX_SCANN as SCANN

# The custom ops of a ScaNN index live in the "Scann" op namespace; SavedModel refuses to
# write ops outside the core namespace unless they are whitelisted.
SCANN_SAVE_OPTIONS = tf.saved_model.SaveOptions(namespace_whitelist=["Scann"])


# ScaNN's asymmetric hashing trains 16 centres per block, so it cannot index fewer rows.
MIN_SCANN_CANDIDATES = 16

# Below this many candidates ScaNN is configured to be exact: every leaf is searched and every
# candidate re-scored in float32, so it returns what brute force returns (MovieLens 100k's
# 1682 movies fall here). Measured on 32-d embeddings with 2 CPU cores and batches of 200
# queries, brute force costs about 0.05 ms per query up to 20k candidates, no more than
# approximate ScaNN, so approximating a catalogue this small would lose recall for nothing;
# ScaNN pays off from about 100k (0.2 ms vs 0.08 ms) and clearly at 1M (2.2 ms vs 0.4 ms).
SCANN_EXACT_BELOW = 10_000

# How many leaves a query must search depends on the embeddings, not only on their number.
# For isotropic Gaussian embeddings, the worst case for a partitioning index, recall@10 at
# 20k / 200k / 1M candidates was 0.97 / 0.99 / 0.99 searching half the leaves but 0.88 / 0.95
# / 0.97 searching 30%; clustered embeddings (trained ones are clustered) kept recall@10 at
# 0.99 at 1M searching 2% of the leaves, 0.04 ms instead of 0.42 ms per single query (raw
# ScaNN, 2 cores; `python -m bench.retrieval_scale`). So the index measures instead of
# assuming: once built, it tries the settings of :func:`scann_search_ladder`, cheapest first,
# on a sample of its candidates used as queries, and keeps the first whose recall@k against
# the exact top k reaches _CALIBRATION_RECALL; half the leaves (:func:`scann_params`) is the
# fallback. Candidates stand in for queries well: at 10k-1M rows, clustered or isotropic,
# their recall was within 0.02 of that of separately drawn queries wherever either was above
# 0.85 (more optimistic only far below target), hence 0.99 for a 0.95 aim.
_LEAF_SEARCH_FRACTIONS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
_CALIBRATION_RECALL = 0.99
_CALIBRATION_QUERIES = 500
_CALIBRATION_BATCH = 100  # exact scores of 100 queries x 1M candidates take 400 MB
_CALIBRATION_SEED = 0

# Asymmetric hashing ranks candidates only roughly, and more near-ties compete for the top k
# the more leaves are searched: with a fixed 100 re-scored candidates recall@10 fell to
# 0.70-0.80 at 1M searching half the leaves. Re-scoring a pool that grows with the leaves
# searched (2000 for 500 leaves) and with k keeps it >= 0.99.
_MIN_REORDERING_CANDIDATES = 250
_REORDERING_PER_SEARCHED_LEAF = 4
_REORDERING_PER_RESULT = 10


@dataclasses.dataclass(frozen=True)
class ScannParams:
    """The tree and re-scoring sizes of a ScaNN index (see ``tfrs.layers.factorized_top_k.ScaNN``).

    Attributes:
      num_leaves: partitions of the catalogue (k-means tree leaves).
      num_leaves_to_search: partitions scored with asymmetric hashing per query.
      num_reordering_candidates: best hashed candidates re-scored exactly per query.
    """

    num_leaves: int
    num_leaves_to_search: int
    num_reordering_candidates: int


def scann_params(num_candidates: int, k: int) -> ScannParams:
    """The most thorough ScaNN settings for ``num_candidates`` rows queried for ``k`` results.

    The index is built with these and searches with them unless a cheaper rung of
    :func:`scann_search_ladder` reaches the recall target on the data. ``num_leaves`` is
    ``round(sqrt(num_candidates))`` (ScaNN's rule of thumb: leaves and leaf size grow alike).
    Below :data:`SCANN_EXACT_BELOW` candidates every leaf is searched and every candidate
    re-scored, which makes the index exact. From there on half the leaves are searched and
    ``max(250, 4 * leaves searched, 10 * k)`` candidates re-scored; the constants' comments
    give the measurements behind both choices.

    Args:
      num_candidates: rows that will be indexed.
      k: results per query.

    Returns:
      The parameters to build the index with.

    Raises:
      ValueError: if ``num_candidates < 16`` (ScaNN cannot train its quantizer) or ``k`` is
        not in ``[1, num_candidates]``.
    """
    return scann_search_ladder(num_candidates, k)[-1]


def scann_search_ladder(num_candidates: int, k: int) -> list[ScannParams]:
    """The search settings an index of ``num_candidates`` rows tries, cheapest first.

    All share ``num_leaves``; rung ``i`` searches ``ceil(f_i * num_leaves)`` leaves for
    ``f_i`` in 2%, 5%, 10%, 20%, 30%, 50% (rungs searching as many leaves as a cheaper one
    are dropped) and re-scores ``max(250, 4 * leaves searched, 10 * k)`` candidates, at most
    ``num_candidates``. Below :data:`SCANN_EXACT_BELOW` the only rung is the exact one.

    Args:
      num_candidates: rows that will be indexed.
      k: results per query.

    Returns:
      The rungs; the last is :func:`scann_params`.

    Raises:
      ValueError: as :func:`scann_params`.
    """
    _check_sizes(num_candidates, k)
    if num_candidates < MIN_SCANN_CANDIDATES:
        raise ValueError(
            f"a ScaNN index needs at least {MIN_SCANN_CANDIDATES} candidates, got "
            f"{num_candidates}; use kind={BRUTE_FORCE!r} for a catalogue this small"
        )
    num_leaves = max(1, round(math.sqrt(num_candidates)))
    if num_candidates < SCANN_EXACT_BELOW:
        return [ScannParams(num_leaves, num_leaves, num_candidates)]
    ladder = []
    for fraction in _LEAF_SEARCH_FRACTIONS:
        leaves = max(1, math.ceil(fraction * num_leaves))
        if ladder and leaves == ladder[-1].num_leaves_to_search:
            continue
        reordering = max(
            _MIN_REORDERING_CANDIDATES,
            _REORDERING_PER_SEARCHED_LEAF * leaves,
            _REORDERING_PER_RESULT * k,
        )
        ladder.append(ScannParams(num_leaves, leaves, min(num_candidates, reordering)))
    return ladder


class ScaNN(tfrs.layers.factorized_top_k.ScaNN):
    """TFRS's ScaNN layer that searches with the cheapest settings reaching the recall target.

    Built with :func:`scann_params` (so the tree and the quantizer are trained once), then
    :meth:`index` measures each rung of :func:`scann_search_ladder` and :meth:`call` passes
    the chosen leaves and re-scoring pool to ScaNN's search op, which takes them per call.
    It reads the parent's ``_serialized_searcher`` and ``_identifiers`` (TFRS 0.7.7, pinned).

    Attributes:
      search_params: the settings queries use (the fallback until :meth:`index` is called).
      calibration_recall: recall@k the chosen rung reached on the sample, None before
        :meth:`index` or when the index is exact.
    """

    def __init__(self, num_candidates: int, k: int, query_model: tf.keras.Model | None = None):
        params = scann_params(num_candidates, k)
        import_scann()
        super().__init__(
            query_model=query_model,
            k=k,
            distance_measure="dot_product",
            num_leaves=params.num_leaves,
            num_leaves_to_search=params.num_leaves_to_search,
            num_reordering_candidates=params.num_reordering_candidates,
        )
        self._num_candidates = num_candidates
        self.search_params = params
        self.calibration_recall = None

    def index(self, candidates: tf.Tensor, identifiers: tf.Tensor | None = None) -> "ScaNN":
        """Builds the ScaNN index over ``[num_candidates, dim]`` float32 ``candidates`` and
        chooses its search settings (see the class docstring); returns ``self``."""
        super().index(candidates, identifiers)
        self._num_candidates = int(candidates.shape[0])
        ladder = scann_search_ladder(self._num_candidates, self._k)
        self.search_params, self.calibration_recall = ladder[-1], None
        if len(ladder) > 1:
            self.search_params, self.calibration_recall = _calibrate(
                self._searcher(), candidates, ladder, self._k
            )
        return self

    def call(self, queries, k: int | None = None):
        """``[num_queries, dim]`` queries (or the query model's features) -> ``(scores
        [num_queries, k] float32 descending, identifiers [num_queries, k])``."""
        k = k if k is not None else self._k
        if self._serialized_searcher is None:
            raise ValueError("The `index` method must be called first to create the index.")
        if self.query_model is not None:
            queries = self.query_model(queries)
        result = self._searcher().search_batched_parallel(
            queries,
            final_num_neighbors=k,
            pre_reorder_num_neighbors=min(
                self._num_candidates,
                max(self.search_params.num_reordering_candidates, _REORDERING_PER_RESULT * k),
            ),
            leaves_to_search=self.search_params.num_leaves_to_search,
        )
        if self._identifiers is None:
            return result.distances, result.indices
        return result.distances, tf.gather(self._identifiers, result.indices)

    def _searcher(self):
        from scann.scann_ops.py import scann_ops

        return scann_ops.searcher_from_module(self._serialized_searcher)


def _calibrate(searcher, candidates: tf.Tensor, ladder: list[ScannParams], k: int):
    """(first rung whose recall@k reaches _CALIBRATION_RECALL or the last rung, its recall).

    Recall counts a returned candidate as a hit when its exact score is at least the k-th
    best exact score, so candidates tied with the k-th (duplicate embeddings) all count.
    """
    num_candidates = int(candidates.shape[0])
    rng = np.random.default_rng(_CALIBRATION_SEED)
    rows = rng.choice(num_candidates, min(_CALIBRATION_QUERIES, num_candidates), replace=False)
    queries = tf.gather(candidates, np.sort(rows))
    kth_best = tf.concat(
        [
            tf.math.top_k(
                tf.matmul(queries[lo : lo + _CALIBRATION_BATCH], candidates, transpose_b=True), k
            ).values[:, -1:]
            for lo in range(0, len(rows), _CALIBRATION_BATCH)
        ],
        axis=0,
    )
    # float32 scores of the same pair differ by rounding between matmul and ScaNN's re-scoring.
    tolerance = 1e-5 * tf.maximum(1.0, tf.abs(kth_best))
    for params in ladder:
        result = searcher.search_batched_parallel(
            queries,
            final_num_neighbors=k,
            pre_reorder_num_neighbors=params.num_reordering_candidates,
            leaves_to_search=params.num_leaves_to_search,
        )
        hits = tf.reduce_sum(tf.cast(result.distances >= kth_best - tolerance, tf.float32))
        recall = float(hits) / (len(rows) * k)
        if recall >= _CALIBRATION_RECALL:
            return params, recall
    return ladder[-1], recall


def make_index(
    kind: str,
    num_candidates: int,
    k: int,
    query_model: tf.keras.Model | None = None,
) -> tfrs.layers.factorized_top_k.TopK:
    """An empty top-k index of ``kind``, sized for ``num_candidates`` candidates.

    Args:
      kind: ``"brute_force"`` (exact) or ``"scann"`` (approximate, see :func:`scann_params`).
      num_candidates: rows that will be indexed (ScaNN's tree is sized from it).
      k: default number of results per query.
      query_model: optional model mapping raw query features to ``[num_queries, dim]``
        float32 embeddings; without it the index is queried with embeddings.

    Returns:
      A ``TopK`` layer; fill it with ``index(candidates, identifiers)`` or
      ``index_from_dataset``, then call it on ``[num_queries, dim]`` float32 queries to get
      ``(scores [num_queries, k] float32 descending, identifiers [num_queries, k])``.

    Raises:
      ValueError: for an unknown ``kind`` or sizes :func:`scann_params` rejects.
      ImportError: for ``"scann"`` when the scann package is not installed.
    """
    if kind == BRUTE_FORCE:
        _check_sizes(num_candidates, k)
        return tfrs.layers.factorized_top_k.BruteForce(query_model=query_model, k=k)
    if kind == SCANN:
        return ScaNN(num_candidates, k, query_model=query_model)
    raise ValueError(f"unknown index kind {kind!r}; expected one of {INDEX_KINDS}")


def build_index(
    kind: str,
    candidate_ids: np.ndarray,
    candidate_embeddings: np.ndarray,
    k: int,
    query_model: tf.keras.Model | None = None,
) -> tfrs.layers.factorized_top_k.TopK:
    """An index of ``kind`` over the given candidates, ready to query.

    Args:
      kind: ``"brute_force"`` or ``"scann"``.
      candidate_ids: ``[num_candidates]`` str (or bytes) ids; they come back as tf.string.
      candidate_embeddings: ``[num_candidates, dim]`` float32 embeddings, row i for id i.
      k: default number of results per query.
      query_model: optional model mapping raw query features to embeddings.

    Returns:
      The filled ``TopK`` layer: ``[num_queries, dim]`` float32 queries ->
      ``(scores [num_queries, k] float32, ids [num_queries, k] tf.string)``.

    Raises:
      ValueError: for an unknown ``kind``, ``k`` outside ``[1, num_candidates]``, or ids and
        embeddings whose shapes do not match.
      ImportError: for ``"scann"`` when the scann package is not installed.
    """
    embeddings = np.asarray(candidate_embeddings, dtype=np.float32)
    ids = np.asarray(candidate_ids, dtype=object)
    if embeddings.ndim != 2 or ids.shape != embeddings.shape[:1]:
        raise ValueError(
            "expected candidate_ids [N] and candidate_embeddings [N, dim], got "
            f"{ids.shape} and {embeddings.shape}"
        )
    topk = make_index(kind, len(ids), k, query_model=query_model)
    topk.index(tf.constant(embeddings), tf.constant(ids, dtype=tf.string))
    return topk


def _check_sizes(num_candidates: int, k: int) -> None:
    if num_candidates < 1:
        raise ValueError(f"an index needs at least one candidate, got {num_candidates}")
    if not 1 <= k <= num_candidates:
        raise ValueError(f"k must be in [1, num_candidates={num_candidates}], got {k}")
