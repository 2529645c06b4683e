"""The optional approximate index (HNSW from ``usearch``), for outputs beyond what exact search
serves; chosen over faiss by measurement (docs/search.md, ``benchmarks/search_benchmark.py``).

It is an extra (``pip install 'curation-assets[search-index]'``): exact search needs nothing
beyond NumPy. The index is built from the cached vectors on first use and saved beside them as
``index-<fingerprint>.usearch`` (temporary name, then renamed), so it follows the cache's
generation: a changed parquet set builds a new one. Its keys are the cache's row numbers.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .cache import EmbeddingMatrix

METHOD = "usearch-hnsw"
#: Rows from which ``--index auto`` uses the index: exact search stays under 0.2 s a query to
#: about this size on 2 cores (docs/search.md).
AUTO_THRESHOLD = 2_000_000
#: HNSW search breadth: recall@20 against exact at 1M random 256-d vectors in docs/search.md.
EXPANSION_SEARCH = 128
_INDEX_RE = re.compile(r"^index-([0-9a-f]{16})\.usearch$")

INSTALL_HINT = ("the approximate index needs usearch: pip install 'curation-assets[search-index]' "
                "(or search exactly with --index exact)")


class IndexUnavailable(RuntimeError):
    """``--index ann`` without the library installed."""


def available() -> bool:
    try:
        import usearch.index  # noqa: F401
    except ImportError:
        return False
    return True


def worth_it(rows: int) -> bool:
    """``--index auto``: the index when the output is beyond what exact search serves and the extra
    is installed."""
    return rows >= AUTO_THRESHOLD and available()


def index_path(matrix: EmbeddingMatrix) -> Path:
    return matrix.folder / f"index-{matrix.fingerprint}.usearch"


def build(matrix: EmbeddingMatrix, threads: int = 0) -> Path:
    """Build and save the index of ``matrix`` (atomically); earlier generations' indexes removed."""
    from usearch.index import Index

    index = Index(ndim=matrix.dim, metric="ip", dtype="f32")
    step = 262144
    for start in range(0, len(matrix), step):
        block = np.ascontiguousarray(matrix.vectors[start:start + step])
        index.add(np.arange(start, start + len(block), dtype=np.uint64), block, threads=threads or os.cpu_count() or 1)
    path = index_path(matrix)
    fd, tmp = tempfile.mkstemp(dir=matrix.folder, prefix=".tmp-index-")
    os.close(fd)
    try:
        index.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    for old in matrix.folder.iterdir():
        m = _INDEX_RE.match(old.name)
        if m and m.group(1) != matrix.fingerprint:
            old.unlink(missing_ok=True)
    return path


def top_k(matrix: EmbeddingMatrix, query: np.ndarray, k: int,
          required: bool = False) -> tuple[np.ndarray | None, np.ndarray]:
    """``(rows, scores)`` from the index (built first when missing); ``(None, ...)`` when the
    library is absent and not ``required`` (the caller then searches exactly)."""
    if not available():
        if required:
            raise IndexUnavailable(INSTALL_HINT)
        return None, np.zeros(0, np.float32)
    from usearch.index import Index

    path = index_path(matrix)
    if not path.is_file():
        build(matrix)
    index = Index.restore(str(path), view=True)  # memory-mapped, like the vectors
    if index is None or index.ndim != matrix.dim or len(index) != len(matrix):
        build(matrix)
        index = Index.restore(str(path), view=True)
    index.expansion_search = max(EXPANSION_SEARCH, k)
    found = index.search(np.asarray(query, np.float32), min(k, len(matrix)))
    rows = np.asarray(found.keys, dtype=np.int64)
    scores = 1.0 - np.asarray(found.distances, dtype=np.float32)  # usearch's "ip" distance is 1 - dot
    return rows, scores


__all__ = ["AUTO_THRESHOLD", "INSTALL_HINT", "IndexUnavailable", "METHOD", "available", "build", "top_k",
           "worth_it"]
