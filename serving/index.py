"""Top-k retrieval indexes behind one interface: TFRS's ``factorized_top_k.TopK``.

``serving.retrieval`` calls :func:`build_index` to bake an index over the whole catalogue into
the retrieval SavedModel (saved with :data:`SCANN_SAVE_OPTIONS`), and ``serving.client`` loads
that SavedModel with :func:`load_saved_model`. Every index is filled with
``index(candidates, identifiers)`` or ``index_from_dataset(dataset)``, called on queries for
``(scores, identifiers)`` and says whether it ``is_exact()``; brute force and ScaNN differ
only in how :func:`make_index` builds them.

ScaNN is an optional heavy dependency: without it this module still works for brute force,
and building or loading a ScaNN index raises "pip install scann==1.3.2 to use the ScaNN
index".
"""

import dataclasses
import math
import os

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

BRUTE_FORCE = "brute_force"
SCANN = "scann"
INDEX_KINDS = (BRUTE_FORCE, SCANN)

# The custom ops of a ScaNN index live in the "Scann" op namespace; SavedModel refuses to
# write ops outside the core namespace unless they are whitelisted.
SCANN_SAVE_OPTIONS = tf.saved_model.SaveOptions(namespace_whitelist=["Scann"])

_SCANN_MISSING = "pip install scann==1.3.2 to use the ScaNN index"

# ScaNN's asymmetric hashing trains 16 centres per block, so it cannot index fewer rows.
MIN_SCANN_CANDIDATES = 16

# Below this many candidates ScaNN is configured to be exact: every leaf is searched and every
# candidate re-scored in float32, so it returns what brute force returns (MovieLens 100k's
# 1682 movies fall here). Measured on 32-d embeddings with 2 CPU cores and batches of 200
# queries, brute force costs about 0.05 ms per query up to 20k candidates, no more than
# approximate ScaNN, so approximating a catalogue this small would lose recall for nothing;
# ScaNN pays off from about 100k (0.2 ms vs 0.08 ms) and clearly at 1M (2.2 ms vs 0.4 ms).
SCANN_EXACT_BELOW = 10_000

# Half the leaves are searched so that recall does not depend on the embeddings having
# cluster structure: for isotropic Gaussian embeddings, the worst case for a partitioning
# index, recall@10 at 20k / 200k / 1M candidates was 0.97 / 0.99 / 0.99 searching half the
# leaves but 0.88 / 0.95 / 0.97 searching 30%. Clustered synthetic embeddings (trained ones
# are clustered) reached 0.99 at 20k with 10% of the leaves, so this spends some latency
# (0.43 ms instead of 0.34 ms per query at 1M) on a guarantee that holds for any data.
_LEAF_SEARCH_FRACTION = 0.5

# Asymmetric hashing ranks candidates only roughly, and more near-ties compete for the top k
# as the catalogue grows: with a fixed 100 re-scored candidates recall@10 fell to 0.70-0.80
# at 1M. Re-scoring a pool that grows with sqrt(N) (2000 at 1M) and with k keeps it >= 0.99.
_MIN_REORDERING_CANDIDATES = 250
_REORDERING_PER_LEAF = 2
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
    """ScaNN parameters for a catalogue of ``num_candidates`` rows queried for ``k`` results.

    ``num_leaves`` is ``round(sqrt(num_candidates))`` (ScaNN's rule of thumb: leaves and
    leaf size grow alike). Below :data:`SCANN_EXACT_BELOW` candidates every leaf is searched
    and every candidate re-scored, which makes the index exact. From there on half the leaves are
    searched and ``max(250, 2 * num_leaves, 10 * k)`` candidates re-scored; the constants'
    comments give the measurements behind both choices.

    Args:
      num_candidates: rows that will be indexed.
      k: results per query.

    Returns:
      The parameters to build the index with.

    Raises:
      ValueError: if ``num_candidates < 16`` (ScaNN cannot train its quantizer) or ``k`` is
        not in ``[1, num_candidates]``.
    """
    _check_sizes(num_candidates, k)
    if num_candidates < MIN_SCANN_CANDIDATES:
        raise ValueError(
            f"a ScaNN index needs at least {MIN_SCANN_CANDIDATES} candidates, got "
            f"{num_candidates}; use kind={BRUTE_FORCE!r} for a catalogue this small"
        )
    num_leaves = max(1, round(math.sqrt(num_candidates)))
    if num_candidates < SCANN_EXACT_BELOW:
        return ScannParams(num_leaves, num_leaves, num_candidates)
    reordering = max(
        _MIN_REORDERING_CANDIDATES,
        _REORDERING_PER_LEAF * num_leaves,
        _REORDERING_PER_RESULT * k,
    )
    return ScannParams(
        num_leaves=num_leaves,
        num_leaves_to_search=max(1, math.ceil(_LEAF_SEARCH_FRACTION * num_leaves)),
        num_reordering_candidates=min(num_candidates, reordering),
    )


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
        params = scann_params(num_candidates, k)
        _import_scann()
        return tfrs.layers.factorized_top_k.ScaNN(
            query_model=query_model,
            k=k,
            distance_measure="dot_product",
            num_leaves=params.num_leaves,
            num_leaves_to_search=params.num_leaves_to_search,
            num_reordering_candidates=params.num_reordering_candidates,
        )
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


def load_saved_model(path: str | os.PathLike):
    """``tf.saved_model.load`` that first registers ScaNN's ops when scann is installed.

    A SavedModel holding a ScaNN index uses ``Scann>*`` custom ops, which exist in a process
    only after ``import scann``; brute-force SavedModels load the same way without it.

    Args:
      path: SavedModel directory.

    Returns:
      The loaded object (``.signatures`` holds the serving signatures).

    Raises:
      ImportError: if the SavedModel needs ScaNN's ops and scann is not installed.
    """
    try:
        _import_scann()
        have_scann = True
    except ImportError:
        have_scann = False
    try:
        return tf.saved_model.load(os.fspath(path))
    except (RuntimeError, ValueError, tf.errors.NotFoundError) as err:
        if have_scann or "Scann" not in str(err):
            raise
        raise ImportError(f"{path} holds a ScaNN index: {_SCANN_MISSING}") from err


def _import_scann() -> None:
    try:
        import scann  # noqa: F401  (registers the Scann>* TensorFlow ops)
    except ImportError as err:
        raise ImportError(_SCANN_MISSING) from err


def _check_sizes(num_candidates: int, k: int) -> None:
    if num_candidates < 1:
        raise ValueError(f"an index needs at least one candidate, got {num_candidates}")
    if not 1 <= k <= num_candidates:
        raise ValueError(f"k must be in [1, num_candidates={num_candidates}], got {k}")
