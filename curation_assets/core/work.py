"""The work area: what one step hands the next, per video, on storage every worker reaches.

Each video has a folder ``<work_url>/videos/<video id>/`` (the id is a hash of the output and the
source URL, so odd or very long names never matter, and two outputs sharing one work path never
see each other's values) holding the steps' values as JSON documents (one per step and settings
digest) and, between the transcode and the writer, the clip and preview bytes. The writer *moves*
those bytes into the layout (a rename locally, a server-side copy on object stores), so a finished
video keeps only its small documents here: there is one copy of every clip, in ``clips/`` or
``filtered_clips/``.

Values are JSON, never pickles, and what is read back is untrusted like the output: a document is
used only when it names the output, source, step and settings digest it is read for, its
``source_video`` and ``rel_path`` are the partition's, and every byte reference in it is exactly
the name this work area gives that clip (in the video's own ``bytes/`` folder, the layout's own
names as fallbacks; :meth:`WorkArea.value_problem`). Anything else is refused with a warning naming
the field, and the step computes the value again. A document that does not decode is treated as
missing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import storage, temp_files, urls
from .model import (
    UNWRITABLE_FAILURES,
    Clip,
    ClipAnnotations,
    ClipProbe,
    MotionScore,
    Span,
    SpilledBytes,
    VideoMetadata,
    VideoResult,
    Window,
    clip_uuid,
)

log = logging.getLogger(__name__)

FORMAT = 2  # bumped when the documents change shape; older documents are ignored (recomputed)


def video_id(source_url: str, output: str | None = None) -> str:
    """A short stable id of a source video (its work folder's name): of the source alone, or of
    the source as written to ``output`` (a work folder per output and video)."""
    key = source_url if output is None else json.dumps([urls.normalize_url(output), source_url])
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:32]


@dataclass(frozen=True)
class WorkArea:
    """The work area under ``base`` (a local path or fsspec URL) for the layout under ``output``;
    ``input_path``, when given, is what a stored ``rel_path`` must be relative to.

    Runs of one video with different settings never share a file here: a step's value is named
    by the digest of the settings that shape it (``core.options.step_digest``), and each transcode
    spills its bytes into a folder of its own (``token``), so two runs at once, on one machine or
    two, never overwrite or remove each other's work. Runs for two outputs never share a folder."""

    base: str
    output: str
    input_path: str = ""

    @classmethod
    def for_options(cls, options: Any) -> WorkArea:
        """The work area of a run's settings (``PipelineOptions``)."""
        return cls(options.work_url, options.output_path, options.input_path)

    def video_dir(self, source_url: str) -> str:
        return storage.join(self.base, "videos", video_id(source_url, self.output))

    def bytes_dir(self, source_url: str) -> str:
        return storage.join(self.video_dir(source_url), "bytes")

    def value_url(self, source_url: str, step: str, digest: str) -> str:
        return storage.join(self.video_dir(source_url), f"{step.replace('/', '_')}.{digest}.json")

    def clip_url(self, source_url: str, token: str, clip_uuid: str) -> str:
        return storage.join(self.bytes_dir(source_url), token, f"{clip_uuid}.mp4")

    def preview_url(self, source_url: str, token: str, clip_uuid: str, start_frame: int, end_frame: int) -> str:
        return storage.join(self.bytes_dir(source_url), token, clip_uuid, f"{start_frame}_{end_frame}.webp")

    def frames_url(self, source_url: str, token: str, clip_uuid: str) -> str:
        return storage.join(self.bytes_dir(source_url), token, f"{clip_uuid}.frames.npz")

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

    def identity(self, source_url: str, step: str, digest: str) -> dict[str, str]:
        """What a stored document says it was made for (checked on every load)."""
        return {"output": self.output, "source": source_url, "step": step, "digest": digest}

    def save(self, source_url: str, step: str, digest: str, doc: dict[str, Any]) -> None:
        storage.write_bytes_atomic(self.value_url(source_url, step, digest), json.dumps(
            {"format": FORMAT, **doc, **self.identity(source_url, step, digest)}, sort_keys=True).encode())

    def load(self, source_url: str, step: str, digest: str) -> dict[str, Any] | None:
        """The step's stored document for this video and settings, or None: missing, unreadable,
        an older format, or refused (made for another output, source, step or settings, or naming
        a path this video's value cannot hold: :meth:`value_problem`; a warning names the field)."""
        url = self.value_url(source_url, step, digest)
        try:
            doc = json.loads(storage.read_bytes(url))
        except FileNotFoundError:
            return None
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            return None
        problem = next((f"{name}: made for {str(doc.get(name))[-80:]!r}, not {want[-80:]!r}"
                        for name, want in self.identity(source_url, step, digest).items() if doc.get(name) != want),
                       None)
        if problem is None and doc.get("kind") == "clips":
            problem = self.value_problem(source_url, doc.get("value"))
        if problem is not None:
            log.warning("work area: the stored %s value of %s is refused (%s); it is computed again",
                        step, storage.redact(source_url), storage.redact(problem))
            return None
        return doc

    def value_problem(self, source_url: str, value: Any) -> str | None:
        """Why a stored transcode value (``result_doc``) must not be used for ``source_url``, naming
        the field; None when every name in it is this video's own. Its ``source_video`` (and each
        clip's) must be the source, its ``rel_path`` the source's path under ``input_path``, and each
        byte reference exactly what :class:`VideoSpill` names for that clip: in this video's
        ``bytes/<token>/`` folder, with the clip's own layout files as the only alternates."""
        if not isinstance(value, dict):
            return "value: not an object"
        if value.get("source_video") != source_url:
            return "value.source_video: not the partition's source"
        clips = value.get("clips")
        if not isinstance(clips, list):
            return "value.clips: not a list"
        errors = value.get("errors")
        never_written = not clips and isinstance(errors, dict) and any(k in errors for k in UNWRITABLE_FAILURES)
        if not never_written:  # a value the writer may write: its rel_path becomes document names
            problem = self._rel_problem(source_url, value.get("rel_path"))
            if problem:
                return f"value.rel_path: {problem}"
        for i, clip in enumerate(clips):
            problem = self._clip_problem(source_url, clip)
            if problem:
                return f"value.clips[{i}].{problem}"
        return None

    def _rel_problem(self, source_url: str, rel: Any) -> str | None:
        try:
            urls.resolve_under(self.output, rel)
        except ValueError as exc:
            return str(exc)
        if self.input_path:
            try:
                expected = urls.relative_to(self.input_path, source_url)
            except ValueError:
                expected = None
            return None if rel == expected else "not the source's path under input_path"
        tail = urls.components(source_url)[1][-len(rel.split("/")):]
        return None if "/".join(tail) == rel else "not the end of the source's path"

    def _clip_problem(self, source_url: str, clip: Any) -> str | None:
        if not isinstance(clip, dict) or not isinstance(clip.get("span"), list) or len(clip["span"]) != 5:
            return "span: not a clip document"
        if clip.get("source_video") != source_url:
            return "source_video: not the partition's source"
        f0, f1 = clip["span"][2:4]
        if not (_is_index(f0) and _is_index(f1)):
            return "span: frames are not indices"
        uid = str(clip_uuid(source_url, f0, f1))
        layout_names = {"encoded": (f"{uid}.mp4", ("clips", "filtered_clips"), f"{uid}.mp4"),
                        "model_frames": (f"{uid}.frames.npz", (), "")}
        for name, (file_name, folders, layout_name) in layout_names.items():
            problem = self._ref_problem(source_url, clip.get(name), file_name,
                                        [storage.join(self.output, d, layout_name) for d in folders])
            if problem:
                return f"{name}.{problem}"
        windows = clip.get("windows")
        if not isinstance(windows, list):
            return "windows: not a list"
        for j, w in enumerate(windows):
            if not isinstance(w, dict) or not (_is_index(w.get("start_frame")) and _is_index(w.get("end_frame"))):
                return f"windows[{j}]: not a window with frame indices"
            name = f"{w.get('start_frame')}_{w.get('end_frame')}.webp"
            problem = self._ref_problem(source_url, w.get("preview"), f"{uid}/{name}",
                                        [storage.join(self.output, "previews", uid, name)])
            if problem:
                return f"windows[{j}].preview.{problem}"
        return None

    def _ref_problem(self, source_url: str, ref: Any, file_name: str, alternates: list[str]) -> str | None:
        """A stored byte reference: inline bytes, or exactly ``bytes/<token>/<file_name>`` of this
        video with exactly ``alternates`` (the clip's own layout names)."""
        if ref is None or (isinstance(ref, dict) and set(ref) == {"b64"}):
            return None
        if not isinstance(ref, dict) or set(ref) != {"url", "size", "alternates"}:
            return "url: not a byte reference"
        try:
            key = urls.key_under(self.bytes_dir(source_url), ref["url"])
        except ValueError:
            return "url: outside this video's bytes folder in the work area"
        token, _, rest = key.partition("/")
        if not _TOKEN_RE.match(token) or rest != file_name:
            return f"url: not this clip's name in the work area ({file_name})"
        if ref["alternates"] != alternates:
            return "alternates: not this clip's own files in the layout"
        if not isinstance(ref["size"], int) or isinstance(ref["size"], bool) or ref["size"] < 0:
            return "size: not a byte count"
        return None

    def bytes_problem(self, source_url: str, url: str) -> str | None:
        """Why the bytes found at ``url`` must not be read or moved as this video's (None when they
        may): a canonical name in its ``bytes/`` folder or under the output and, locally, a regular
        file there (not a link, nor under a linked folder, leading out)."""
        if urls.is_inside(self.bytes_dir(source_url), url):
            return urls.regular_file_problem(self.bytes_dir(source_url), url)
        return urls.regular_file_problem(self.output, url)

    def token_lock_url(self, source_url: str, token: str) -> str:
        return storage.join(self.bytes_dir(source_url), f"{token}.lock")

    def remove_bytes(self, result: VideoResult, *, max_age_s: float = temp_files.TEMP_MAX_AGE_S) -> None:
        """After a video is written: the bytes its result spilled that are still here (clips not
        uploaded, previews of filtered clips), and the spill folders of other transcodes of this
        video that no stored value references and no live transcode holds (locally: its shared
        lock; on object stores, which have no locks: older than ``max_age_s``). Only names in the
        video's own ``bytes/`` folder, compared by path component, are ever removed."""
        folder = self.video_dir(result.source_video)
        bytes_dir = storage.join(folder, "bytes")
        refs = [c.encoded for c in result.clips] + [c.model_frames for c in result.clips] + [
            w.preview for c in result.clips for w in c.windows]
        mine: dict[str, str] = {}  # url -> its key under bytes/
        for ref in refs:
            if isinstance(ref, SpilledBytes):
                try:
                    mine[ref.path] = urls.key_under(bytes_dir, ref.path)
                except ValueError:
                    log.warning("work area: %s is not in %s; not removed", storage.redact(ref.path),
                                storage.redact(bytes_dir))
        leftovers = [u for u in mine if storage.file_info(u) is not None]
        files = storage.list_files(bytes_dir)
        referenced = {m for doc in files_referencing_tokens(self, folder) for m in doc}
        by_token: dict[str, list[str]] = {}
        for url in files:
            token = urls.relative_to(bytes_dir, url).split("/", 1)[0].removesuffix(".lock")
            by_token.setdefault(token, []).append(url)
        now = time.time()
        for token, found in by_token.items():
            if token in referenced or not _TOKEN_RE.match(token):
                continue
            if storage.is_local(folder):
                with storage.lock(self.token_lock_url(result.source_video, token)) as free:
                    if free:
                        leftovers += found
            else:
                ages = [now - info.modified for info in map(storage.file_info, found) if info and info.modified]
                if ages and min(ages) >= max_age_s:
                    leftovers += found
        # this transcode is over (its bytes are written or gone): its lock file goes too
        my_tokens = {key.split("/", 1)[0] for key in mine.values()}
        leftovers += [u for t in my_tokens for u in by_token.get(t, []) if u.endswith(".lock")]
        storage.remove_files(leftovers, prune_empty_dirs_under=folder)
        storage.prune_empty_parents(mine, folder)  # the folders of the bytes the writer moved out


_TOKEN_RE = re.compile(r"^[0-9a-f]{16}$")


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**9
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

        alternates = tuple(storage.join(self.output_path, d, f"{clip_uuid}.mp4")
                           for d in (layout.CLIPS, layout.FILTERED_CLIPS))
        return SpilledBytes.write(data, self.work.clip_url(self.source_url, self.token, clip_uuid), alternates)

    def preview(self, clip_uuid: str, start_frame: int, end_frame: int, data: bytes) -> SpilledBytes:
        from . import layout

        alternate = storage.join(self.output_path, layout.PREVIEWS, clip_uuid, f"{start_frame}_{end_frame}.webp")
        return SpilledBytes.write(data, self.work.preview_url(self.source_url, self.token, clip_uuid, start_frame,
                                                              end_frame), (alternate,))

    def frames(self, clip_uuid: str, data: bytes) -> SpilledBytes:
        """The frames the model steps need (``models.frame_store``), kept until the clip is written."""
        return SpilledBytes.write(data, self.work.frames_url(self.source_url, self.token, clip_uuid))
