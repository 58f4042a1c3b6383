"""EASE (Steck, 2019), the item-item linear model, and its low-rank form for the towers.

``B = I - P diagMat(1 / diag(P))`` with ``P = (X^T X + lambda I)^-1`` and a zero diagonal, so a
user's scores are ``x_u B``. The Trainer keeps a rank-r factorisation ``B ~ L R^T`` inside the
retrieval towers (user side ``x_u L``, movie side row j of ``R``), so EASE stays one dot
product that a ScaNN index can serve; on MovieLens 100k rank 128 loses nothing (recall@10
0.173 exact and at ranks 64 to 512). The Evaluator's EASE baseline
(``evaluation.baselines``) calls :func:`fit` too. Plain numpy/scipy.
"""

import numpy as np
import scipy.sparse as sp


def fit(x: sp.spmatrix, lam: float) -> np.ndarray:
    """EASE weights of a binary ``[num_users, num_movies]`` matrix.

    Args:
      x: 0/1 user x movie interactions.
      lam: ridge penalty (> 0).

    Returns:
      ``[num_movies, num_movies]`` float32 ``B`` with a zero diagonal.
    """
    x = sp.csr_matrix(x, dtype=np.float64)
    gram = (x.T @ x).toarray()
    gram[np.diag_indices_from(gram)] += lam
    p = np.linalg.inv(gram)
    b = -p / np.diag(p)
    b[np.diag_indices_from(b)] = 0.0
    return b.astype(np.float32)


def low_rank(b: np.ndarray, rank: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A rank-``rank`` factorisation ``B ~ L @ R.T`` by randomised SVD (Halko et al.).

    Args:
      b: ``[n, n]`` float32 weights.
      rank: kept rank; at least ``n`` keeps ``B`` exactly (``L = B``, ``R = I``).
      seed: seed of the random range finder.

    Returns:
      ``(L [n, r], R [n, r])`` float32 with ``r = min(rank, n)``.
    """
    n = b.shape[0]
    if rank >= n:
        return b.astype(np.float32), np.eye(n, dtype=np.float32)
    rng = np.random.default_rng(seed)
    b64 = b.astype(np.float64)
    q, _ = np.linalg.qr(b64 @ rng.standard_normal((n, min(n, rank + 16))))
    for _ in range(3):  # power iterations sharpen the leading subspace
        q, _ = np.linalg.qr(b64.T @ q)
        q, _ = np.linalg.qr(b64 @ q)
    u, s, vt = np.linalg.svd(q.T @ b64, full_matrices=False)
    left = (q @ u[:, :rank]) * s[:rank]
    return left.astype(np.float32), vt[:rank].T.astype(np.float32)
