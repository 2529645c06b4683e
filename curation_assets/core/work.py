"""The work area: what one step hands the next, per video, on storage every worker reaches.

Each video has a folder ``<work_url>/videos/<video id>/`` (the id is a hash of the source URL, so
odd or very long names never matter) holding the steps' values as JSON documents (one per step
and settings digest) and, between the transcode and the writer, the clip and preview bytes. The writer *moves* those bytes into the
layout (a rename locally, a server-side copy on object stores), so a finished video keeps only its
small documents here: there is one copy of every clip, in ``clips/`` or ``filtered_clips/``.

Values are JSON, never pickles: the work area lives beside the output, and what is read back from
storage is untrusted. A document that does not decode is treated as missing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import storage, temp_files
from .model import (
    Clip,
    ClipAnnotations,
    ClipProbe,
    MotionScore,
    Span,
    SpilledBytes,
    VideoMetadata,
    VideoResult,
    Window,
)

FORMAT = 1  # bumped when the documents change shape; older documents are ignored (recomputed)


def video_id(source_url: str) -> str:
    """A short stable id of a source video (its work folder's name)."""
    return hashlib.sha256(source_url.encode("utf-8", "surrogateescape")).hexdigest()[:32]


@dataclass(frozen=True)
class WorkArea:
    """The work area under ``base`` (a local path or fsspec URL).

    Runs of one video with different settings never share a file here: a step's value is named
    by the digest of the settings that shape it (``core.options.step_digest``), and each transcode
    spills its bytes into a folder of its own (``token``), so two runs at once, on one machine or
    two, never overwrite or remove each other's work."""

    base: str

    def video_dir(self, source_url: str) -> str:
        return storage.join(self.base, "videos", video_id(source_url))

    def value_url(self, source_url: str, step: str, digest: str) -> str:
        return storage.join(self.video_dir(source_url), f"{step.replace('/', '_')}.{digest}.json")

    def clip_url(self, source_url: str, token: str, clip_uuid: str) -> str:
        return storage.join(self.video_dir(source_url), "bytes", token, f"{clip_uuid}.mp4")

    def preview_url(self, source_url: str, token: str, clip_uuid: str, start_frame: int, end_frame: int) -> str:
        return storage.join(self.video_dir(source_url), "bytes", token, clip_uuid, f"{start_frame}_{end_frame}.webp")

    def lock_url(self, source_url: str) -> str:
        return storage.join(self.video_dir(source_url), "writer.lock")

    def writer_lock(self, source_url: str, *, timeout_s: float):
        """The video's writer lock (``core.locks.held``): one writer at a time, a stop honoured
        while waiting, the lock file removed on release."""
        from . import locks

        return locks.held(self.lock_url(source_url), timeout_s=timeout_s)

    def writer_busy(self, source_url: str) -> bool:
        """Whether another process is writing the video now."""
        from . import locks

        return not locks.is_free(self.lock_url(source_url))

    def journal_url(self, source_url: str) -> str:
        return storage.join(self.video_dir(source_url), "writing.json")

    def save(self, source_url: str, step: str, digest: str, doc: dict[str, Any]) -> None:
        storage.write_bytes_atomic(self.value_url(source_url, step, digest),
                                   json.dumps({"format": FORMAT, **doc}, sort_keys=True).encode())

    def load(self, source_url: str, step: str, digest: str) -> dict[str, Any] | None:
        """The step's stored document for this video and settings, or None (missing, unreadable or
        an older format)."""
        try:
            doc = json.loads(storage.read_bytes(self.value_url(source_url, step, digest)))
        except FileNotFoundError:
            return None
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            return None
        return doc

    def token_lock_url(self, source_url: str, token: str) -> str:
        return storage.join(self.video_dir(source_url), "bytes", f"{token}.lock")

    def remove_bytes(self, result: VideoResult, *, max_age_s: float = temp_files.TEMP_MAX_AGE_S) -> None:
        """After a video is written: the bytes its result spilled that are still here (clips not
        uploaded, previews of filtered clips), and the spill folders of other transcodes of this
        video that no stored value references and no live transcode holds (locally: its shared
        lock; on object stores, which have no locks: older than ``max_age_s``)."""
        folder = self.video_dir(result.source_video)
        refs = [c.encoded for c in result.clips] + [c.model_frames for c in result.clips] + [
            w.preview for c in result.clips for w in c.windows]
        mine = {r.path for r in refs if isinstance(r, SpilledBytes) and r.path.startswith(folder)}
        leftovers = [u for u in mine if storage.file_info(u) is not None]
        bytes_dir = storage.join(folder, "bytes")
        files = storage.list_files(bytes_dir)
        referenced = {m for doc in files_referencing_tokens(self, folder) for m in doc}
        by_token: dict[str, list[str]] = {}
        for url in files:
            token = url[len(bytes_dir) + 1:].split("/", 1)[0].removesuffix(".lock")
            by_token.setdefault(token, []).append(url)
        now = time.time()
        for token, urls in by_token.items():
            if token in referenced or not _TOKEN_RE.match(token):
                continue
            if storage.is_local(folder):
                with storage.lock(self.token_lock_url(result.source_video, token)) as free:
                    if free:
                        leftovers += urls
            else:
                ages = [now - info.modified for info in map(storage.file_info, urls) if info and info.modified]
                if ages and min(ages) >= max_age_s:
                    leftovers += urls
        # this transcode is over (its bytes are written or gone): its lock file goes too
        my_tokens = {u[len(bytes_dir) + 1:].split("/", 1)[0] for u in mine if u.startswith(bytes_dir + "/")}
        leftovers += [u for t in my_tokens for u in by_token.get(t, []) if u.endswith(".lock")]
        storage.remove_files(leftovers, prune_empty_dirs_under=folder)


_TOKEN_RE = re.compile(r"^[0-9a-f]{16}$")
_TOKEN_IN_DOC = re.compile(r"/bytes/([0-9a-f]{16})/")


def files_referencing_tokens(area: WorkArea, folder: str) -> list[set[str]]:
    """The spill tokens each stored step value of a video references."""
    out = []
    for url in storage.list_files(folder):
        if url.endswith(".json") and "/bytes/" not in url[len(folder):]:
            try:
                out.append(set(_TOKEN_IN_DOC.findall(storage.read_bytes(url).decode("utf-8", "replace"))))
            except FileNotFoundError:
                continue
    return out


# ---------------------------------------------------------------------------------------------
# documents <-> values


def _bytes_doc(data: Any) -> Any:
    if data is None:
        return None
    if isinstance(data, SpilledBytes):
        return data.to_doc()
    return {"b64": base64.b64encode(bytes(data)).decode("ascii")}


def _bytes_value(doc: Any) -> Any:
    if doc is None:
        return None
    if "b64" in doc:
        return base64.b64decode(doc["b64"])
    return SpilledBytes.from_doc(doc)


def array_doc(value: np.ndarray) -> dict[str, Any]:
    arr = np.ascontiguousarray(np.asarray(value, dtype=np.float32))
    return {"float32": base64.b64encode(arr.tobytes()).decode("ascii"), "shape": list(arr.shape)}


def array_value(doc: dict[str, Any]) -> np.ndarray:
    arr = np.frombuffer(base64.b64decode(doc["float32"]), dtype=np.float32)
    return arr.reshape([int(n) for n in doc["shape"]]).copy()


def clip_doc(clip: Clip) -> dict[str, Any]:
    return {
        "source_video": clip.source_video,
        "span": [clip.span.start_s, clip.span.end_s, clip.span.start_frame, clip.span.end_frame, clip.span.snapped],
        "encoded": _bytes_doc(clip.encoded),
        "model_frames": _bytes_doc(clip.model_frames),
        "probe": None if clip.probe is None else vars(clip.probe),
        "motion": None if clip.motion is None else [clip.motion.global_mean, clip.motion.per_patch_min_256],
        "aesthetic_score": clip.aesthetic_score,
        "embedding": None if clip.embedding is None else array_doc(clip.embedding),
        "windows": [{"start_frame": w.start_frame, "end_frame": w.end_frame, "captions": w.captions,
                     "enhanced_captions": w.enhanced_captions, "preview": _bytes_doc(w.preview)} for w in clip.windows],
        "errors": clip.errors,
        "filtered_by": clip.filtered_by,
    }


def clip_value(doc: dict[str, Any]) -> Clip:
    s0, s1, f0, f1, snapped = doc["span"]
    return Clip(
        source_video=doc["source_video"],
        span=Span(float(s0), float(s1), int(f0), int(f1), bool(snapped)),
        encoded=_bytes_value(doc["encoded"]),
        model_frames=_bytes_value(doc["model_frames"]),
        probe=None if doc["probe"] is None else ClipProbe(**doc["probe"]),
        motion=None if doc["motion"] is None else MotionScore(*doc["motion"]),
        aesthetic_score=doc["aesthetic_score"],
        embedding=None if doc["embedding"] is None else array_value(doc["embedding"]),
        windows=[Window(w["start_frame"], w["end_frame"], dict(w["captions"]), dict(w["enhanced_captions"]),
                        _bytes_value(w["preview"])) for w in doc["windows"]],
        errors=dict(doc["errors"]),
        filtered_by=doc["filtered_by"],
    )


def result_doc(result: VideoResult) -> dict[str, Any]:
    return {
        "source_video": result.source_video,
        "rel_path": result.rel_path,
        "metadata": None if result.metadata is None else vars(result.metadata),
        "clips": [clip_doc(c) for c in result.clips],
        "errors": result.errors,
        "pipeline": result.record,
        "stage_key": result.stage_key,
    }


def result_value(doc: dict[str, Any]) -> VideoResult:
    return VideoResult(
        source_video=doc["source_video"],
        rel_path=doc["rel_path"],
        metadata=None if doc["metadata"] is None else VideoMetadata(**doc["metadata"]),
        clips=[clip_value(c) for c in doc["clips"]],
        errors=dict(doc["errors"]),
        record=dict(doc["pipeline"]),
        stage_key=str(doc["stage_key"]),
    )


def annotations_doc(ann: ClipAnnotations) -> dict[str, Any]:
    values = {uid: array_doc(v) if isinstance(v, np.ndarray) else v for uid, v in ann.values.items()}
    return {"values": values, "errors": {uid: list(e) for uid, e in ann.errors.items()}, "note": ann.note,
            "video_error": ann.video_error, "digest": ann.digest, "clips_key": ann.clips_key}


def annotations_value(doc: dict[str, Any]) -> ClipAnnotations:
    values = {uid: array_value(v) if isinstance(v, dict) and "float32" in v else v for uid, v in doc["values"].items()}
    return ClipAnnotations(values=values, errors={uid: (e[0], e[1]) for uid, e in doc["errors"].items()},
                           note=doc["note"], video_error=doc["video_error"], digest=doc["digest"],
                           clips_key=doc["clips_key"])


@dataclass(frozen=True)
class VideoSpill:
    """Where one video's clip and preview bytes go as each clip is encoded: a folder of this
    transcode's own in the video's work folder, with the layout locations the writer moves them to
    as fallbacks (``SpilledBytes.alternates``)."""

    work: WorkArea
    source_url: str
    output_path: str
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:16])

    @property
    def local(self) -> bool:
        return storage.is_local(self.work.base)

    def clip(self, clip_uuid: str, data: bytes) -> SpilledBytes:
        from . import layout

        alternates = tuple(storage.join(self.output_path, d, f"{clip_uuid}.mp4") for d in (layout.CLIPS, layout.FILTERED_CLIPS))
        return SpilledBytes.write(data, self.work.clip_url(self.source_url, self.token, clip_uuid), alternates)

    def preview(self, clip_uuid: str, start_frame: int, end_frame: int, data: bytes) -> SpilledBytes:
        from . import layout

        alternate = storage.join(self.output_path, layout.PREVIEWS, clip_uuid, f"{start_frame}_{end_frame}.webp")
        return SpilledBytes.write(data, self.work.preview_url(self.source_url, self.token, clip_uuid, start_frame,
                                                              end_frame), (alternate,))

    def frames(self, clip_uuid: str, data: bytes) -> SpilledBytes:
        """The frames the model steps need (``models.frame_store``), kept until the clip is written."""
        url = storage.join(self.work.video_dir(self.source_url), "bytes", self.token, f"{clip_uuid}.frames.npz")
        return SpilledBytes.write(data, url)
