"""A compact snapshot of a written dataset, so two runs (or two materialisations of one) can be
compared after the output has changed.

A snapshot is built from the clip manifest (``packaging.manifest``: its columns, never re-spelled)
and keeps what a diff needs per clip: id, video, span, pass state and why, scores, resolution,
which caption models wrote a caption, and the settings hash. The settings themselves (one record
per settings hash, read from a ``processed_videos`` document and checked against its hash) go in
the Parquet file's key-value metadata. ``<output>/snapshots/<UTC time>-<digest>.parquet`` is
written atomically; names sort in time order.

Everything read back (a snapshot file, the manifest, a video document) is checked before use: a
snapshot whose schema or metadata is not this module's is refused, and a settings record whose
hash does not match is dropped with a problem, never shown as the run's settings.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..core import layout, storage
from ..core.documents import video_unusable
from ..core.layout_read import read_json
from ..core.options import settings_digest
from ..packaging import manifest

SNAPSHOT_DIR = "snapshots"
#: Key of the Parquet footer metadata holding the snapshot's JSON header (settings, origin).
METADATA_KEY = b"curation_assets.snapshot"
FORMAT = 1

#: The manifest columns a snapshot keeps (types and meanings are the manifest's).
MANIFEST_COLUMNS = ("clip_uuid", "rel_path", "span_start_s", "span_end_s", "passed", "filtered_by",
                    "motion_global_mean", "motion_per_patch_min_256", "aesthetic_score", "width", "height",
                    "settings_hash")
#: Columns derived from the manifest's ``windows``: the models with a non-empty caption in any window.
CAPTION_COLUMNS = {"caption_models": "captions", "enhanced_caption_models": "enhanced_captions"}
SCHEMA = pa.schema([(name, manifest.COLUMNS[name][0]) for name in MANIFEST_COLUMNS]
                   + [(name, pa.list_(pa.string())) for name in CAPTION_COLUMNS])
#: Fragments turned into snapshot rows before they are joined into one table.
COMBINE_EVERY = 256
#: How many videos are tried per settings hash before its record is reported unreadable.
RECORD_TRIES = 3

_ORDER = [("rel_path", "ascending"), ("span_start_s", "ascending"), ("span_end_s", "ascending"),
          ("clip_uuid", "ascending")]
#: Columns every row must have (a clip is matched by them).
_REQUIRED = ("clip_uuid", "rel_path", "span_start_s", "span_end_s")
_NAME = re.compile(r"^\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{12}\.parquet$")


class NoManifestError(ValueError):
    """The output has no clip manifest to read."""


@dataclass(frozen=True)
class Snapshot:
    """One side of a diff: a row per clip (:data:`SCHEMA`) and the settings records in use."""

    table: pa.Table
    settings: Mapping[str, Mapping[str, Any]]  # settings hash -> {"version": str | None, "settings": {...}}
    source: str  # what it was read from: an output path (live) or a snapshot file
    output_path: str
    created: str | None = None  # UTC ISO time of a written snapshot; None when read live
    problems: tuple[str, ...] = ()


def _caption_models(windows: Any, field: str) -> list[str]:
    models: set[str] = set()
    for window in windows or ():
        for item in window.get(field) or ():
            if item.get("text") and isinstance(item.get("model"), str):
                models.add(item["model"])
    return sorted(models)


def _snapshot_rows(rows: pa.Table | pa.RecordBatch) -> pa.Table:
    windows = rows.column("windows").to_pylist()
    arrays = [rows.column(name) for name in MANIFEST_COLUMNS]
    arrays += [pa.array([_caption_models(w, field) for w in windows], pa.list_(pa.string()))
               for field in CAPTION_COLUMNS.values()]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def snapshot_table(rows: pa.Table) -> pa.Table:
    """The snapshot rows of manifest rows (which must hold :data:`MANIFEST_COLUMNS` and
    ``windows``), sorted by video, span and id so equal datasets give equal tables."""
    return _snapshot_rows(rows).sort_by(_ORDER)


_READ_SCHEMA = pa.schema([(name, manifest.COLUMNS[name][0]) for name in (*MANIFEST_COLUMNS, "windows")])


def _fragment_rows(url: str) -> pa.Table | str:
    """One fragment's snapshot rows, or why it could not be read (it is then left out)."""
    try:
        table = pq.ParquetFile(io.BytesIO(storage.read_bytes(url))).read(columns=_READ_SCHEMA.names,
                                                                          use_threads=False)
        return _snapshot_rows(table.select(_READ_SCHEMA.names).cast(_READ_SCHEMA))
    except (pa.ArrowException, ValueError, OSError, KeyError) as exc:
        return f"{storage.redact(url)}: manifest fragment not read ({storage.redact(f'{type(exc).__name__}: {exc}')})"


def _scan(output_path: str, max_workers: int = 8) -> tuple[pa.Table, list[str]]:
    """The snapshot rows of every fragment, and the fragments that could not be read. Each file is
    read on its own and reduced to snapshot rows at once (a ``pyarrow.dataset`` scan of 10k small
    fragments holds far more memory than the rows: docs/diff.md); the pieces are joined every
    :data:`COMBINE_EVERY` fragments."""
    from concurrent.futures import ThreadPoolExecutor

    parts: list[pa.Table] = []
    pending: list[pa.Table] = []
    problems: list[str] = []
    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        for rows in pool.map(_fragment_rows, manifest.fragment_urls(output_path)):
            if isinstance(rows, str):
                problems.append(rows)
                continue
            pending.append(rows)
            if len(pending) >= COMBINE_EVERY:
                parts.append(pa.concat_tables(pending).combine_chunks())
                pending = []
    pieces = parts + ([pa.concat_tables(pending).combine_chunks()] if pending else [])
    table = pa.concat_tables(pieces).combine_chunks() if pieces else SCHEMA.empty_table()
    return table.sort_by(_ORDER), problems


def has_manifest(output_path: str) -> bool:
    return storage.exists(storage.join(output_path, manifest.MANIFEST_DIR))


def _record_of(output_path: str, rel_path: str, wanted: str) -> tuple[dict[str, Any] | None, str | None]:
    """The pipeline record of one video's document when its hash is ``wanted``: (record, problem)."""
    try:
        url = storage.resolve_under(output_path, layout.video_file(rel_path))
    except ValueError as exc:
        return None, f"{rel_path!r}: not a video key ({exc})"
    doc = read_json(url)
    if doc is None:
        return None, f"{url}: missing"
    if not isinstance(doc, dict):
        return None, f"{url}: not a JSON object"
    bad = video_unusable(doc)
    pipeline = doc.get("pipeline")
    settings = pipeline.get("settings") if isinstance(pipeline, dict) else None
    if bad or not isinstance(pipeline, dict) or not isinstance(settings, dict):
        return None, f"{url}: {bad or 'no pipeline settings record'}"
    digest = settings_digest(settings)
    if pipeline.get("settings_hash") != digest:
        return None, f"{url}: its settings_hash is not the hash of its settings"
    if digest != wanted:
        return None, f"{url}: written again with other settings ({digest}) after its manifest ({wanted})"
    version = pipeline.get("version")
    return {"version": version if isinstance(version, str) else None, "settings": settings}, None


def settings_records(output_path: str, table: pa.Table) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """One settings record per settings hash of ``table`` (rows with ``rel_path`` and
    ``settings_hash``), read from a video document of that hash: (records, problems)."""
    videos: dict[str, list[str]] = {}
    for rel, digest in zip(table.column("rel_path").to_pylist(), table.column("settings_hash").to_pylist(),
                           strict=True):
        if digest and rel not in videos.setdefault(digest, []):
            videos[digest].append(rel)
    records: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for digest, rels in sorted(videos.items()):
        found: list[str] = []
        for rel in rels[:RECORD_TRIES]:
            record, problem = _record_of(output_path, rel, digest)
            if record is not None:
                records[digest] = record
                break
            found.append(problem or "")
        else:
            problems.append(f"settings {digest}: no video document gives them ({'; '.join(found)})")
    return records, problems


def snapshot_of(output_path: str) -> Snapshot:
    """The snapshot of an output as it is now, read from its manifest (``NoManifestError`` when
    it has none)."""
    output_path = storage.normalize_url(output_path)
    if not has_manifest(output_path):
        raise NoManifestError(f"{storage.redact(output_path)} has no clip manifest "
                              f"({manifest.MANIFEST_DIR}/): {manifest.how_to_write(output_path)}")
    table, unread = _scan(output_path)
    records, problems = settings_records(output_path, table)
    return Snapshot(table, records, output_path, output_path, problems=tuple(unread + problems))


def _header(snap: Snapshot, created: str) -> dict[str, Any]:
    return {"format": FORMAT, "output_path": snap.output_path, "created": created,
            "settings": {k: dict(v) for k, v in snap.settings.items()}, "problems": list(snap.problems)}


def digest_of(snap: Snapshot) -> str:
    """A short digest of the snapshot's rows and settings (what the file name carries)."""
    rows = manifest.row_digest(snap.table)
    settings = json.dumps({k: dict(v) for k, v in snap.settings.items()}, sort_keys=True, default=str)
    return hashlib.sha256(f"{rows}:{settings}".encode()).hexdigest()[:12]


def write_snapshot(output_path: str, snap: Snapshot | None = None, now: _dt.datetime | None = None) -> str:
    """Write the snapshot of ``output_path`` (``snap``, default: :func:`snapshot_of` it now) to
    ``<output>/snapshots/<UTC time>-<digest>.parquet`` atomically; returns its URL."""
    output_path = storage.normalize_url(output_path)
    snap = snap or snapshot_of(output_path)
    now = (now or _dt.datetime.now(_dt.UTC)).astimezone(_dt.UTC)
    stamp = now.strftime("%Y%m%dT%H%M%S") + f".{now.microsecond // 1000:03d}Z"
    header = _header(snap, now.isoformat(timespec="milliseconds"))
    table = snap.table.replace_schema_metadata({METADATA_KEY: json.dumps(header, sort_keys=True).encode()})
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    url = storage.join(output_path, SNAPSHOT_DIR, f"{stamp}-{digest_of(snap)}.parquet")
    storage.write_bytes_atomic(url, buf.getvalue())
    return url


def list_snapshots(output_path: str) -> list[str]:
    """The snapshot files of an output, oldest first (only names this module writes)."""
    folder = storage.join(storage.normalize_url(output_path), SNAPSHOT_DIR)
    out = []
    for url in storage.list_files(folder):
        name = url.rsplit("/", 1)[-1]
        if url[len(folder):].strip("/") == name and _NAME.match(name):
            out.append(url)
    return sorted(out, key=lambda u: u.rsplit("/", 1)[-1])


def _checked_settings(raw: Any, problems: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if not isinstance(raw, dict):
        problems.append("settings: not an object")
        return out
    for digest, record in raw.items():
        settings = record.get("settings") if isinstance(record, dict) else None
        version = record.get("version") if isinstance(record, dict) else None
        if not isinstance(settings, dict) or settings_digest(settings) != digest:
            problems.append(f"settings {str(digest)[:40]!r}: not a settings record of that hash (left out)")
            continue
        out[digest] = {"version": version if isinstance(version, str) else None, "settings": settings}
    return out


def read_snapshot(url: str) -> Snapshot:
    """A snapshot file written by :func:`write_snapshot` (``ValueError`` naming the file when it
    is not one)."""
    url = storage.normalize_url(url)
    data = storage.read_bytes(url)
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(f"{storage.redact(url)}: not a Parquet file ({exc})") from None
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    try:
        header = json.loads(raw) if raw is not None else None
    except (ValueError, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(f"{storage.redact(url)}: not a snapshot of format {FORMAT} (write one with "
                         "`curation-assets snapshot --output-path OUTPUT`)")
    missing = [f"{f.name} ({f.type})" for f in SCHEMA if table.schema.field(f.name).type != f.type] \
        if set(SCHEMA.names) <= set(table.column_names) else sorted(set(SCHEMA.names) - set(table.column_names))
    if missing:
        raise ValueError(f"{storage.redact(url)}: snapshot columns missing or of another type: {', '.join(missing)}")
    holes = [name for name in _REQUIRED if table.column(name).null_count]
    if holes:
        raise ValueError(f"{storage.redact(url)}: snapshot rows without {', '.join(holes)}")
    problems = [str(p) for p in header.get("problems") or [] if isinstance(p, str)]
    settings = _checked_settings(header.get("settings"), problems)
    created, output = header.get("created"), header.get("output_path")
    created = created if isinstance(created, str) else None
    output = output if isinstance(output, str) else ""
    table = snapshot_table_from(table.select(SCHEMA.names))
    return Snapshot(table, settings, url, output, created, tuple(problems))


def snapshot_table_from(table: pa.Table) -> pa.Table:
    """A snapshot table read back, with the schema's own metadata dropped and rows in order."""
    table = table.replace_schema_metadata(None).cast(SCHEMA)
    return table.sort_by(_ORDER)


def load(where: str) -> Snapshot:
    """A diff's side: a snapshot file (a ``.parquet`` name) or an output read live."""
    return read_snapshot(where) if where.rstrip("/").endswith(".parquet") else snapshot_of(where)


__all__ = ["CAPTION_COLUMNS", "MANIFEST_COLUMNS", "METADATA_KEY", "NoManifestError", "SCHEMA", "SNAPSHOT_DIR",
           "Snapshot", "digest_of", "has_manifest", "list_snapshots", "load", "read_snapshot",
           "settings_records", "snapshot_of", "snapshot_table", "write_snapshot"]
