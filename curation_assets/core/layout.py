"""The clip-writer output layout: paths, ids, chunks and the JSON/pickle/parquet documents.

Everything here is the spec (`clip-writer-layout.md`) turned into functions. It decides *what*
files a video produces and their bytes; ``storage`` decides *how* they reach the filesystem.

It is the one place the layout is spelled: :data:`LAYOUT` (each asset, its directories, the steps
it is written from, its file patterns, in write order) is what the assets, IO managers, writer
groups, checks, removal and packaging derive from; the ``*_path`` functions build every file name
by id (a test finds any re-typed elsewhere); NeMo Curator's public ``get_output_path_*`` helpers
are :func:`get_output_path` of the table's directories. What a good document holds is
``core.documents``.
"""

from __future__ import annotations

import io
import json
import pickle
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .model import Clip, SpilledBytes, VideoMetadata, VideoResult, chunk_uuid
from .storage import redact  # error messages may quote a backend's text: never a credential in a file

T = TypeVar("T")

# Directory names.
CLIPS = "clips"
FILTERED_CLIPS = "filtered_clips"
PREVIEWS = "previews"
METAS_ROOT, METAS_VERSION = "metas", "v0"
METAS = f"{METAS_ROOT}/{METAS_VERSION}"
CE1_EMBD = "ce1_embd"
CE1_EMBD_PARQUET = "ce1_embd_parquet"
PROCESSED_VIDEOS = "processed_videos"
PROCESSED_CLIP_CHUNKS = "processed_clip_chunks"

# File suffixes (the ``*_path`` functions and the table's patterns below use them).
CLIP_SUFFIX, PREVIEW_SUFFIX, DOCUMENT_SUFFIX, EMBEDDING_SUFFIX, PARQUET_SUFFIX = (
    ".mp4", ".webp", ".json", ".pickle", ".parquet")

CHUNK_DURATION_BUDGET = 256  # the reference's num_clips_per_chunk (32) * 8

# The curation steps, in order: each layout asset is written from the values of some of them.
VIDEO_CLIPS, AESTHETIC_SCORES, CLIP_EMBEDDINGS, CLIP_CAPTIONS = STEPS = (
    "video_clips", "aesthetic_scores", "clip_embeddings", "clip_captions")


@dataclass(frozen=True)
class LayoutAsset:
    """One asset of the clip-writer layout: the directories it owns, the steps whose values it is
    written from, and its file names (patterns to read; the ``*_path`` functions build them)."""

    name: str  # the asset key's path joined by "/" ("metas/v0")
    directories: tuple[str, ...]
    upstream: tuple[str, ...]
    files: tuple[str, ...]
    description: str

    @property
    def key(self) -> tuple[str, ...]:
        return tuple(self.name.split("/"))


_PASSED = (VIDEO_CLIPS, AESTHETIC_SCORES)  # which clips pass decides clips/ vs filtered_clips/
#: The layout, one entry per asset, in the order the writer writes them (the documents last: a
#: ``processed_videos`` document is the mark of a finished video).
LAYOUT: tuple[LayoutAsset, ...] = (
    LayoutAsset(CLIPS, (CLIPS, FILTERED_CLIPS), _PASSED, (f"{{clip_uuid}}{CLIP_SUFFIX}",),
                "Passed clips (clips/) and filtered clips (filtered_clips/), one mp4 per clip."),
    LayoutAsset(PREVIEWS, (PREVIEWS,), _PASSED, (f"{{clip_uuid}}/{{start_frame}}_{{end_frame}}{PREVIEW_SUFFIX}",),
                "Animated WebP preview per window of each passed clip."),
    LayoutAsset(METAS, (METAS,), STEPS, (f"{{clip_uuid}}{DOCUMENT_SUFFIX}",),
                "Per-clip metadata JSON (passed and filtered clips)."),
    LayoutAsset(CE1_EMBD, (CE1_EMBD,), (CLIP_EMBEDDINGS,), (f"{{clip_uuid}}{EMBEDDING_SUFFIX}",),
                "Cosmos-Embed1 embedding per passed clip (pickle, (1, D))."),
    LayoutAsset(CE1_EMBD_PARQUET, (CE1_EMBD_PARQUET,), (CLIP_EMBEDDINGS,), (f"{{chunk_uuid}}{PARQUET_SUFFIX}",),
                "Embeddings per clip chunk (parquet: id, embedding)."),
    LayoutAsset(PROCESSED_CLIP_CHUNKS, (PROCESSED_CLIP_CHUNKS,), STEPS,
                (f"{{video_rel_path}}_{{chunk_index}}{DOCUMENT_SUFFIX}",), "Per-chunk statistics JSON."),
    LayoutAsset(PROCESSED_VIDEOS, (PROCESSED_VIDEOS,), (VIDEO_CLIPS,), (f"{{video_rel_path}}{DOCUMENT_SUFFIX}",),
                "Video-level metadata JSON (errors included)."),
)
LAYOUT_BY_NAME: dict[str, LayoutAsset] = {asset.name: asset for asset in LAYOUT}
ALL_DIRECTORIES: tuple[str, ...] = tuple(d for asset in LAYOUT for d in asset.directories)


def asset_of_directory(directory: str) -> LayoutAsset:
    """The layout asset that owns ``directory`` (``filtered_clips`` -> ``clips``)."""
    return next(asset for asset in LAYOUT if directory in asset.directories)


def _output_path(output_path: str, extra: str) -> str:
    return output_path.rstrip("/") + "/" + extra.strip("/")


# ---------------------------------------------------------------------------------------------
# NeMo Curator's public path helpers (``ClipWriterStage.get_output_path_*``, same names and
# arguments): each is ``get_output_path(output_path, <directory of the table>)``.


def get_output_path(output_path: str, directory: str) -> str:
    """``<output_path>/<directory>`` for a directory of the table (``ValueError`` for another)."""
    if directory not in ALL_DIRECTORIES and not directory.startswith(METAS_ROOT + "/"):
        raise ValueError(f"{directory!r} is not a directory of the layout ({', '.join(ALL_DIRECTORIES)})")
    return _output_path(output_path, directory)


def get_output_path_clips(output_path: str, filtered: bool = False) -> str:
    return get_output_path(output_path, FILTERED_CLIPS if filtered else CLIPS)


def get_output_path_previews(output_path: str) -> str:
    return get_output_path(output_path, PREVIEWS)


def get_output_path_metas(output_path: str, version: str = METAS_VERSION) -> str:
    """``metas/<version>``: the reference's signature; this writer writes ``v0`` only."""
    return get_output_path(output_path, f"{METAS_ROOT}/{version}")


def get_output_path_ce1_embd(output_path: str) -> str:
    return get_output_path(output_path, CE1_EMBD)


def get_output_path_ce1_embd_parquet(output_path: str) -> str:
    return get_output_path(output_path, CE1_EMBD_PARQUET)


def get_output_path_processed_videos(output_path: str) -> str:
    return get_output_path(output_path, PROCESSED_VIDEOS)


def get_output_path_processed_clip_chunks(output_path: str) -> str:
    return get_output_path(output_path, PROCESSED_CLIP_CHUNKS)


#: Each directory of the table and the public helper that gives it (a test holds them to the table).
OUTPUT_PATH_HELPERS: dict[str, Callable[[str], str]] = {
    CLIPS: get_output_path_clips,
    FILTERED_CLIPS: lambda output_path: get_output_path_clips(output_path, filtered=True),
    PREVIEWS: get_output_path_previews,
    METAS: get_output_path_metas,
    CE1_EMBD: get_output_path_ce1_embd,
    CE1_EMBD_PARQUET: get_output_path_ce1_embd_parquet,
    PROCESSED_VIDEOS: get_output_path_processed_videos,
    PROCESSED_CLIP_CHUNKS: get_output_path_processed_clip_chunks,
}


# ---------------------------------------------------------------------------------------------
# Relative file names (relative to output_path), by id: every other module calls these.
# ``*_name`` is the part under the directory (the work area keeps spilled bytes under it).

def clip_name(clip_uuid: object) -> str:
    return f"{clip_uuid}{CLIP_SUFFIX}"


def preview_name(clip_uuid: object, start_frame: int, end_frame: int) -> str:
    return f"{clip_uuid}/{start_frame}_{end_frame}{PREVIEW_SUFFIX}"


def clip_path(clip_uuid: object, filtered: bool = False) -> str:
    return f"{FILTERED_CLIPS if filtered else CLIPS}/{clip_name(clip_uuid)}"


def preview_path(clip_uuid: object, start_frame: int, end_frame: int) -> str:
    return f"{PREVIEWS}/{preview_name(clip_uuid, start_frame, end_frame)}"


def meta_path(clip_uuid: object) -> str:
    return f"{METAS}/{clip_uuid}{DOCUMENT_SUFFIX}"


def embedding_path(clip_uuid: object) -> str:
    return f"{CE1_EMBD}/{clip_uuid}{EMBEDDING_SUFFIX}"


def parquet_path(chunk_id: object) -> str:
    return f"{CE1_EMBD_PARQUET}/{chunk_id}{PARQUET_SUFFIX}"


def clip_paths(clip_uuid: object, windows: Iterable[tuple[int, int]] = ()) -> set[str]:
    """Every file of the layout a clip id may have: both clip folders, its meta, its embedding and
    a preview per window (what a write or a removal of the clip may touch)."""
    files = {clip_path(clip_uuid), clip_path(clip_uuid, filtered=True), meta_path(clip_uuid), embedding_path(clip_uuid)}
    return files | {preview_path(clip_uuid, s, e) for s, e in windows}


def clip_file(clip: Clip) -> str:
    return clip_path(clip.uuid, filtered=bool(clip.filtered_by))


def preview_file(clip: Clip, start_frame: int, end_frame: int) -> str:
    return preview_path(clip.uuid, start_frame, end_frame)


def meta_file(clip: Clip) -> str:
    return meta_path(clip.uuid)


def embedding_file(clip: Clip) -> str:
    return embedding_path(clip.uuid)


def parquet_file(source_video: str, chunk_index: int) -> str:
    return parquet_path(chunk_uuid(source_video, chunk_index))


def directory_of(rel: str) -> str:
    """The layout directory a path relative to the output belongs to (``metas/v0/x.json`` ->
    ``metas/v0``; the first component for the others)."""
    return next((d for d in ALL_DIRECTORIES if rel.startswith(d + "/")), rel.split("/", 1)[0])


# The longest file name most filesystems take (bytes of one path component).
NAME_MAX = 255


def fit_name(rel_path: str, suffix: str) -> str:
    """``rel_path + suffix`` with its last component shortened when it would exceed ``NAME_MAX``
    bytes: its first bytes, ``~`` and 16 hex digits of its hash (stable, so a reader computes the
    same name). Names that fit, which is every name the reference can write, are unchanged."""
    head, _, name = rel_path.lstrip("/").rpartition("/")
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) + len(suffix.encode()) <= NAME_MAX:
        return f"{head}/{name}{suffix}" if head else f"{name}{suffix}"
    import hashlib

    digest = hashlib.sha256(raw).hexdigest()[:16]
    keep = raw[: NAME_MAX - len(suffix.encode()) - len(digest) - 1].decode("utf-8", "ignore")
    short = f"{keep}~{digest}{suffix}"
    return f"{head}/{short}" if head else short


def video_file(rel_path: str) -> str:
    return f"{PROCESSED_VIDEOS}/{fit_name(rel_path, DOCUMENT_SUFFIX)}"


def chunk_file(rel_path: str, chunk_index: int) -> str:
    return f"{PROCESSED_CLIP_CHUNKS}/{fit_name(rel_path, f'_{chunk_index}{DOCUMENT_SUFFIX}')}"


# ---------------------------------------------------------------------------------------------
# Chunks


def split_by_chunk_size(items: Iterable[T], budget: int, size: Callable[[T], int]) -> Iterator[list[T]]:
    """Group items in order; a group closes once the summed ``size`` reaches ``budget``."""
    group: list[T] = []
    total = 0
    for item in items:
        group.append(item)
        total += size(item)
        if total >= budget:
            yield group
            group, total = [], 0
    if group:
        yield group


def chunk_clips(clips: list[Clip], budget: int = CHUNK_DURATION_BUDGET) -> list[list[Clip]]:
    """The reference chunks all clips (passed and filtered) by ``int(duration)`` before filtering."""
    return list(split_by_chunk_size(clips, budget, lambda c: int(c.span.end_s - c.span.start_s)))


# ---------------------------------------------------------------------------------------------
# Documents


def dumps(doc: Any) -> str:
    """The reference's JSON formatting."""
    return json.dumps(doc, indent=4)


@dataclass(frozen=True)
class CaptionConfig:
    caption_models: tuple[str, ...] = ()
    enhanced_caption_models: tuple[str, ...] = ()


def clip_meta_doc(clip: Clip, video: VideoMetadata, output_path: str, captions: CaptionConfig) -> dict[str, Any]:
    """``metas/v0/<uuid>.json`` with the reference's keys in the reference's order."""
    doc: dict[str, Any] = {
        "span_uuid": str(clip.uuid),
        "source_video": clip.source_video,
        "duration_span": [clip.span.start_s, clip.span.end_s],
        **({"snapped": True} if clip.span.snapped else {}),  # our addition: span moved onto keyframes (copy)
        "width_source": video.width,
        "height_source": video.height,
        "framerate_source": video.framerate,
        "clip_location": _output_path(output_path, clip_file(clip)),
    }
    if clip.encoded and clip.probe is not None:
        p = clip.probe
        doc.update(
            width=p.width,
            height=p.height,
            framerate=p.framerate,
            num_frames=p.num_frames,
            video_codec=p.video_codec,
            num_bytes=p.num_bytes,
        )
    if clip.motion is not None:
        doc["motion_score"] = {"global_mean": clip.motion.global_mean,
                               "per_patch_min_256": clip.motion.per_patch_min_256}
    if clip.aesthetic_score is not None:
        doc["aesthetic_score"] = clip.aesthetic_score
    if clip.errors:
        doc["errors"] = list(clip.errors)
        doc["error_details"] = {k: redact(v) for k, v in clip.errors.items()}
    windows = []
    for window in clip.windows:
        entry: dict[str, Any] = {"start_frame": window.start_frame, "end_frame": window.end_frame}
        for model in captions.caption_models:
            if model in window.captions:
                entry[f"{model}_caption"] = window.captions[model]
        for model in captions.enhanced_caption_models:
            if model in window.enhanced_captions:
                entry[f"{model}_enhanced_caption"] = window.enhanced_captions[model]
        windows.append(entry)
    doc["windows"] = windows
    doc["valid"] = bool(clip.encoded and clip.windows)
    return doc


def video_doc(result: VideoResult, num_clip_chunks: int, pipeline: dict[str, Any] | None = None) -> dict[str, Any]:
    """``processed_videos/<rel>.json``; errors and the pipeline record are our documented additions."""
    m = result.metadata
    doc: dict[str, Any] = {
        "video": result.source_video,
        "height": m.height if m else None,
        "width": m.width if m else None,
        "framerate": m.framerate if m else None,
        "num_frames": m.num_frames if m else None,
        "duration": m.duration if m else None,
        "video_codec": m.video_codec if m else None,
        "pixel_format": m.pixel_format if m else None,
        "audio_format": m.audio_format if m else None,
        "num_total_clips": len(result.clips),
        "num_clip_chunks": num_clip_chunks,
    }
    if result.errors:
        doc["errors"] = list(result.errors)
        doc["error_details"] = {k: redact(v) for k, v in result.errors.items()}
    if pipeline:
        doc["pipeline"] = pipeline
    return doc


def _has_caption(clip: Clip, models: Iterable[str]) -> bool:
    return any(model in w.captions for w in clip.windows for model in models)


def _first_text(texts: dict[str, str], models: Iterable[str]) -> str | None:
    for model in models:
        if model in texts:
            return texts[model]
    return None


def chunk_doc(result: VideoResult, chunk_index: int, chunk: list[Clip], captions: CaptionConfig) -> dict[str, Any]:
    """``processed_clip_chunks/<rel>_<i>.json``: the reference's per-chunk statistics."""
    passed = [c for c in chunk if c.passed]
    filtered = [c for c in chunk if not c.passed]
    durations = [c.span.end_s - c.span.start_s for c in chunk]
    all_windows: dict[str, dict[str, str]] = {}
    all_enhanced: dict[str, dict[str, str]] = {}
    for clip in passed:
        key = str(clip.uuid)
        all_windows[key], all_enhanced[key] = {}, {}
        for w in clip.windows:
            text = _first_text(w.captions, captions.caption_models)
            if text is not None:
                all_windows[key][w.key] = text
            text = _first_text(w.enhanced_captions, captions.enhanced_caption_models)
            if text is not None:
                all_enhanced[key][w.key] = text
    return {
        "video": result.source_video,
        "clip_chunk_index": chunk_index,
        "num_clips_filtered_by_motion": sum(1 for c in filtered if c.filtered_by == "motion"),
        "num_clips_filtered_by_aesthetic": sum(1 for c in filtered if c.filtered_by == "aesthetic"),
        "num_clips_passed": len(passed),
        "num_clips_transcoded": sum(1 for c in chunk if c.encoded),
        "num_clips_with_embeddings": sum(1 for c in passed if c.embedding is not None),
        "num_clips_with_caption": sum(1 for c in chunk if _has_caption(c, captions.caption_models)),
        "num_clips_with_webp": sum(1 for c in passed if any(w.preview for w in c.windows)),
        "total_clip_duration": float(sum(durations)),
        "max_clip_duration": float(max(durations, default=0.0)),
        "clips": [str(c.uuid) for c in passed],
        "filtered_clips": [str(c.uuid) for c in filtered],
        "all_windows": all_windows,
        "all_windows_enhanced_caption": all_enhanced,
    }


def embedding_pickle(embedding: np.ndarray) -> bytes:
    """``ce1_embd/<uuid>.pickle``: a pickled numpy array of shape (1, D)."""
    buf = io.BytesIO()
    pickle.dump(np.asarray(embedding, dtype=np.float32).reshape(1, -1), buf)
    return buf.getvalue()


EMBEDDING_SCHEMA = pa.schema([("id", pa.string()), ("embedding", pa.list_(pa.float32()))])


def embeddings_parquet(clips: list[Clip]) -> bytes:
    """``ce1_embd_parquet/<chunk_uuid>.parquet``: one row per passed clip with an embedding."""
    rows = [c for c in clips if c.passed and c.embedding is not None]
    table = pa.Table.from_arrays(
        [
            pa.array([str(c.uuid) for c in rows], pa.string()),
            pa.array([np.asarray(c.embedding, dtype=np.float32).reshape(-1) for c in rows], pa.list_(pa.float32())),
        ],
        schema=EMBEDDING_SCHEMA,
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# The files of one video, per directory


@dataclass
class VideoFiles:
    """The files one video contributes to each layout directory: relative path -> bytes."""

    files: dict[str, dict[str, bytes | SpilledBytes]] = field(default_factory=lambda: {d: {} for d in ALL_DIRECTORIES})

    def add(self, directory: str, rel: str, data: bytes | str | SpilledBytes) -> None:
        """``data``: bytes, text, or :class:`SpilledBytes` (clips and previews stay on disk until
        they are written, one at a time)."""
        self.files[directory][rel] = data.encode() if isinstance(data, str) else data


def video_files(
    result: VideoResult,
    output_path: str,
    *,
    captions: CaptionConfig = CaptionConfig(),
    upload_clips: bool = True,
    dry_run: bool = False,
    chunk_budget: int = CHUNK_DURATION_BUDGET,
    pipeline: dict[str, Any] | None = None,
) -> VideoFiles:
    """Every file of the layout that one video produces, grouped by directory.

    ``dry_run`` writes only ``processed_videos`` and ``processed_clip_chunks`` (spec);
    ``upload_clips=False`` omits the mp4s.
    """
    out = VideoFiles()
    chunks = chunk_clips(result.clips, chunk_budget) if result.metadata is not None else []
    out.add(PROCESSED_VIDEOS, video_file(result.rel_path), dumps(video_doc(result, len(chunks), pipeline)))
    for i, chunk in enumerate(chunks):
        out.add(PROCESSED_CLIP_CHUNKS, chunk_file(result.rel_path, i), dumps(chunk_doc(result, i, chunk, captions)))
        if not dry_run and any(c.passed and c.embedding is not None for c in chunk):
            out.add(CE1_EMBD_PARQUET, parquet_file(result.source_video, i), embeddings_parquet(chunk))
    if dry_run or result.metadata is None:
        return out
    for clip in result.clips:
        directory = FILTERED_CLIPS if clip.filtered_by else CLIPS
        if clip.encoded and upload_clips:
            out.add(directory, clip_file(clip), clip.encoded)
        out.add(METAS, meta_file(clip), dumps(clip_meta_doc(clip, result.metadata, output_path, captions)))
        if clip.passed:
            for w in clip.windows:
                if w.preview:
                    out.add(PREVIEWS, preview_file(clip, w.start_frame, w.end_frame), w.preview)
            if clip.embedding is not None:
                out.add(CE1_EMBD, embedding_file(clip), embedding_pickle(clip.embedding))
    return out
