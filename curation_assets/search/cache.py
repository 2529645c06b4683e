"""The clip embeddings of an output as one memory-mapped matrix, cached under ``<output>/search/``.

``ce1_embd_parquet/<chunk>.parquet`` holds a few clips per file; searching 100k files per query
would spend its time opening them. They are read once into two flat files (float32 vectors, one
L2-normalised row per clip, and the clip ids as 36-byte ASCII rows) that later searches map with
NumPy without reading them into memory (and a float16 copy of the vectors, which a query scans:
:mod:`.rank`). The cache is keyed by a fingerprint of the parquet set
(names, sizes, versions) and rebuilt when it changes; a new generation's files are written under
temporary names and renamed, then ``cache.json`` (the pointer) is replaced, so a reader never sees
a half-written cache. An object-store output is cached on local disk (memory maps need one).

Nothing read back is trusted: a parquet file that cannot be read, has another schema, ids that are
not canonical UUIDs, vectors of another size or non-finite values is reported and its bad rows
left out; the search goes on with the rest.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..core import layout, storage
from ..core.documents import UUID_RE

SEARCH_DIR = "search"
CACHE_POINTER = "cache.json"
CACHE_VERSION = 2
ID_BYTES = 36  # str(uuid.UUID)
_VECTORS_RE = re.compile(r"^vectors-([0-9a-f]{16})\.f(32|16)$")
_IDS_RE = re.compile(r"^ids-([0-9a-f]{16})\.bin$")
_CHUNK_FILE_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.parquet$")


class NoEmbeddingsError(LookupError):
    """The output has no usable clip embedding; the message names what produces them."""


def embeddings_folder(output_path: str) -> str:
    return layout.get_output_path_ce1_embd_parquet(output_path)


def cache_folder(output_path: str) -> Path:
    """``<output>/search/`` for a local output; for an object store, a local folder named by the
    output URL's hash under ``$XDG_CACHE_HOME/curation-assets/search`` (memory maps need a disk)."""
    if storage.is_local(output_path):
        return Path(storage.local_path(storage.join(output_path, SEARCH_DIR)))
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha256(storage.normalize_url(output_path).encode()).hexdigest()[:24]
    return base / "curation-assets" / SEARCH_DIR / digest


def missing_embeddings_message(output_path: str, detail: str) -> str:
    return (f"no embeddings to search: {detail}. Text search ranks clips by their Cosmos-Embed1 embeddings in "
            f"{embeddings_folder(output_path)}/; curate with embeddings on (`curation-assets run ... "
            "--generate-embeddings on`, setting generate_embeddings=on), which needs the Cosmos-Embed1 weights "
            "(docs/models.md)")


@dataclass(frozen=True)
class ParquetFile:
    url: str
    name: str
    size: int
    version: str


def list_parquet(output_path: str) -> tuple[list[ParquetFile], list[str]]:
    """The chunk files of ``ce1_embd_parquet/`` (sorted by name) and the names that are not one
    (reported, never read). Temporary files (a leading dot) are skipped silently."""
    folder = embeddings_folder(output_path)
    fs, path = storage.get_fs(folder)
    files: list[ParquetFile] = []
    others: list[str] = []
    if storage.is_local(folder):
        if not os.path.isdir(path):
            return [], []
        with os.scandir(path) as it:
            entries = [(e.name, e.stat()) for e in it if e.is_file()]
        for name, st in entries:
            if name.startswith("."):
                continue
            if not _CHUNK_FILE_RE.match(name):
                others.append(name)
                continue
            files.append(ParquetFile(os.path.join(path, name), name, st.st_size, str(st.st_mtime_ns)))
    else:
        for url in storage.list_files(folder):
            name = storage.relative_to(folder, url)
            if name.startswith(".") or "/" in name:
                continue
            if not _CHUNK_FILE_RE.match(name):
                others.append(name)
                continue
            info = storage.file_info(url)
            if info is not None:
                files.append(ParquetFile(url, name, info.size, info.version))
    return sorted(files, key=lambda f: f.name), sorted(others)


def fingerprint(files: list[ParquetFile], dim: int) -> str:
    h = hashlib.sha256(f"{CACHE_VERSION}:{dim}".encode())
    for f in files:
        h.update(f"\n{f.name}\t{f.size}\t{f.version}".encode())
    return h.hexdigest()[:16]


@dataclass
class EmbeddingMatrix:
    """The cached embeddings: ``vectors`` (N, D) float32 and ``ids`` (N,) ``S36``, both memory-mapped
    (read-only); ``problems`` are the files and rows left out when the cache was built."""

    vectors: np.ndarray
    ids: np.ndarray
    half: np.ndarray | None  # the same rows in float16: what a query scans (rank.top_k)
    folder: Path
    fingerprint: str
    problems: list[str] = field(default_factory=list)
    rebuilt: bool = False

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    def clip_id(self, row: int) -> str:
        return bytes(self.ids[row]).decode("ascii", "replace")


def _rows(data: bytes, name: str, dim: int, problems: list[str]) -> tuple[list[str], np.ndarray] | None:
    """The valid rows of one parquet file; what is wrong with the rest goes to ``problems``."""
    try:
        table = pq.read_table(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - any parquet error is this file's problem
        problems.append(f"{name}: not a readable parquet file ({type(exc).__name__}); skipped")
        return None
    schema = table.schema
    if (schema.get_field_index("id") < 0 or schema.get_field_index("embedding") < 0
            or not pa.types.is_string(schema.field("id").type)
            or not pa.types.is_list(schema.field("embedding").type)
            or not pa.types.is_floating(schema.field("embedding").type.value_type)):
        problems.append(f"{name}: not an embeddings file (expected columns id: string, embedding: list<float>, "
                        f"found {', '.join(f'{f.name}: {f.type}' for f in schema)[:200]}); skipped")
        return None
    if table.num_rows == 0:
        return [], np.zeros((0, dim), np.float32)
    ids = table.column("id").to_pylist()
    emb = table.column("embedding").combine_chunks()
    lengths = pc.fill_null(pc.list_value_length(emb), 0).to_numpy(zero_copy_only=False)
    ok_len = lengths == dim
    vectors = np.zeros((len(ids), dim), np.float32)
    if ok_len.any():
        kept = pc.filter(emb, pa.array(ok_len))
        vectors[ok_len] = pc.list_flatten(kept).to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim)
    norms = np.linalg.norm(vectors, axis=1) if len(ids) else np.zeros(0)
    finite = np.isfinite(vectors).all(axis=1) & np.isfinite(norms) & (norms > 0)
    good_id = np.array([isinstance(i, str) and UUID_RE.match(i) is not None for i in ids], dtype=bool)
    keep = ok_len & finite & good_id
    for what, bad in (("ids that are not canonical UUIDs", ~good_id),
                      (f"vectors that are not {dim}-d", ~ok_len),
                      ("vectors with non-finite or zero values", ok_len & ~finite)):
        if bad.any():
            problems.append(f"{name}: {int(bad.sum())} row(s) with {what}; left out")
    vectors = vectors[keep] / norms[keep, None]
    return [i for i, k in zip(ids, keep, strict=True) if k], vectors.astype(np.float32, copy=False)


def _read_files(files: list[ParquetFile], ahead: int = 16) -> Iterator[tuple[ParquetFile, bytes | Exception]]:
    """The files' bytes in order, read by 8 threads at most ``ahead`` files in advance (an object
    store's latency hidden, the memory bounded)."""
    from collections import deque
    from concurrent.futures import Future, ThreadPoolExecutor

    def read(f: ParquetFile) -> bytes | Exception:
        try:
            return storage.read_bytes(f.url)
        except (OSError, storage.StorageError) as exc:
            return exc

    with ThreadPoolExecutor(max_workers=8) as pool:
        pending: deque[tuple[ParquetFile, Future[bytes | Exception]]] = deque()
        for f in files:
            pending.append((f, pool.submit(read, f)))
            if len(pending) >= ahead:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()


def _build(files: list[ParquetFile], folder: Path, fp: str, dim: int) -> list[str]:
    """Write one generation (``vectors-<fp>.f32``, ``ids-<fp>.bin``) file by file (memory bounded
    by one parquet file) under temporary names, then rename them; returns the problems."""
    problems: list[str] = []
    folder.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    duplicates = 0
    rows = 0
    vec_tmp = tempfile.NamedTemporaryFile(dir=folder, prefix=".tmp-vectors-", delete=False)  # noqa: SIM115
    half_tmp = tempfile.NamedTemporaryFile(dir=folder, prefix=".tmp-half-", delete=False)  # noqa: SIM115
    ids_tmp = tempfile.NamedTemporaryFile(dir=folder, prefix=".tmp-ids-", delete=False)  # noqa: SIM115
    try:
        with vec_tmp, half_tmp, ids_tmp:
            for f, data in _read_files(files):
                if isinstance(data, Exception):
                    problems.append(f"{f.name}: could not be read ({storage.redact(data)}); skipped")
                    continue
                got = _rows(data, f.name, dim, problems)
                if got is None:
                    continue
                ids, vectors = got
                fresh = np.array([i not in seen for i in ids], dtype=bool)
                duplicates += int((~fresh).sum())
                seen.update(ids)
                vectors = vectors[fresh]
                vec_tmp.write(np.ascontiguousarray(vectors, dtype="<f4").tobytes())
                half_tmp.write(np.ascontiguousarray(vectors, dtype="<f2").tobytes())
                ids_tmp.write(b"".join(i.encode("ascii") for i, k in zip(ids, fresh, strict=True) if k))
                rows += int(fresh.sum())
            for tmp in (vec_tmp, half_tmp, ids_tmp):
                tmp.flush()
                os.fsync(tmp.fileno())
        if duplicates:
            problems.append(f"{duplicates} clip id(s) listed in more than one file; the first kept")
        os.replace(vec_tmp.name, folder / f"vectors-{fp}.f32")
        os.replace(half_tmp.name, folder / f"vectors-{fp}.f16")
        os.replace(ids_tmp.name, folder / f"ids-{fp}.bin")
    except BaseException:
        for tmp in (vec_tmp, half_tmp, ids_tmp):
            Path(tmp.name).unlink(missing_ok=True)
        raise
    pointer = {"version": CACHE_VERSION, "fingerprint": fp, "rows": rows, "dim": dim, "files": len(files),
               "problems": problems}
    storage.write_text_atomic(str(folder / CACHE_POINTER), json.dumps(pointer, indent=1) + "\n")
    for old in folder.iterdir():  # earlier generations (a reader holding one keeps its open map)
        m = _VECTORS_RE.match(old.name) or _IDS_RE.match(old.name)
        if m and m.group(1) != fp:
            old.unlink(missing_ok=True)
    return problems


def _open(folder: Path, fp: str, dim: int) -> EmbeddingMatrix | None:
    """The generation ``fp`` when ``cache.json`` names it and its files have the sizes it claims."""
    try:
        pointer = json.loads((folder / CACHE_POINTER).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(pointer, dict) or pointer.get("version") != CACHE_VERSION or pointer.get("fingerprint") != fp:
        return None
    rows, problems = pointer.get("rows"), pointer.get("problems")
    if not isinstance(rows, int) or rows < 0 or pointer.get("dim") != dim or not isinstance(problems, list):
        return None
    vec_path, half_path, ids_path = folder / f"vectors-{fp}.f32", folder / f"vectors-{fp}.f16", folder / f"ids-{fp}.bin"
    try:
        if (vec_path.stat().st_size != rows * dim * 4 or half_path.stat().st_size != rows * dim * 2
                or ids_path.stat().st_size != rows * ID_BYTES):
            return None
    except OSError:
        return None
    if rows == 0:
        return EmbeddingMatrix(np.zeros((0, dim), np.float32), np.zeros(0, f"S{ID_BYTES}"), None, folder, fp,
                               [str(p) for p in problems])
    vectors = np.memmap(vec_path, dtype="<f4", mode="r", shape=(rows, dim))
    half = np.memmap(half_path, dtype="<f2", mode="r", shape=(rows, dim))
    ids = np.memmap(ids_path, dtype=f"S{ID_BYTES}", mode="r", shape=(rows,))
    return EmbeddingMatrix(vectors, ids, half, folder, fp, [str(p) for p in problems])


def load_embeddings(output_path: str, dim: int) -> EmbeddingMatrix:
    """The output's embeddings of dimension ``dim`` from the cache, rebuilt first when the parquet
    set changed. Raises :class:`NoEmbeddingsError` when there is no usable one."""
    files, others = list_parquet(output_path)
    if not files:
        raise NoEmbeddingsError(missing_embeddings_message(
            output_path, f"{embeddings_folder(output_path)}/ has no embedding files"))
    folder = cache_folder(output_path)
    fp = fingerprint(files, dim)
    matrix = _open(folder, fp, dim)
    if matrix is None:
        _build(files, folder, fp, dim)
        matrix = _open(folder, fp, dim)
        if matrix is None:
            raise RuntimeError(f"the search cache in {folder} could not be read back after it was written")
        matrix.rebuilt = True
    matrix.problems = [f"{name}: not a chunk embeddings file name; skipped" for name in others] + matrix.problems
    if len(matrix) == 0:
        raise NoEmbeddingsError(missing_embeddings_message(
            output_path, f"none of the {len(files)} file(s) in {embeddings_folder(output_path)}/ holds a usable "
                         f"{dim}-d embedding" + (f" ({matrix.problems[0]})" if matrix.problems else "")))
    return matrix


__all__ = [
    "CACHE_POINTER",
    "EmbeddingMatrix",
    "NoEmbeddingsError",
    "SEARCH_DIR",
    "cache_folder",
    "embeddings_folder",
    "list_parquet",
    "load_embeddings",
    "missing_embeddings_message",
]
