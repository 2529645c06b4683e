"""Animated WebP previews of a clip's windows (spec: "Previews", "Windows").

The reference renders each window with ``ffmpeg -vf fps=<target_fps>,scale=-1:<height>`` and
libwebp (quality 50, compression level 6, loop forever). Here the frames come off the single
source decode in :mod:`curation_assets.core.transcode`: :class:`PreviewCollector` sees every
frame of a clip once, keeps a small scaled copy of the few frames the fps filter could pick, and
at the end of the clip (when its frame count, hence its windows, is known) picks per window the
frames ``fps`` would pick (checked frame for frame against libavfilter's ``fps``) and encodes
them. No extra decode, no temp files. Frames are scaled with swscale's bicubic filter (the
``scale`` filter's default) to the target height, width kept in proportion and rounded to even.
Each frame is a full lossy libwebp image inside an animated-WebP container (see
:func:`encode_webp` for why not libwebp's animation encoder).

Plain Python (PyAV, numpy, Pillow); no dagster.
"""

from __future__ import annotations

import io
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from PIL import Image

from .windows import MIN_REMAINDER, WINDOW_SIZE, compute_windows


@dataclass(frozen=True)
class PreviewOptions:
    """How previews are rendered; defaults are the reference's."""

    target_fps: float = 1.0
    target_height: int = 240
    quality: int = 50
    compression_level: int = 6


def preview_size(width: int, height: int, target_height: int) -> tuple[int, int]:
    """``scale=-1:<target_height>`` keeping the aspect ratio, with the width rounded to even."""
    if width <= 0 or height <= 0:
        raise ValueError(f"invalid frame size {width}x{height}")
    w = max(2, int(round(width * target_height / height / 2.0)) * 2)
    return w, int(target_height)


def _round_near(x: Fraction) -> int:
    """``av_rescale_q_rnd(..., AV_ROUND_NEAR_INF)``: halves round away from zero."""
    if x >= 0:
        return math.floor(x + Fraction(1, 2))
    return -math.floor(-x + Fraction(1, 2))


def _as_fraction(x: float | Fraction) -> Fraction:
    if isinstance(x, Fraction):
        return x
    return Fraction(x).limit_denominator(1_000_000)


def fps_filter_select(times: Sequence[Fraction | float], fps: Fraction | float,
                      end_time: Fraction | float) -> list[int]:
    """Indices of the frames FFmpeg's ``fps`` filter outputs (``round=near``, ``eof_action=round``).

    ``times`` are presentation times relative to the window's first frame (so ``times[0] == 0``)
    in seconds, ``end_time`` is where the window ends (last frame time plus its duration). Each
    output slot ``k`` (time ``k / fps``) takes the last frame whose rounded slot is ``<= k``;
    slots after the last frame repeat it until ``round(end_time * fps)``. Frames may repeat when
    the source is slower than ``fps``.
    """
    if not times:
        return []
    rate = _as_fraction(fps)
    slots = [_round_near(_as_fraction(t) * rate) for t in times]
    next_slot = slots[0]
    candidate = 0
    out: list[int] = []
    for i in range(1, len(times)):
        while slots[i] > next_slot:
            out.append(candidate)
            next_slot += 1
        candidate = i
    end_slot = _round_near(_as_fraction(end_time) * rate)
    while next_slot < end_slot:
        out.append(candidate)
        next_slot += 1
    return out


def _to_pil(frame: Any) -> Image.Image:
    if isinstance(frame, Image.Image):
        return frame if frame.mode == "RGB" else frame.convert("RGB")
    arr = np.asarray(frame)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected uint8 HxWx3 frames, got {arr.dtype} {arr.shape}")
    return Image.fromarray(np.ascontiguousarray(arr))


def _riff_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """The chunks of a RIFF/WEBP file as ``(fourcc, payload)``."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise ValueError("not a WebP file")
    chunks = []
    pos = 12
    while pos + 8 <= len(data):
        fourcc = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        chunks.append((fourcc, data[pos + 8 : pos + 8 + size]))
        pos += 8 + size + (size & 1)
    return chunks


def _chunk(fourcc: bytes, payload: bytes) -> bytes:
    return fourcc + struct.pack("<I", len(payload)) + payload + (b"\0" if len(payload) & 1 else b"")


def _u24(value: int) -> bytes:
    return struct.pack("<I", value)[:3]


def encode_webp(
    frames: Sequence[Any],
    fps: float,
    quality: int = 50,
    compression_level: int = 6,
) -> bytes:
    """Encode frames (uint8 HxWx3 RGB arrays or PIL images) as an animated WebP that loops forever.

    Lossy, ``quality`` 0-100 and ``compression_level`` 0-6 (libwebp's ``method``), each frame
    shown for ``1 / fps`` seconds, all frames the size of the first.

    Every frame is encoded by libwebp (through Pillow) as a complete image and the frames are put
    in an animation container (``VP8X`` + ``ANIM`` + one full-canvas ``ANMF`` per frame, no
    blending, loop count 0), which any WebP reader plays. libwebp's animation encoder
    (``WebPAnimEncoder``, what Pillow's ``save_all`` and FFmpeg's ``libwebp_anim`` use) also tries
    sub-frame and dispose candidates for every frame: at compression level 6 that costs many times
    the CPU for files barely smaller, which would make previews cost as much as the clips' H.264
    encode (the figures: README, "Performance").
    """
    if not frames:
        raise ValueError("encode_webp needs at least one frame")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    images = [_to_pil(f) for f in frames]
    width, height = images[0].size
    duration_ms = max(1, min(0xFFFFFF, int(round(1000.0 / fps))))
    body = [
        _chunk(b"VP8X", bytes([0x02, 0, 0, 0]) + _u24(width - 1) + _u24(height - 1)),  # animation flag
        _chunk(b"ANIM", struct.pack("<IH", 0xFFFFFFFF, 0)),  # white background, loop forever
    ]
    for img in images:
        if img.size != (width, height):
            img = img.resize((width, height), Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        img.save(buf, format="WEBP", lossless=False, quality=int(quality), method=int(compression_level))
        frame_data = b"".join(
            _chunk(fourcc, payload)
            for fourcc, payload in _riff_chunks(buf.getvalue())
            if fourcc in (b"ALPH", b"VP8 ", b"VP8L")
        )
        header = _u24(0) + _u24(0) + _u24(width - 1) + _u24(height - 1) + _u24(duration_ms) + bytes([0x02])
        body.append(_chunk(b"ANMF", header + frame_data))
    payload = b"WEBP" + b"".join(body)
    return b"RIFF" + struct.pack("<I", len(payload)) + payload


class PreviewCollector:
    """Collects one clip's preview frames while the clip's frames stream past, once each.

    Call :meth:`add` for every frame of the clip in order (clip-relative index, presentation
    time in seconds, the ``av.VideoFrame``), then :meth:`finish`. Windows are only final once
    the clip's frame count is known (a short remainder joins the previous window), so a frame
    is kept (scaled to the preview size, RGB) when ``fps`` could pick it under any window that
    may still contain it: its own 256-frame block, or the previous block while the remainder
    could still be merged into it. That is about ``target_fps`` small frames per second of clip.
    """

    def __init__(self, options: PreviewOptions, frame_duration: Fraction | float) -> None:
        self.options = options
        self.frame_duration = _as_fraction(frame_duration)
        self._rate = _as_fraction(options.target_fps)
        self._times: list[Fraction] = []
        self._kept: dict[int, np.ndarray] = {}
        self._pending: Any = None  # (index, frame) whose keep decision waits for the next frame
        self._size: tuple[int, int] | None = None

    def _slot(self, t: Fraction) -> int:
        return _round_near(t * self._rate)

    def _scaled(self, frame: Any) -> np.ndarray:
        if self._size is None:
            self._size = preview_size(frame.width, frame.height, self.options.target_height)
        w, h = self._size
        # The scale filter's default (bicubic); reformat releases the GIL.
        return frame.reformat(width=w, height=h, format="rgb24", interpolation="BICUBIC").to_ndarray()

    def _origins(self, i: int) -> list[int]:
        block = (i // WINDOW_SIZE) * WINDOW_SIZE
        origins = [block]
        if block >= WINDOW_SIZE and i - block < MIN_REMAINDER:
            origins.append(block - WINDOW_SIZE)
        return origins

    def _keeps(self, i: int, next_time: Fraction | None) -> bool:
        if next_time is None or i % WINDOW_SIZE in (0, WINDOW_SIZE - 1):
            return True
        t = self._times[i]
        for o in self._origins(i):
            t0 = self._times[o]
            if self._slot(next_time - t0) != self._slot(t - t0):
                return True
        return False

    def _decide(self, i: int, frame: Any, next_time: Fraction | None) -> None:
        if self._keeps(i, next_time):
            if frame is None:
                raise ValueError(f"preview frame {i} is needed but was not decoded")
            self._kept[i] = self._scaled(frame)

    def _append_time(self, index: int, time: Fraction | float) -> Fraction:
        if index != len(self._times):
            raise ValueError(f"frames must be added in order: got {index}, expected {len(self._times)}")
        t = _as_fraction(time)
        if self._times and t <= self._times[-1]:
            t = self._times[-1] + self.frame_duration  # keep times strictly increasing
        self._times.append(t)
        return t

    def add(self, index: int, time: Fraction | float, frame: Any) -> None:
        """Frame ``index``; ``frame`` may be None for one :meth:`needed` does not list."""
        t = self._append_time(index, time)
        if self._pending is not None:
            pi, pframe = self._pending
            self._decide(pi, pframe, t)
        self._pending = (index, frame)

    def needed(self, times: Sequence[Fraction | float]) -> set[int]:
        """The indices :meth:`add` keeps pixels of, for a clip whose frames have these times.

        Lets a decoder skip the frames no preview uses (non-reference frames can be dropped
        undecoded) while every kept frame is the same as with a full decode."""
        plan = PreviewCollector(self.options, self.frame_duration)
        needed = set()
        for i, time in enumerate(times):
            t = plan._append_time(i, time)
            if i and plan._keeps(i - 1, t):
                needed.add(i - 1)
        if times:
            needed.add(len(times) - 1)
        return needed

    def finish(self) -> dict[tuple[int, int], bytes]:
        """Encode one animated WebP per window of the clip; ``{(start, end): webp bytes}``."""
        if self._pending is not None:
            pi, pframe = self._pending
            self._decide(pi, pframe, None)
            self._pending = None
        n = len(self._times)
        out: dict[tuple[int, int], bytes] = {}
        for start, end in compute_windows(n):
            t0 = self._times[start]
            rel = [t - t0 for t in self._times[start : end + 1]]
            picks = [start + j for j in fps_filter_select(rel, self._rate, rel[-1] + self.frame_duration)] or [start]
            frames = [self._kept[i] if i in self._kept else self._nearest_kept(i) for i in picks]
            out[(start, end)] = encode_webp(
                frames, float(self._rate), self.options.quality, self.options.compression_level
            )
        self._kept.clear()
        return out

    def _nearest_kept(self, i: int) -> np.ndarray:  # defensive; the keep rule covers every pick
        best = min(self._kept, key=lambda k: (abs(k - i), k))
        return self._kept[best]
