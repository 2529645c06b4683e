"""Exact cosine top-k over a (memory-mapped) matrix of L2-normalised rows, on the CPU.

Cosine similarity of normalised vectors is their dot product, so a query is one matrix-vector
product. It runs over ``chunk_rows`` rows at a time: each chunk's scores (a few MB) are reduced to
its best ``k`` with ``argpartition`` and merged into the running best, so the memory beyond the
mapped matrix stays bounded whatever N. Ties are broken by row order (the earlier row first), so
the ranking is deterministic.

With a float16 copy of the rows (``half``), the scan reads half the bytes through torch's float16
matrix-vector product (three times faster than float32 on the CPUs measured, docs/search.md), and
stays exact: a float16 score is within :data:`HALF_ERROR` of the float32 one (inputs rounded to
half precision: at most ``2 * 2**-11`` for unit vectors; the product accumulates in float32; the
result rounded: ``2**-12``), so every row of the true top-k scores at least the k-th float16
score minus twice that; those candidates are scored again in float32 from the full rows.
"""

from __future__ import annotations

import numpy as np

DEFAULT_CHUNK_ROWS = 131072
#: Bound on |float16 score - float32 score| for unit vectors (about 1.2e-3, kept with a margin).
HALF_ERROR = 2e-3


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32); a zero row stays zero."""
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    return (v / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def _best(scores: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` highest scores (descending; ties: lower row first) with their rows."""
    if len(scores) > k:
        part = np.argpartition(-scores, k - 1)[:k]
        # argpartition may cut inside a run of ties: take every row tied with the k-th score
        kth = scores[part].min()
        part = np.flatnonzero(scores >= kth)
        scores, rows = scores[part], rows[part]
    order = np.lexsort((rows, -scores))[:k]
    return scores[order], rows[order]


def _half_candidates(half: np.ndarray, q: np.ndarray, k: int, chunk_rows: int) -> np.ndarray:
    """Rows whose float16 score is within ``2 * HALF_ERROR`` of the k-th best float16 score (a
    superset of the exact top-k, see the module's docstring), ascending."""
    import warnings

    import torch

    qh = torch.from_numpy(q).to(torch.float16)
    kth = -np.inf  # the k-th best float16 score so far (only rises)
    best = np.zeros(0, np.float32)
    kept_rows: list[np.ndarray] = []
    kept_scores: list[np.ndarray] = []
    with warnings.catch_warnings():  # the map is read-only and torch only reads it
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        for start in range(0, half.shape[0], chunk_rows):
            scores = torch.mv(torch.from_numpy(np.asarray(half[start:start + chunk_rows])), qh).float().numpy()
            top = scores if len(scores) <= k else scores[np.argpartition(-scores, k - 1)[:k]]
            best = np.sort(np.concatenate([best, top]))[::-1][:k]
            if len(best) == k:
                kth = float(best[-1])
            keep = np.flatnonzero(scores >= kth - 2 * HALF_ERROR)
            kept_rows.append(keep + start)
            kept_scores.append(scores[keep])
    rows, scores = np.concatenate(kept_rows), np.concatenate(kept_scores)
    return rows[scores >= kth - 2 * HALF_ERROR]


def top_k(matrix: np.ndarray, query: np.ndarray, k: int, chunk_rows: int = DEFAULT_CHUNK_ROWS,
          half: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, scores)`` of the ``k`` rows of ``matrix`` (N, D) most similar to ``query`` (D,), best
    first. ``matrix`` rows and ``query`` are taken as normalised (the cache stores them so).
    ``half``: the same rows in float16, scanned instead of ``matrix`` (same result)."""
    if k < 1:
        raise ValueError("k must be at least 1")
    q = np.asarray(query, dtype=np.float32).reshape(-1)
    if matrix.ndim != 2 or matrix.shape[1] != q.shape[0]:
        raise ValueError(f"query of dimension {q.shape[0]} against embeddings of shape {matrix.shape}")
    if half is not None and len(half) == len(matrix) and len(matrix) > k:
        rows = _half_candidates(half, q, k, chunk_rows)
        s, r = _best(np.asarray(matrix[rows], dtype=np.float32) @ q, rows.astype(np.int64), k)
        return r, s
    best_scores = np.zeros(0, np.float32)
    best_rows = np.zeros(0, np.int64)
    for start in range(0, matrix.shape[0], chunk_rows):
        scores = matrix[start:start + chunk_rows] @ q
        rows = np.arange(start, start + len(scores), dtype=np.int64)
        s, r = _best(scores, rows, k)
        best_scores, best_rows = _best(np.concatenate([best_scores, s]), np.concatenate([best_rows, r]), k)
    return best_rows, best_scores


__all__ = ["DEFAULT_CHUNK_ROWS", "normalize", "top_k"]
