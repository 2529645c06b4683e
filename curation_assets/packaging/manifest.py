"""The clip manifest: one Parquet row per clip, one fragment file per video.

``<output>/manifest/<fragment>.parquet`` holds one video's clips; the fragment name is a hash of
the video's relative path (the key its ``processed_videos`` document is stored under), so odd or
long names never matter and re-materialising one video rewrites exactly one file. The dataset is
read with one ``pyarrow.dataset`` scan (:func:`read_manifest`); pandas and DuckDB read the folder
as well.

The manifest is for reading elsewhere, so two things differ from ``metas/v0`` on purpose: a score
that was not computed is null, never the reference's sentinel (a clip whose motion could not be
scored carries ``-1.0`` in its meta, which an average would silently mix in), and every location
is absolute (a local output given as a relative path) or the object-store URL, so a loader run
from any folder finds the files.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..core import layout, storage
from ..core.documents import chunk_clip_ids
from ..core.layout_read import ClipLayout, VideoLayout, load_embeddings
from ..core.pipeline import MOTION_DECODE_FAILED

if TYPE_CHECKING:
    import pyarrow.dataset as ds


def __getattr__(name: str) -> Any:
    """``manifest.ds`` (``pyarrow.dataset``, for filters) imported on first use: it pulls in pandas
    (0.24 CPU s), which a curation run that never reads the manifest would pay at start-up
    (docs/performance.md)."""
    if name == "ds":
        import pyarrow.dataset

        return pyarrow.dataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

MANIFEST_DIR = "manifest"
#: Key of the fragment's Parquet footer metadata holding :func:`row_digest` of its rows, so a
#: plan over 100k videos reads footers, not rows.
DIGEST_KEY = b"curation_assets.row_digest"

_TEXT = pa.struct([("model", pa.string()), ("text", pa.string())])
_ERROR = pa.struct([("key", pa.string()), ("message", pa.string())])
WINDOW_TYPE = pa.struct([
    ("start_frame", pa.int64()),
    ("end_frame", pa.int64()),
    ("captions", pa.list_(_TEXT)),
    ("enhanced_captions", pa.list_(_TEXT)),
    ("preview_url", pa.string()),
])

#: Column -> (type, description). The README's schema table is made from this.
COLUMNS: dict[str, tuple[pa.DataType, str]] = {
    "clip_uuid": (pa.string(), "the clip's id (`span_uuid`)"),
    "source_video": (pa.string(), "the source video as read (path or URL)"),
    "rel_path": (pa.string(), "the video's path relative to the input (its `processed_videos` key)"),
    "chunk_index": (pa.int32(), "the clip chunk that lists the clip"),
    "span_start_s": (pa.float64(), "start of the clip in the source, seconds"),
    "span_end_s": (pa.float64(), "end of the clip in the source, seconds"),
    "duration_s": (pa.float64(), "`span_end_s - span_start_s`"),
    "snapped": (pa.bool_(), "span moved onto source keyframes (stream copy)"),
    "source_width": (pa.int32(), "source video width"),
    "source_height": (pa.int32(), "source video height"),
    "source_framerate": (pa.float64(), "source video frame rate"),
    "width": (pa.int32(), "clip width (null: no clip bytes)"),
    "height": (pa.int32(), "clip height"),
    "framerate": (pa.float64(), "clip frame rate"),
    "num_frames": (pa.int64(), "clip frames (probe: `int(duration * framerate)`)"),
    "video_codec": (pa.string(), "clip codec"),
    "num_bytes": (pa.int64(), "clip mp4 size"),
    "motion_global_mean": (pa.float64(), "motion score `global_mean` (null: not scored, where `metas/v0` has "
                                         "the reference's -1.0 and a `motion_decode` error)"),
    "motion_per_patch_min_256": (pa.float64(), "motion score `per_patch_min_256` (null: not scored)"),
    "aesthetic_score": (pa.float64(), "aesthetic score (null: not scored)"),
    "valid": (pa.bool_(), "the meta's `valid`: clip bytes and at least one window"),
    "passed": (pa.bool_(), "listed in the chunk's `clips` (else `filtered_clips`)"),
    "filtered_by": (pa.string(), "`motion`, `aesthetic` or `unknown` for filtered clips, null for passed"),
    "errors": (pa.list_(_ERROR), "the clip's error keys with their messages"),
    "windows": (pa.list_(WINDOW_TYPE),
                "per window: frames (inclusive), captions and enhanced captions by model, preview URL"),
    "caption": (pa.string(), "the first caption of the first window that has one"),
    "clip_url": (pa.string(), "the clip mp4, an absolute path or the object-store URL (null when none was "
                              "written)"),
    "meta_url": (pa.string(), "its `metas/v0` document (absolute, as every location here)"),
    "embedding_url": (pa.string(), "its `ce1_embd` pickle (null: no embedding)"),
    "embedding": (pa.list_(pa.float32()), "the Cosmos-Embed1 embedding (null: none)"),
    "settings_hash": (pa.string(), "the pipeline record's settings hash"),
}
SCHEMA = pa.schema([(name, t) for name, (t, _) in COLUMNS.items()])


def how_to_write(output_path: str) -> str:
    """What a command that needs the manifest tells a user who has none."""
    return (f"write it with `curation-assets package manifest --output-path {storage.redact(output_path)}` "
            "(or materialise the clip_manifest asset of the training_packages group)")


def fragment_name(rel_path: str) -> str:
    """The fragment of one video: a hash of its relative path (stable, short, any name)."""
    return hashlib.sha256(rel_path.encode("utf-8")).hexdigest()[:32]


def fragment_url(output_path: str, rel_path: str) -> str:
    return storage.join(output_path, MANIFEST_DIR, f"{fragment_name(rel_path)}.parquet")


def first_caption(clip: ClipLayout) -> str | None:
    """The clip's first caption: the first window's first model's text (the shard's ``.txt``)."""
    for window in clip.windows:
        for _model, text in window.captions:
            if text:
                return text
    return None


def _num(value: Any) -> Any:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


#: The ``errors`` key the reference records when it gave a clip the sentinel motion scores.
MOTION_NOT_SCORED_ERROR = "motion_decode"


def motion_scores(meta: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """``(global_mean, per_patch_min_256)`` of a meta, None where motion was not scored: no score,
    or the reference's sentinel (:data:`core.pipeline.MOTION_DECODE_FAILED`, written with a
    ``motion_decode`` error for a clip too small or undecodable). Real scores are never negative."""
    motion = meta.get("motion_score")
    if not isinstance(motion, Mapping) or MOTION_NOT_SCORED_ERROR in (meta.get("errors") or []):
        return None, None
    sentinel = (MOTION_DECODE_FAILED.global_mean, MOTION_DECODE_FAILED.per_patch_min_256)
    values = (_num(motion.get("global_mean")), _num(motion.get("per_patch_min_256")))
    if values == sentinel:
        return None, None
    return values


def location(url: str | None) -> str | None:
    """Where a file is, from any working folder: a local path made absolute, a URL as it is."""
    return None if url is None else storage.normalize_url(url)


def clip_row(video: VideoLayout, clip: ClipLayout, embedding: np.ndarray | None,
             locate: Callable[[str | None], str | None] = location) -> dict[str, Any]:
    """One manifest row, straight from the clip's validated documents; ``locate`` spells each
    location (the manifest's: absolute; a shard sample's: relative to the output)."""
    meta: Mapping[str, Any] = clip.meta
    motion_mean, motion_patch = motion_scores(meta)
    details = meta.get("error_details") or {}
    span = meta["duration_span"]
    pipeline = video.video.get("pipeline") if video.video else None
    return {
        "clip_uuid": clip.uuid,
        "source_video": meta["source_video"],
        "rel_path": video.rel_path,
        "chunk_index": clip.chunk_index,
        "span_start_s": float(span[0]),
        "span_end_s": float(span[1]),
        "duration_s": float(span[1]) - float(span[0]),
        "snapped": bool(meta.get("snapped", False)),
        "source_width": _num(meta.get("width_source")),
        "source_height": _num(meta.get("height_source")),
        "source_framerate": _num(meta.get("framerate_source")),
        "width": _num(meta.get("width")),
        "height": _num(meta.get("height")),
        "framerate": _num(meta.get("framerate")),
        "num_frames": _num(meta.get("num_frames")),
        "video_codec": meta.get("video_codec") if isinstance(meta.get("video_codec"), str) else None,
        "num_bytes": _num(meta.get("num_bytes")),
        "motion_global_mean": motion_mean,
        "motion_per_patch_min_256": motion_patch,
        "aesthetic_score": _num(meta.get("aesthetic_score")),
        "valid": meta.get("valid") is True,
        "passed": clip.passed,
        "filtered_by": clip.filtered_by,
        "errors": [{"key": k, "message": str(details.get(k, ""))} for k in meta.get("errors", [])],
        "windows": [
            {"start_frame": w.start_frame, "end_frame": w.end_frame,
             "captions": [{"model": m, "text": t} for m, t in w.captions],
             "enhanced_captions": [{"model": m, "text": t} for m, t in w.enhanced_captions],
             "preview_url": locate(w.preview_url)}
            for w in clip.windows
        ],
        "caption": first_caption(clip),
        "clip_url": locate(clip.clip_url),
        "meta_url": locate(clip.meta_url),
        "embedding_url": locate(clip.embedding_url),
        "embedding": embedding,
        "settings_hash": pipeline.get("settings_hash") if isinstance(pipeline, Mapping) else None,
    }


def manifest_table(video: VideoLayout, embeddings: Mapping[str, np.ndarray] | None = None) -> pa.Table:
    """The fragment of one video: a row per clip with a valid meta, in chunk order.

    ``embeddings`` (clip uuid -> vector) defaults to :func:`layout_read.load_embeddings`.
    """
    if embeddings is None:
        embeddings = load_embeddings(video) if video.parquet_urls else {}
    rows = [clip_row(video, c, embeddings.get(c.uuid) if c.passed else None) for c in video.clips]
    columns = {name: [r[name] for r in rows] for name in SCHEMA.names}
    columns["embedding"] = [None if v is None else np.asarray(v, np.float32).reshape(-1) for v in columns["embedding"]]
    arrays = [pa.array(columns[f.name], f.type) for f in SCHEMA]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def write_fragment(output_path: str, video: VideoLayout, table: pa.Table | None = None) -> str | None:
    """Write (or remove, when the video has no clips or no document) the video's fragment, whole.

    Returns the fragment URL written, None when removed.
    """
    url = fragment_url(output_path, video.rel_path)
    if table is None:
        table = manifest_table(video) if video.exists else SCHEMA.empty_table()
    if table.num_rows == 0:
        storage.remove_files([url])
        return None
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), DIGEST_KEY: row_digest(table).encode()})
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    storage.write_bytes_atomic(url, buf.getvalue())
    return url


def remove_fragments(output_path: str, keep_rel_paths: set[str]) -> list[str]:
    """Remove the fragments of videos not in ``keep_rel_paths`` (deleted partitions). Only names
    this module writes (a 32-hex name + ``.parquet``) directly in ``manifest/`` are touched."""
    keep = {f"{fragment_name(r)}.parquet" for r in keep_rel_paths}
    stale = [url for url in fragment_urls(output_path) if url.rsplit("/", 1)[-1] not in keep]
    storage.remove_files(stale)
    return stale


def is_fragment_name(name: str) -> bool:
    """A name this module writes: :func:`fragment_name` + ``.parquet`` (anything else in the
    folder is not the manifest's and is never read or removed)."""
    stem, _dot, ext = name.partition(".")
    return ext == "parquet" and len(stem) == 32 and all(c in "0123456789abcdef" for c in stem)


def fragment_urls(output_path: str) -> list[str]:
    """The manifest's fragment files, sorted: the names :func:`is_fragment_name` accepts, directly
    in ``manifest/`` ([] when there is none)."""
    folder = storage.join(output_path, MANIFEST_DIR)
    return [storage.join(folder, name) for name in storage.file_names(folder) if is_fragment_name(name)]


def manifest_dataset(output_path: str) -> ds.Dataset:
    """The manifest folder as a ``pyarrow.dataset`` (temporary ``.tmp-*`` files are ignored, as
    pyarrow skips names starting with ``.``)."""
    import pyarrow.dataset as ds

    fs, path = _arrow_fs(storage.join(output_path, MANIFEST_DIR))
    if not storage.exists(storage.join(output_path, MANIFEST_DIR)):
        return ds.dataset(SCHEMA.empty_table())
    return ds.dataset(path, format="parquet", schema=SCHEMA, filesystem=fs)


def read_manifest(output_path: str, columns: list[str] | None = None, filter: Any = None) -> pa.Table:
    """Every clip of every video: one dataset scan of ``<output>/manifest/``."""
    return manifest_dataset(output_path).to_table(columns=columns, filter=filter)


@dataclass(frozen=True)
class ManifestRead:
    """The manifest of a set of videos: their rows, and the videos that have no fragment."""

    table: pa.Table
    missing: tuple[str, ...]  # rel paths without a fragment (never written, failed, or no clips)
    other_fragments: int  # fragments in the folder of videos outside the set (e.g. removed partitions)


def _present(output_path: str, rel_paths: Iterable[str]) -> tuple[dict[str, str], dict[str, str], tuple[str, ...], int]:
    """One listing of ``manifest/``: (fragment name -> URL of the wanted ones present, name -> rel
    path wanted, rel paths without a fragment, count of other videos' fragments)."""
    wanted = {f"{fragment_name(r)}.parquet": r for r in rel_paths}
    present: dict[str, str] = {}
    others = 0
    for url in fragment_urls(output_path):
        name = url.rsplit("/", 1)[-1]
        if name in wanted:
            present[name] = url
        else:
            others += 1
    missing = tuple(sorted(r for name, r in wanted.items() if name not in present))
    return present, wanted, missing, others


def read_fragments(output_path: str, rel_paths: Iterable[str], columns: list[str] | None = None,
                   filter: Any = None) -> ManifestRead:
    """The rows of exactly these videos: one listing of ``manifest/`` (its fragment names are known
    from the rel paths), then one dataset scan of the fragments that exist. No video document is
    read, which is what makes dataset-level packaging cheap at 100k videos."""
    present, _, missing, others = _present(output_path, rel_paths)
    if not present:
        empty = SCHEMA.empty_table()
        return ManifestRead(empty.select(columns) if columns else empty, missing, others)
    import pyarrow.dataset as ds

    fs, _ = _arrow_fs(storage.join(output_path, MANIFEST_DIR))
    paths = [storage.get_fs(present[name])[1] for name in sorted(present)]
    table = ds.dataset(paths, format="parquet", schema=SCHEMA, filesystem=fs).to_table(columns=columns, filter=filter)
    return ManifestRead(table, missing, others)


@dataclass(frozen=True)
class FragmentDigests:
    """The :func:`row_digest` of each video's fragment, and the videos that have none."""

    digests: dict[str, str]  # rel path -> digest
    missing: tuple[str, ...]
    other_fragments: int


def fragment_digests(output_path: str, rel_paths: Iterable[str], max_workers: int = 8) -> FragmentDigests:
    """Each fragment's digest from its footer (a fragment without one is read and digested):
    what the shard plan needs, at a fraction of the cost of reading the rows."""
    from concurrent.futures import ThreadPoolExecutor

    present, wanted, missing, others = _present(output_path, rel_paths)
    fs, _ = _arrow_fs(storage.join(output_path, MANIFEST_DIR))

    def digest(name: str) -> str:
        path = storage.get_fs(present[name])[1]
        with fs.open_input_file(path) if hasattr(fs, "open_input_file") else fs.open(path, "rb") as f:
            parquet = pq.ParquetFile(f)
            stored = (parquet.schema_arrow.metadata or {}).get(DIGEST_KEY)
            return stored.decode() if stored else row_digest(parquet.read())

    names = sorted(present)
    with ThreadPoolExecutor(max_workers=max(1, max_workers)) as pool:
        values = list(pool.map(digest, names))
    return FragmentDigests({wanted[n]: v for n, v in zip(names, values, strict=True)}, missing, others)


def _arrow_fs(url: str):
    """The filesystem pyarrow scans ``url`` with: its own for local folders (through fsspec each
    small fragment costs milliseconds of Python), fsspec's for object stores."""
    fs, path = storage.get_fs(url)
    if storage.is_local(url):
        import pyarrow.fs as pafs

        return pafs.LocalFileSystem(), path
    return fs, path


def read_fragment(output_path: str, rel_path: str) -> pa.Table | None:
    """One video's fragment as written, or None when it has none."""
    try:
        data = storage.read_bytes(fragment_url(output_path, rel_path))
    except storage.StorageNotFoundError:
        return None
    return pq.read_table(io.BytesIO(data), schema=SCHEMA)


def fragment_problems(output_path: str, video: VideoLayout) -> list[str]:
    """Why the video's fragment (read back) does not hold one row per clip of the video, naming the
    file and the reason; [] when it does. The clips of the video are those its chunk documents
    list (passed and filtered), counted against the video document's ``num_total_clips``."""
    fragment = fragment_url(output_path, video.rel_path)
    if not video.exists:
        return [f"{video.video_url}: missing (the video has no layout to compare with)"]
    problems: list[str] = []
    doc = video.video or {}
    chunk_count = doc.get("num_clip_chunks")
    if isinstance(chunk_count, int) and len(video.chunks) != chunk_count:
        problems.append(f"{video.rel_path}: {chunk_count - len(video.chunks)} of {chunk_count} chunk document(s) "
                        "could not be read, so their clips cannot be counted: "
                        + "; ".join(p for p in video.problems if layout.PROCESSED_CLIP_CHUNKS in p)[:500])
    expected: dict[str, tuple[int, bool]] = {}
    for chunk in video.chunks:
        for uid, passed in chunk_clip_ids(chunk):
            expected.setdefault(uid, (chunk["clip_chunk_index"], passed))
    total = doc.get("num_total_clips")
    if isinstance(total, int) and len(video.chunks) == chunk_count and total != len(expected):
        problems.append(f"{video.rel_path}: num_total_clips is {total}, its chunk documents list {len(expected)} clips")
    try:
        table = read_fragment(output_path, video.rel_path)
    except Exception as exc:  # noqa: BLE001 - an unreadable fragment is this check's finding
        return problems + [f"{fragment}: unreadable ({storage.redact(f'{type(exc).__name__}: {exc}')})"]
    rows = [] if table is None else table.select(["clip_uuid", "passed"]).to_pylist()
    if table is None and expected:
        return problems + [f"{fragment}: missing, the video has {len(expected)} clip(s)"]
    seen: dict[str, bool] = {}
    for row in rows:
        uid = row["clip_uuid"]
        if uid in seen:
            problems.append(f"{fragment}: clip {uid} has more than one row")
        seen[uid] = row["passed"]
    for uid, (index, passed) in expected.items():
        if uid not in seen:
            why = next((p for p in video.problems if uid in p), "")
            problems.append(f"{fragment}: no row for clip {uid} of chunk {index}"
                            + (f" ({why})" if why else " (its metas/v0 document was not read)"))
        elif seen[uid] != passed:
            problems.append(f"{fragment}: clip {uid} is {'passed' if seen[uid] else 'filtered'} in the manifest, "
                            f"{'passed' if passed else 'filtered'} in chunk {index}")
    for uid in seen.keys() - expected.keys():
        problems.append(f"{fragment}: row for clip {uid}, which no chunk document of the video lists")
    return problems


def row_digest(table: pa.Table) -> str:
    """A digest of a video's rows (the embedding aside: ``embedding_url`` and ``settings_hash``
    stand for it), equal whether the rows come from the layout or from the written fragment."""
    rows = table.drop_columns(["embedding"]).to_pylist() if "embedding" in table.column_names else table.to_pylist()
    return hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()


def schema_markdown() -> str:
    """The schema as a Markdown table (for the README)."""
    lines = ["| column | type | meaning |", "|---|---|---|"]
    for name, (t, text) in COLUMNS.items():
        lines.append(f"| `{name}` | `{t}` | {text} |")
    return "\n".join(lines)


__all__ = [
    "COLUMNS",
    "DIGEST_KEY",
    "FragmentDigests",
    "MANIFEST_DIR",
    "ManifestRead",
    "SCHEMA",
    "clip_row",
    "first_caption",
    "fragment_name",
    "fragment_digests",
    "fragment_problems",
    "fragment_url",
    "fragment_urls",
    "how_to_write",
    "is_fragment_name",
    "location",
    "manifest_dataset",
    "manifest_table",
    "motion_scores",
    "read_fragment",
    "read_fragments",
    "read_manifest",
    "remove_fragments",
    "row_digest",
    "schema_markdown",
    "write_fragment",
]
