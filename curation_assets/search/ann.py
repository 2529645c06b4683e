"""The optional approximate index (faiss ``IndexHNSWFlat``, inner product), for outputs beyond what
exact search serves; chosen over usearch and faiss IVF-Flat by measurement (build time, query
time, recall@k against exact: docs/search.md, ``benchmarks/search_benchmark.py``).

It is an extra (``pip install 'curation-assets[search-index]'``): exact search needs nothing
beyond NumPy. The index is built from the cached vectors on first use and saved beside them as
``index-<fingerprint>.faiss`` (temporary name, then renamed), so it follows the cache's
generation: a changed parquet set builds a new one. Its keys are the cache's row numbers.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .cache import EmbeddingMatrix

METHOD = "faiss-hnsw"
#: Rows from which ``--index auto`` uses the index: exact search's query time grows linearly and
#: reaches 0.2 s near this size on 2 cores (docs/search.md).
AUTO_THRESHOLD = 1_200_000
#: HNSW links per node and search breadth (recall@20 against exact in docs/search.md).
HNSW_M = 32
EF_SEARCH = 512
_INDEX_RE = re.compile(r"^index-([0-9a-f]{16})\.faiss$")

INSTALL_HINT = ("the approximate index needs faiss: pip install 'curation-assets[search-index]' "
                "(or search exactly with --index exact)")


class IndexUnavailable(RuntimeError):
    """``--index ann`` without the library installed."""


def available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def worth_it(rows: int) -> bool:
    """``--index auto``: the index when the output is beyond what exact search serves and the extra
    is installed."""
    return rows >= AUTO_THRESHOLD and available()


def index_path(matrix: EmbeddingMatrix) -> Path:
    return matrix.folder / f"index-{matrix.fingerprint}.faiss"


def build(matrix: EmbeddingMatrix) -> Path:
    """Build and save the index of ``matrix`` (atomically); earlier generations' indexes removed."""
    import faiss

    index = faiss.IndexHNSWFlat(matrix.dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    step = 262144
    for start in range(0, len(matrix), step):  # ids are the rows: added in order
        index.add(np.ascontiguousarray(matrix.vectors[start:start + step], dtype=np.float32))
    path = index_path(matrix)
    fd, tmp = tempfile.mkstemp(dir=matrix.folder, prefix=".tmp-index-")
    os.close(fd)
    try:
        faiss.write_index(index, tmp)
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
    import faiss

    path = index_path(matrix)
    if not path.is_file():
        build(matrix)
    index: Any = faiss.read_index(str(path))  # an IndexHNSWFlat (the stubs say Index)
    if index.d != matrix.dim or index.ntotal != len(matrix):
        build(matrix)
        index = faiss.read_index(str(path))
    index.hnsw.efSearch = max(EF_SEARCH, k)
    scores, rows = index.search(np.asarray(query, np.float32).reshape(1, -1), min(k, len(matrix)))
    keep = rows[0] >= 0
    return rows[0][keep].astype(np.int64), scores[0][keep].astype(np.float32)


__all__ = ["AUTO_THRESHOLD", "INSTALL_HINT", "IndexUnavailable", "METHOD", "available", "build", "top_k",
           "worth_it"]
