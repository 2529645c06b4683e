"""Exact cosine top-k over a (memory-mapped) matrix of L2-normalised rows, on the CPU.

Cosine similarity of normalised vectors is their dot product, so a query is one matrix-vector
product. It runs over ``chunk_rows`` rows at a time: each chunk's scores (a few MB) are reduced to
its best ``k`` with ``argpartition`` and merged into the running best, so the memory beyond the
mapped matrix stays bounded whatever N. Ties are broken by row order (the earlier row first), so
the ranking is deterministic. Measured figures are in docs/search.md.
"""

from __future__ import annotations

import numpy as np

DEFAULT_CHUNK_ROWS = 131072


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


def top_k(matrix: np.ndarray, query: np.ndarray, k: int,
          chunk_rows: int = DEFAULT_CHUNK_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, scores)`` of the ``k`` rows of ``matrix`` (N, D) most similar to ``query`` (D,), best
    first. ``matrix`` rows and ``query`` are taken as normalised (the cache stores them so)."""
    if k < 1:
        raise ValueError("k must be at least 1")
    q = np.asarray(query, dtype=np.float32).reshape(-1)
    if matrix.ndim != 2 or matrix.shape[1] != q.shape[0]:
        raise ValueError(f"query of dimension {q.shape[0]} against embeddings of shape {matrix.shape}")
    best_scores = np.zeros(0, np.float32)
    best_rows = np.zeros(0, np.int64)
    for start in range(0, matrix.shape[0], chunk_rows):
        scores = matrix[start:start + chunk_rows] @ q
        rows = np.arange(start, start + len(scores), dtype=np.int64)
        s, r = _best(scores, rows, k)
        best_scores, best_rows = _best(np.concatenate([best_scores, s]), np.concatenate([best_rows, r]), k)
    return best_rows, best_scores


__all__ = ["DEFAULT_CHUNK_ROWS", "normalize", "top_k"]
