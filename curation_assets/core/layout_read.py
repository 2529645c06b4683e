"""One video's written layout read back from its documents, without listing any directory.

Why one module over the project's 500-line guide: reading a document back and deciding whether it
may be trusted are one step here: every id and frame number is checked as it is read, before it
can become a path (by the one document schema, ``core.documents``, which the writer and the
checks use too); the embedding loaders at the end open only files whose paths passed them.

A video's ``processed_videos/<rel>.json`` says how many chunks it has; each chunk document names
its clips (passed and filtered); each clip's ``metas/v0/<uuid>.json`` says what was written for
it. So the files of one video are found by reading a handful of named documents, which on an
object store is a few GETs instead of listing prefixes that hold every video's files.

Everything read back is untrusted (the output may have been edited, or written by another tool):
ids must be canonical lowercase UUIDs that this video's source and span produce
(:func:`verified_span`), window frames non-negative integers, and a document that fails a check
is reported in :attr:`VideoLayout.problems` and never turned into paths. The writer
(``core.writer``) decides what a video owned from the same checks.
"""

from __future__ import annotations

import io
import json
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from . import layout, storage
from .documents import (
    CAPTION_SUFFIX,
    ENHANCED_CAPTION_SUFFIX,
    caption_pairs,
    chunk_clip_ids,
    chunk_unusable,
    is_canonical_uuid,
    is_index,
    is_number,
    meta_unusable,
    video_unusable,
)
from .model import MotionScore, clip_uuid
from .motion import is_low_motion
from .timing import span_frames_of

#: A claimed chunk count is bounded by the chunk documents that exist: they are read in order
#: (in batches that double), and after this many missing in a row no more are looked for.
CHUNK_GAP = 8

#: Why a clip sits in ``filtered_clips/`` (metas have no such field; see :func:`filtered_reason`).
FILTERED_BY_MOTION = "motion"
FILTERED_BY_AESTHETIC = "aesthetic"
FILTERED_BY_UNKNOWN = "unknown"


def is_video_clip_id(uid: Any, source_video: str, start_frame: Any, end_frame: Any) -> bool:
    """True when ``uid`` is the id the reference gives this video's span: a canonical uuid equal to
    ``uuid5(NAMESPACE_URL, f"{source}_{start_frame}_{end_frame}")``."""
    return (is_canonical_uuid(uid) and is_index(start_frame) and is_index(end_frame)
            and str(clip_uuid(source_video, start_frame, end_frame)) == uid)


def verified_span(uid: Any, source_video: str, meta: Any) -> tuple[int, int] | None:
    """The span frames of a ``metas/v0`` document that give back ``uid`` for this source, else None.
    The document stores seconds; the frames are recovered from them and the source frame rate by
    the timing model's rules (:func:`~.timing.span_frames_of`: the frames a split, scene or
    snapped span could have), so a document naming another video's clip (or a made-up id) never
    verifies."""
    if not isinstance(meta, Mapping) or meta.get("span_uuid") != uid or meta.get("source_video") != source_video:
        return None
    span = meta.get("duration_span")
    if not isinstance(span, list) or len(span) != 2:
        return None
    fps = meta.get("framerate_source")
    if not (is_number(span[0]) and is_number(span[1]) and is_number(fps)):
        return None
    for a in span_frames_of(span[0], fps):
        for b in span_frames_of(span[1], fps):
            if is_video_clip_id(uid, source_video, a, b):
                return a, b
    return None


def windows_of(raw: Any) -> tuple[tuple[int, int], ...]:
    """Window frame pairs from an untrusted list (of ``{"start_frame", "end_frame"}`` or pairs)."""
    out = []
    for w in raw if isinstance(raw, list) else []:
        pair = ((w.get("start_frame"), w.get("end_frame")) if isinstance(w, Mapping)
                else tuple(w) if isinstance(w, list) else ())
        if len(pair) == 2 and is_index(pair[0]) and is_index(pair[1]) and pair[0] <= pair[1]:
            out.append((int(pair[0]), int(pair[1])))
    return tuple(out)


def read_json(url: str) -> Any:
    """A JSON document; None when missing; ``ValueError`` (the class) when it is not JSON."""
    try:
        return json.loads(storage.read_bytes(url))
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError):
        return ValueError


@dataclass(frozen=True)
class WindowLayout:
    """One caption/preview window of a clip: frames (inclusive), captions by model, preview URL."""

    start_frame: int
    end_frame: int
    captions: tuple[tuple[str, str], ...] = ()  # (model, text) in the meta's key order
    enhanced_captions: tuple[tuple[str, str], ...] = ()
    preview_url: str | None = None


@dataclass(frozen=True)
class ClipLayout:
    """One clip as its documents describe it.

    ``meta`` is the validated ``metas/v0`` document. ``clip_url`` is set when the meta says the
    clip has bytes and the pipeline record says the mp4s were written; ``embedding_url`` when the
    chunk's parquet names the clip. ``filtered_by`` is derived (:func:`filtered_reason`).
    """

    uuid: str
    chunk_index: int
    passed: bool
    meta: Mapping[str, Any]
    meta_url: str
    clip_url: str | None
    windows: tuple[WindowLayout, ...]
    embedding_url: str | None
    parquet_url: str | None
    filtered_by: str | None


@dataclass(frozen=True)
class VideoLayout:
    """Everything one video wrote, as documents and URLs. ``exists`` is False when the video has no
    ``processed_videos`` document (never processed, or removed)."""

    output_path: str
    rel_path: str
    exists: bool
    video_url: str
    video: Mapping[str, Any] | None = None
    chunks: tuple[Mapping[str, Any], ...] = ()
    clips: tuple[ClipLayout, ...] = ()
    parquet_urls: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def source_video(self) -> str | None:
        return self.video.get("video") if self.video else None

    @property
    def settings(self) -> Mapping[str, Any]:
        """The pipeline settings recorded in the video document ({} when absent)."""
        return _settings(self.video)

    @property
    def errors(self) -> Mapping[str, str]:
        """The video's own errors (``errors`` / ``error_details``)."""
        return _error_map(self.video) if self.video else {}


def _settings(video: Mapping[str, Any] | None) -> Mapping[str, Any]:
    pipeline = video.get("pipeline") if isinstance(video, Mapping) else None
    settings = pipeline.get("settings") if isinstance(pipeline, Mapping) else None
    return settings if isinstance(settings, Mapping) else {}


def _error_map(doc: Mapping[str, Any]) -> dict[str, str]:
    keys = doc.get("errors") or []
    raw = doc.get("error_details")
    details = raw if isinstance(raw, Mapping) else {}
    return {str(k): str(details.get(k, "")) for k in keys}


# ---------------------------------------------------------------------------------------------
# Reading


def _read_many(output_path: str, rels: list[str]) -> dict[str, bytes | Exception]:
    """Read named files under ``output_path``; a missing or unreadable file gives its exception.

    Object stores: one concurrent batch of GETs (``cat_ranges``: no glob expansion, no listing).
    """
    urls = {rel: storage.join(output_path, rel) for rel in rels}
    out: dict[str, bytes | Exception] = {}
    if not rels:
        return out
    if storage.is_local(output_path):
        for rel, url in urls.items():
            try:
                out[rel] = storage.read_bytes(url)
            except storage.StorageError as exc:
                out[rel] = exc
        return out
    fs, _ = storage.get_fs(output_path)
    paths = [storage.get_fs(urls[rel])[1] for rel in rels]
    protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
    # s3fs asks for an object's size (a HEAD) before a whole read when it may split it: documents
    # are small, so one GET each
    extra = {"max_concurrency": 1} if protocols & {"s3", "s3a"} else {}
    try:
        data = fs.cat_ranges(paths, [None] * len(paths), [None] * len(paths), on_error="return", **extra)
    except Exception as exc:  # noqa: BLE001 - the whole batch failed: every file gets the error
        data = [exc] * len(paths)
    for rel, item in zip(rels, data, strict=True):
        if isinstance(item, FileNotFoundError):
            out[rel] = storage.StorageNotFoundError(storage.redact(f"read {urls[rel]!r}: not found"))
        elif isinstance(item, BaseException):
            out[rel] = storage.StorageError(storage.redact(f"read {urls[rel]!r} failed: {type(item).__name__}: {item}"))
        else:
            out[rel] = bytes(item)
    return out


def _parse_json(data: bytes | Exception, what: str, problems: list[str]) -> dict[str, Any] | None:
    if isinstance(data, storage.StorageNotFoundError):
        problems.append(f"{what}: missing")
        return None
    if isinstance(data, Exception):
        problems.append(f"{what}: {data}")
        return None
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        problems.append(f"{what}: not JSON ({exc})")
        return None
    if not isinstance(doc, dict):
        problems.append(f"{what}: not a JSON object")
        return None
    return doc


def filtered_reason(meta: Mapping[str, Any], settings: Mapping[str, Any], chunk: Mapping[str, Any]) -> str:
    """Why a filtered clip was filtered, derived from what was written (metas carry no reason).

    The pipeline filters by motion first, then by aesthetics among the clips motion kept, so: the
    motion filter was on and the clip's scores are under its thresholds -> motion; else an
    aesthetic threshold was set and the score is under it -> aesthetic. Without a pipeline record
    (output of another tool) the chunk's counts decide when only one filter removed clips.
    """
    if settings:
        motion = meta.get("motion_score")
        if settings.get("motion_filter") == "enable" and isinstance(motion, Mapping) and is_low_motion(
            MotionScore(float(motion["global_mean"]), float(motion["per_patch_min_256"])),
            global_mean_threshold=float(settings.get("motion_global_mean_threshold", 0.0)),
            per_patch_min_256_threshold=float(settings.get("motion_per_patch_min_256_threshold", 0.0)),
        ):
            return FILTERED_BY_MOTION
        threshold = settings.get("aesthetic_threshold")
        score = meta.get("aesthetic_score")
        if is_number(threshold) and is_number(score) and score < threshold:
            return FILTERED_BY_AESTHETIC
        return FILTERED_BY_UNKNOWN
    by_motion = chunk.get("num_clips_filtered_by_motion", 0)
    by_aesthetic = chunk.get("num_clips_filtered_by_aesthetic", 0)
    if by_motion and not by_aesthetic:
        return FILTERED_BY_MOTION
    if by_aesthetic and not by_motion:
        return FILTERED_BY_AESTHETIC
    return FILTERED_BY_UNKNOWN


def read_video_layout(output_path: str, rel_path: str, source_video: str | None = None) -> VideoLayout:
    """Read one video's layout back from its documents (no directory is listed).

    ``source_video``: the source URL the caller knows the video by (``input_path`` + ``rel_path``);
    a video document describing another source is then not this video's (``exists`` False).

    Reads ``processed_videos/<rel>.json``, its ``num_clip_chunks`` chunk documents, the
    ``metas/v0`` document of every clip they name and the ``id`` column of each chunk's embedding
    parquet. Problems with any document are collected in ``problems``; the clips whose documents
    pass the checks are returned. Raises ``ValueError`` only for a ``rel_path`` that does not stay
    inside the output, and :class:`storage.StorageError` when the video document cannot be read
    for another reason than not existing.
    """
    storage.resolve_under(output_path, rel_path)  # refuses absolute, URL-like and dotted keys
    video_rel = layout.video_file(rel_path)
    video_url = storage.resolve_under(output_path, video_rel)
    problems: list[str] = []
    data = _read_many(output_path, [video_rel])[video_rel]
    if isinstance(data, storage.StorageNotFoundError):
        return VideoLayout(output_path, rel_path, exists=False, video_url=video_url)
    if isinstance(data, Exception):
        raise data
    video = _parse_json(data, video_rel, problems)
    bad = video_unusable(video) if video is not None else None
    if video is None or bad:
        if bad:
            problems.append(f"{video_rel}: {bad}")
        return VideoLayout(output_path, rel_path, exists=True, video_url=video_url, problems=tuple(problems))
    source = video["video"]
    if source_video is not None and source != source_video:
        problems.append(f"{video_rel}: describes {source[-80:]!r}, not this video")
        return VideoLayout(output_path, rel_path, exists=False, video_url=video_url, problems=tuple(problems))
    settings = _settings(video)

    chunk_data = _read_chunks(output_path, rel_path, video["num_clip_chunks"])
    chunk_rels = list(chunk_data)
    if len(chunk_rels) < video["num_clip_chunks"]:
        problems.append(f"{video_rel}: num_clip_chunks is {video['num_clip_chunks']}, but {CHUNK_GAP} chunk "
                        f"documents are missing in a row from index {len(chunk_rels) - CHUNK_GAP}: the rest were "
                        "not looked for")
    chunks: list[dict[str, Any]] = []
    members: list[tuple[str, int, bool]] = []  # uuid, chunk index, passed
    seen: set[str] = set()
    for i, rel in enumerate(chunk_rels):
        doc = _parse_json(chunk_data[rel], rel, problems)
        bad = chunk_unusable(doc, i, source) if doc is not None else None
        if doc is None or bad:
            if bad:
                problems.append(f"{rel}: {bad}")
            continue
        chunks.append(doc)
        for uid, passed in chunk_clip_ids(doc):
            if uid in seen:
                problems.append(f"{rel}: clip {uid} is named twice")
                continue
            seen.add(uid)
            members.append((uid, i, passed))
    chunk_by_index = {doc["clip_chunk_index"]: doc for doc in chunks}

    parquet_rels = {doc["clip_chunk_index"]: layout.parquet_file(source, doc["clip_chunk_index"])
                    for doc in chunks if (doc.get("num_clips_with_embeddings") or 0) > 0}
    embedded: dict[str, str] = {}  # clip uuid -> parquet url
    for rel in parquet_rels.values():
        ids = _parquet_ids(output_path, rel, problems)
        for uid in ids:
            embedded[uid] = storage.join(output_path, rel)

    meta_rels = [layout.meta_path(uid) for uid, _, _ in members]
    meta_data = _read_many(output_path, meta_rels)
    write_mp4 = settings.get("upload_clips", True) is not False and settings.get("dry_run") is not True
    previews_on = bool(settings.get("generate_previews", False)) and settings.get("dry_run") is not True
    clips: list[ClipLayout] = []
    for (uid, index, passed), rel in zip(members, meta_rels, strict=True):
        meta = _parse_json(meta_data[rel], rel, problems)
        bad = meta_unusable(meta, uid, source) if meta is not None else None
        if not bad and meta is not None and verified_span(uid, source, meta) is None:
            bad = "its id is not the one this video's source and span give"
        if meta is None or bad:
            if bad:
                problems.append(f"{rel}: {bad}")
            continue
        clip_rel = layout.clip_path(uid, filtered=not passed)
        location = meta.get("clip_location")
        if isinstance(location, str) and not location.endswith(f"/{clip_rel}"):
            problems.append(f"{rel}: clip_location {location[-80:]!r} is not {clip_rel}")
        has_bytes = isinstance(meta.get("num_bytes"), int) and meta["num_bytes"] > 0
        windows = tuple(
            WindowLayout(
                start_frame=w["start_frame"], end_frame=w["end_frame"],
                captions=caption_pairs(w, CAPTION_SUFFIX), enhanced_captions=caption_pairs(w, ENHANCED_CAPTION_SUFFIX),
                preview_url=(storage.join(output_path, layout.preview_path(uid, w["start_frame"], w["end_frame"]))
                             if passed and previews_on else None),
            )
            for w in meta.get("windows", [])
        )
        clips.append(ClipLayout(
            uuid=uid, chunk_index=index, passed=passed, meta=meta,
            meta_url=storage.join(output_path, rel),
            clip_url=storage.join(output_path, clip_rel) if has_bytes and write_mp4 else None,
            windows=windows,
            embedding_url=storage.join(output_path, layout.embedding_path(uid)) if passed and uid in embedded else None,
            parquet_url=embedded.get(uid) if passed else None,
            filtered_by=None if passed else filtered_reason(meta, settings, chunk_by_index[index]),
        ))
    stray = set(embedded) - {c.uuid for c in clips if c.passed}
    if stray:
        problems.append(f"{len(stray)} embedding row(s) name clips that are not passed clips of this video, "
                        f"e.g. {sorted(stray)[0]}")
    return VideoLayout(
        output_path=output_path, rel_path=rel_path, exists=True, video_url=video_url, video=video,
        chunks=tuple(chunks), clips=tuple(clips),
        parquet_urls=tuple(storage.join(output_path, rel) for rel in parquet_rels.values()),
        problems=tuple(problems),
    )


def _read_chunks(output_path: str, rel_path: str, claimed: int) -> dict[str, bytes | Exception]:
    """The chunk documents ``0 .. claimed-1`` of a video, read in batches (doubling while every
    document is there, else just enough to see ``CHUNK_GAP`` missing in a row, where reading
    stops): the reads are bounded by the documents that exist, not by the count a document claims."""
    out: dict[str, bytes | Exception] = {}
    start, size, missing = 0, CHUNK_GAP, 0
    while start < claimed and missing < CHUNK_GAP:
        rels = [layout.chunk_file(rel_path, i) for i in range(start, min(claimed, start + size))]
        for rel, data in _read_many(output_path, rels).items():
            out[rel] = data
            missing = missing + 1 if isinstance(data, storage.StorageNotFoundError) else 0
        start = start + len(rels)
        size = size * 2 if missing == 0 else CHUNK_GAP - missing
    return out


def _parquet_ids(output_path: str, rel: str, problems: list[str]) -> list[str]:
    data = _read_many(output_path, [rel])[rel]
    if isinstance(data, Exception):
        problems.append(f"{rel}: {data}")
        return []
    try:
        table = pq.read_table(io.BytesIO(data), columns=["id"])
    except Exception as exc:  # noqa: BLE001 - any parquet error is this file's problem
        problems.append(f"{rel}: not a readable parquet file ({type(exc).__name__})")
        return []
    ids = table.column("id").to_pylist()
    bad = [i for i in ids if not is_canonical_uuid(i)]
    if bad:
        problems.append(f"{rel}: ids that are not canonical UUIDs, e.g. {str(bad[0])[:60]!r}")
    return [i for i in ids if is_canonical_uuid(i)]


# ---------------------------------------------------------------------------------------------
# Embeddings


def load_embeddings(video: VideoLayout) -> dict[str, np.ndarray]:
    """The embedding of every passed clip that has one, from the chunk parquet files (one read per
    chunk, and parquet holds no code, unlike the pickles): clip uuid -> float32 vector (D,)."""
    wanted = {c.uuid for c in video.clips if c.parquet_url}
    out: dict[str, np.ndarray] = {}
    for url in video.parquet_urls:
        table = pq.read_table(io.BytesIO(storage.read_bytes(url)), columns=["id", "embedding"])
        ids, vectors = table.column("id").to_pylist(), table.column("embedding").to_numpy(zero_copy_only=False)
        for uid, vector in zip(ids, vectors, strict=True):
            if uid in wanted:
                out[uid] = np.asarray(vector, dtype=np.float32)
    return out


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else: a pickle read back from the output could otherwise
    run any code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: only numpy arrays are expected")


def load_embedding(clip: ClipLayout) -> np.ndarray:
    """The clip's ``ce1_embd/<uuid>.pickle`` as a float32 vector (D,); only numpy arrays are
    unpickled. Raises ``ValueError`` when the clip has none or the file holds something else."""
    if clip.embedding_url is None:
        raise ValueError(f"clip {clip.uuid} has no embedding")
    value = _NumpyOnlyUnpickler(io.BytesIO(storage.read_bytes(clip.embedding_url))).load()
    if not isinstance(value, np.ndarray) or value.ndim != 2 or value.shape[0] != 1:
        raise ValueError(f"{clip.embedding_url}: not an array of shape (1, D)")
    return value.reshape(-1).astype(np.float32, copy=False)


__all__ = [
    "CHUNK_GAP",
    "ClipLayout",
    "VideoLayout",
    "WindowLayout",
    "FILTERED_BY_AESTHETIC",
    "FILTERED_BY_MOTION",
    "FILTERED_BY_UNKNOWN",
    "filtered_reason",
    "is_video_clip_id",
    "load_embedding",
    "load_embeddings",
    "read_json",
    "read_video_layout",
    "verified_span",
    "windows_of",
]
