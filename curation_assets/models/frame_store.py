"""The model frames of one clip, as the frame tap stores them beside the clip.

One uncompressed ``.npz`` per clip (numpy's zip of ``.npy`` arrays, read without pickle): a JSON
``meta`` entry, and per model the frames it gets, already sampled and resized the way the model
would have them from the clip:

* ``embedding``: uint8 ``(T, R, R, 3)``, the Cosmos-Embed1 input frames (or, in ``meta``, why the
  clip has none: too short);
* ``aesthetic``: uint8 ``(N, H, W, 3)``, the 1 fps frames with their short side at CLIP's size;
* ``caption_jpeg`` / ``caption_offsets``: the JPEG images of every window's 2 fps frames,
  concatenated, and where each one starts; ``meta`` maps windows to images.

``meta`` also holds each model's :class:`EmbeddingFrames` / :class:`AestheticFrames` /
:class:`CaptionFrames` spec: a model step uses the stored frames only when the spec equals its
own, and otherwise decodes the clip. The file lives in the work area, not the output, but is
still read as untrusted: every shape, index and offset is checked (:class:`FrameStoreError`).
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..core.model import as_source
from .frames import AESTHETIC_FPS, CAPTION_FPS, EMBEDDING_FPS, MAX_REDECODE_FPS

FORMAT_VERSION = 1

__all__ = [
    "AestheticFrames",
    "CaptionFrames",
    "EmbeddingFrames",
    "FrameStoreError",
    "StoredFrames",
]


class FrameStoreError(ValueError):
    """Stored model frames that cannot be used (damaged, or not what the reader expects)."""


@dataclass(frozen=True)
class EmbeddingFrames:
    """``num_frames`` frames picked by ``frames.embedding_indices``, resized to ``resolution``²."""

    num_frames: int
    resolution: int
    fps: float = EMBEDDING_FPS
    max_fps: float = MAX_REDECODE_FPS


@dataclass(frozen=True)
class AestheticFrames:
    """Frames sampled at ``fps`` over the whole clip, short side resized to ``short_side``."""

    short_side: int
    fps: float = AESTHETIC_FPS


@dataclass(frozen=True)
class CaptionFrames:
    """Each window's frames sampled at ``fps``, as JPEG (``jpeg_quality``, long side <= ``max_side``)."""

    jpeg_quality: int
    max_side: int | None = None
    fps: float = CAPTION_FPS


def _frames_array(value: Any, what: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3 or 0 in arr.shape[1:]:
        raise FrameStoreError(f"{what}: expected uint8 (N, H, W, 3) frames, got {arr.dtype} {arr.shape}")
    return arr


def _int_list(value: Any, what: str, limit: int) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise FrameStoreError(f"{what}: expected a list of integers")
    if any(v < 0 or v >= limit for v in value):
        raise FrameStoreError(f"{what}: index out of range 0..{limit - 1}")
    return value


class StoredFrames:
    """The frames stored for one clip: build with :meth:`to_bytes`, read with :meth:`load`."""

    def __init__(self, meta: dict[str, Any], arrays: Any) -> None:
        self.meta = meta
        self._arrays = arrays

    # -- writing ------------------------------------------------------------------------------
    @staticmethod
    def to_bytes(
        num_frames: int,
        *,
        embedding: tuple[EmbeddingFrames, list[int], np.ndarray | None, str | None] | None = None,
        aesthetic: tuple[AestheticFrames, list[int], np.ndarray] | None = None,
        caption: (tuple[CaptionFrames, list[tuple[int, int]], list[list[int]], list[list[int]], list[bytes]]
                  | None) = None,
    ) -> bytes:
        """Serialise one clip's model frames.

        ``embedding``: (spec, frame indices, frames or None, why there are none: the too-short
        message); ``aesthetic``: (spec, frame indices, frames); ``caption``: (spec, windows, frame
        indices per window, image numbers per window, the JPEG images).
        """
        meta: dict[str, Any] = {"version": FORMAT_VERSION, "num_frames": int(num_frames)}
        arrays: dict[str, np.ndarray] = {}
        if embedding is not None:
            spec, indices, frames, too_short = embedding
            meta["embedding"] = {"spec": asdict(spec), "indices": [int(i) for i in indices], "too_short": too_short}
            if frames is not None:
                arrays["embedding"] = _frames_array(frames, "embedding")
        if aesthetic is not None:
            a_spec, a_indices, a_frames = aesthetic
            meta["aesthetic"] = {"spec": asdict(a_spec), "indices": [int(i) for i in a_indices]}
            arrays["aesthetic"] = _frames_array(a_frames, "aesthetic")
        if caption is not None:
            c_spec, windows, c_indices, images, jpegs = caption
            meta["caption"] = {"spec": asdict(c_spec), "windows": [[int(s), int(e)] for s, e in windows],
                               "indices": [[int(i) for i in w] for w in c_indices],
                               "images": [[int(i) for i in w] for w in images]}
            arrays["caption_jpeg"] = np.frombuffer(b"".join(jpegs), dtype=np.uint8)
            arrays["caption_offsets"] = np.cumsum([0] + [len(j) for j in jpegs], dtype=np.int64)
        arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), dtype=np.uint8)
        buf = io.BytesIO()
        np.savez(buf, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as its bool flag
        return buf.getvalue()

    # -- reading ------------------------------------------------------------------------------
    @classmethod
    def load(cls, data: Any) -> StoredFrames:
        """From bytes or a ``core.model.SpilledBytes`` (read from its file, arrays loaded lazily)."""
        try:
            source = as_source(data)  # a local path, or the bytes (object stores, in memory)
            arrays = np.load(source if isinstance(source, str) else io.BytesIO(source), allow_pickle=False)
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise FrameStoreError(f"stored model frames unreadable: {exc}") from exc
        if not hasattr(arrays, "files") or "meta" not in arrays.files:
            raise FrameStoreError("stored model frames have no meta entry")
        try:
            meta = json.loads(np.asarray(arrays["meta"], dtype=np.uint8).tobytes().decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise FrameStoreError(f"stored model frames: meta is not JSON ({exc})") from exc
        if not isinstance(meta, dict) or meta.get("version") != FORMAT_VERSION:
            version = meta.get("version") if isinstance(meta, dict) else meta
            raise FrameStoreError(f"stored model frames: unknown format {version!r}")
        if not isinstance(meta.get("num_frames"), int) or meta["num_frames"] < 1:
            raise FrameStoreError("stored model frames: no frame count")
        return cls(meta, arrays)

    @property
    def num_frames(self) -> int:
        return int(self.meta["num_frames"])

    def _section(self, name: str, spec: Any) -> dict[str, Any] | None:
        section = self.meta.get(name)
        if not isinstance(section, dict) or section.get("spec") != asdict(spec):
            return None
        return section

    def _array(self, name: str, count: int) -> np.ndarray:
        if name not in self._arrays.files:
            raise FrameStoreError(f"stored model frames: no {name} frames")
        arr = _frames_array(self._arrays[name], name)
        if arr.shape[0] != count:
            raise FrameStoreError(f"stored model frames: {arr.shape[0]} {name} frames for {count} indices")
        return arr

    def embedding(self, spec: EmbeddingFrames) -> tuple[np.ndarray | None, str | None] | None:
        """``(frames (T, R, R, 3), None)``, ``(None, too-short message)``, or None when the clip's
        frames were stored for another spec (or none were)."""
        section = self._section("embedding", spec)
        if section is None:
            return None
        too_short = section.get("too_short")
        if too_short is not None:
            if not isinstance(too_short, str):
                raise FrameStoreError("stored model frames: embedding message is not text")
            return None, too_short
        indices = _int_list(section.get("indices"), "embedding indices", self.num_frames)
        if len(indices) != spec.num_frames:
            raise FrameStoreError(f"stored model frames: {len(indices)} embedding frames, {spec.num_frames} expected")
        frames = self._array("embedding", len(indices))
        if frames.shape[1:3] != (spec.resolution, spec.resolution):
            raise FrameStoreError(f"stored model frames: embedding frames {frames.shape[1:3]}, not {spec.resolution}²")
        return frames, None

    def aesthetic(self, spec: AestheticFrames) -> np.ndarray | None:
        """Frames ``(N, H, W, 3)`` with ``min(H, W) == spec.short_side``, or None (other spec)."""
        section = self._section("aesthetic", spec)
        if section is None:
            return None
        indices = _int_list(section.get("indices"), "aesthetic indices", self.num_frames)
        frames = self._array("aesthetic", len(indices))
        if min(frames.shape[1:3]) != spec.short_side:
            raise FrameStoreError(f"stored model frames: aesthetic frames {frames.shape[1:3]}, short side not "
                                  f"{spec.short_side}")
        return frames

    def caption_images(self, spec: CaptionFrames, windows: list[tuple[int, int]]) -> list[list[bytes]] | None:
        """JPEG images per window, for exactly these windows; None when stored for another spec or
        other windows."""
        section = self._section("caption", spec)
        if section is None:
            return None
        stored = section.get("windows")
        if stored != [[int(s), int(e)] for s, e in windows]:
            return None
        offsets = np.asarray(self._arrays["caption_offsets"]) if "caption_offsets" in self._arrays.files else None
        blob = np.asarray(self._arrays["caption_jpeg"]) if "caption_jpeg" in self._arrays.files else None
        if offsets is None or blob is None or offsets.ndim != 1 or blob.dtype != np.uint8 or blob.ndim != 1:
            raise FrameStoreError("stored model frames: caption images missing")
        offsets = offsets.astype(np.int64)
        if len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(blob) or np.any(np.diff(offsets) <= 0):
            raise FrameStoreError("stored model frames: caption image offsets damaged")
        images = section.get("images")
        if not isinstance(images, list) or len(images) != len(windows):
            raise FrameStoreError("stored model frames: caption windows and images disagree")
        data = blob.tobytes()
        out = []
        for per_window in images:
            numbers = _int_list(per_window, "caption images", len(offsets) - 1)
            out.append([data[offsets[k]:offsets[k + 1]] for k in numbers])
        return out
