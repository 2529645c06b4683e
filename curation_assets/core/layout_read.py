"""One video's written layout, read back without listing any directory.

The video document names its chunk documents, the chunk documents name the clips, and each clip's
``metas/v0`` document names its windows: every file of a video is found from those, so reading one
video costs a few requests whatever the size of the output. Everything read back is untrusted: a
clip id becomes a path only once :func:`verified_span` shows it is the id this video's source and
span produce; anything else is reported in ``problems`` and left out.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from typing import Any

import pyarrow.parquet as pq

from . import layout, storage
from .model import clip_uuid

MAX_CHUNKS = 100_000  # a video document claiming more chunks than this is not believed

CLIP_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def is_index(value: Any) -> bool:
    """A frame or chunk index as the documents store it (a non-negative int, not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**9


def is_video_clip_id(uid: Any, source_video: str, start_frame: Any, end_frame: Any) -> bool:
    """True when ``uid`` is the id the reference gives this video's span: a canonical uuid equal to
    ``uuid5(NAMESPACE_URL, f"{source}_{start_frame}_{end_frame}")``."""
    return (isinstance(uid, str) and bool(CLIP_ID_RE.match(uid)) and is_index(start_frame) and is_index(end_frame)
            and str(clip_uuid(source_video, start_frame, end_frame)) == uid)


def _frame_candidates(seconds: Any, fps: Any) -> list[int]:
    if isinstance(seconds, bool) or isinstance(fps, bool) or not isinstance(seconds, (int, float)) \
            or not isinstance(fps, (int, float)) or not (0 <= seconds < 1e9 and 0 < fps < 1e6):
        return []
    x = seconds * fps
    return sorted({n for n in (int(x) - 1, int(x), int(x) + 1, round(x)) if n >= 0})


def verified_span(uid: Any, source_video: str, meta: Any) -> tuple[int, int] | None:
    """The span frames of a ``metas/v0`` document that give back ``uid`` for this source, else None.
    The document stores seconds; the frames are recovered from them and the source frame rate."""
    if not isinstance(meta, dict) or meta.get("span_uuid") != uid or meta.get("source_video") != source_video:
        return None
    span = meta.get("duration_span")
    if not isinstance(span, list) or len(span) != 2:
        return None
    fps = meta.get("framerate_source")
    for a in _frame_candidates(span[0], fps):
        for b in _frame_candidates(span[1], fps):
            if is_video_clip_id(uid, source_video, a, b):
                return a, b
    return None


def windows_of(raw: Any) -> tuple[tuple[int, int], ...]:
    """Window frame pairs from an untrusted list (of ``{"start_frame", "end_frame"}`` or pairs)."""
    out = []
    for w in raw if isinstance(raw, list) else []:
        pair = (w.get("start_frame"), w.get("end_frame")) if isinstance(w, dict) else tuple(w) if isinstance(w, list) else ()
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
class ClipLayout:
    """One clip of a video as written: its meta document and where its files are."""

    uuid: str
    start_frame: int
    end_frame: int
    passed: bool
    meta: dict[str, Any]
    clip_url: str | None  # None when the clip has no bytes or they were not uploaded
    preview_urls: tuple[str, ...]
    embedding_url: str | None  # the ce1_embd pickle, when an embedding was written


@dataclass(frozen=True)
class VideoLayout:
    """What one video has in the layout (``exists`` False: no video document)."""

    rel_path: str
    source_video: str
    exists: bool
    video: dict[str, Any] | None = None
    chunks: tuple[dict[str, Any], ...] = ()
    clips: tuple[ClipLayout, ...] = ()
    parquet_urls: tuple[str, ...] = ()
    problems: tuple[str, ...] = field(default=())

    @property
    def failed(self) -> bool:
        return bool(self.video and self.video.get("errors"))


def read_video_layout(output_path: str, rel_path: str, source_video: str, *,
                      with_embeddings: bool = True) -> VideoLayout:
    """One video's documents and file URLs (see the module docstring).

    ``with_embeddings``: read the video's chunk parquet files to learn which clips have an
    embedding (one small read per chunk)."""
    problems: list[str] = []
    doc = read_json(storage.join(output_path, layout.video_file(rel_path)))
    if not isinstance(doc, dict) or doc.get("video") != source_video:
        if doc is ValueError:
            problems.append(f"{layout.video_file(rel_path)} is not JSON")
        elif doc is not None:
            problems.append(f"{layout.video_file(rel_path)} does not describe {source_video}")
        return VideoLayout(rel_path, source_video, exists=False, problems=tuple(problems))
    n = doc.get("num_clip_chunks")
    num_chunks = n if is_index(n) and n <= MAX_CHUNKS else 0
    chunks = []
    for i in range(num_chunks):
        chunk = read_json(storage.join(output_path, layout.chunk_file(rel_path, i)))
        if isinstance(chunk, dict) and chunk.get("video") == source_video:
            chunks.append(chunk)
        else:
            problems.append(f"{layout.chunk_file(rel_path, i)} is missing or not a chunk document of this video")
    parquet_urls = tuple(storage.join(output_path, layout.parquet_file(source_video, i)) for i in range(num_chunks)
                         if isinstance(doc, dict) and not doc.get("errors"))
    by_file = _parquet_ids(parquet_urls) if with_embeddings else {}
    embedded = set().union(*by_file.values())
    settings = (doc.get("pipeline") or {}).get("settings") if isinstance(doc.get("pipeline"), dict) else None
    uploaded = not isinstance(settings, dict) or settings.get("upload_clips", True) is not False
    clips = []
    for chunk in chunks:
        for name, passed in (("clips", True), ("filtered_clips", False)):
            listed = chunk.get(name)
            for uid in listed if isinstance(listed, list) else []:
                meta = read_json(storage.join(output_path, f"{layout.METAS}/{uid}.json")) if isinstance(uid, str) \
                    and CLIP_ID_RE.match(uid) else None
                frames = verified_span(uid, source_video, meta)
                if frames is None:
                    problems.append(f"clip id {str(uid)[:80]!r} is not verified as this video's (no matching metas/v0)")
                    continue
                folder = layout.CLIPS if passed else layout.FILTERED_CLIPS
                has_bytes = "num_bytes" in meta and uploaded
                clips.append(ClipLayout(
                    uuid=uid, start_frame=frames[0], end_frame=frames[1], passed=passed, meta=meta,
                    clip_url=storage.join(output_path, folder, f"{uid}.mp4") if has_bytes else None,
                    preview_urls=tuple(storage.join(output_path, layout.PREVIEWS, uid, f"{s}_{e}.webp")
                                       for s, e in windows_of(meta.get("windows"))) if passed else (),
                    embedding_url=storage.join(output_path, layout.CE1_EMBD, f"{uid}.pickle") if uid in embedded else None,
                ))
    return VideoLayout(rel_path, source_video, exists=True, video=doc, chunks=tuple(chunks), clips=tuple(clips),
                       parquet_urls=tuple(u for u in parquet_urls if by_file.get(u)), problems=tuple(problems))


def _parquet_ids(urls: tuple[str, ...]) -> dict[str, set[str]]:
    """The clip ids each chunk parquet file holds (missing or unreadable files hold none)."""
    out: dict[str, set[str]] = {}
    for url in urls:
        try:
            table = pq.read_table(io.BytesIO(storage.read_bytes(url)), columns=["id"])
        except Exception:  # noqa: BLE001 - missing or unreadable: names no embeddings
            continue
        out[url] = {v for v in table.column("id").to_pylist() if isinstance(v, str)}
    return out


def read_embeddings(video: VideoLayout) -> dict[str, Any]:
    """Clip id -> embedding (float32 numpy array) of a video, from its chunk parquet files (the
    pickles are never unpickled: they are untrusted bytes)."""
    import numpy as np

    out: dict[str, Any] = {}
    ids = {c.uuid for c in video.clips}
    for url in video.parquet_urls:
        table = pq.read_table(io.BytesIO(storage.read_bytes(url)))
        for uid, vec in zip(table.column("id").to_pylist(), table.column("embedding").to_pylist()):
            if uid in ids and vec is not None:
                out[uid] = np.asarray(vec, dtype=np.float32)
    return out
