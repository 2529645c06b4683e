"""Decode frames from in-memory clip bytes with PyAV (uint8 RGB numpy arrays).

The sampling follows the reference (NeMo Curator ``decoder_utils.extract_frames`` with the
``sequence`` policy) so that the same clip gives the same frames:

* presentation timestamps are read by demuxing (``packet.pts * time_base``, sorted, float32);
* sample times are ``arange(ts[0], ts[-1] + 0.5 / fps, 1 / fps)`` (float32);
* each sample takes the frame with the closest timestamp (ties go to the earlier frame, samples
  past the last frame take the last frame);
* a frame chosen by several samples appears that many times (supersampling repeats frames).

Frames are then decoded once, and only the chosen ones are converted to RGB, so a long clip does
not cost one RGB array per decoded frame.

The index rules (:func:`embedding_indices`, :func:`window_indices`) take the timestamps alone, so
the frame tap of ``models.tap`` applies them to the timestamps a clip will have, on the single
decode pass, and gets the same indices without decoding the clip.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from fractions import Fraction
from typing import TypeVar

import av
import numpy as np

from ..core.model import as_source

T = TypeVar("T")

EMBEDDING_FPS = 2.0
AESTHETIC_FPS = 1.0
CAPTION_FPS = 2.0
# The reference doubles the rate while a clip yields too few frames and gives up above 20 fps.
MAX_REDECODE_FPS = 20.0


class FrameDecodeError(ValueError):
    """The clip bytes could not be decoded into the frames a model needs."""


class TooFewFrames(FrameDecodeError):
    """The clip decoded, but it is too short to give the frames a model needs."""


def _open(data: bytes) -> av.container.InputContainer:
    """``data``: the clip's bytes, or a ``core.model.SpilledBytes`` (opened from its file)."""
    if not data:
        raise FrameDecodeError("empty clip buffer")
    try:
        source = as_source(data)
        return av.open(source if isinstance(source, str) else io.BytesIO(source), mode="r")
    except (av.FFmpegError, ValueError, OSError) as exc:  # pragma: no cover - depends on FFmpeg message
        raise FrameDecodeError(f"cannot open clip: {exc}") from exc


def pts_seconds(pts: Sequence[int], time_base: Fraction | float) -> np.ndarray:
    """Presentation timestamps as the reference reads them: ``pts * time_base`` in float64, then
    float32, sorted."""
    tb = float(time_base)
    return np.sort(np.asarray([float(p) * tb for p in pts], dtype=np.float32))


def frame_timestamps(data: bytes, stream_index: int = 0) -> np.ndarray:
    """Sorted presentation timestamps (seconds, float32) of every frame, read by demuxing only."""
    with _open(data) as container:
        if not container.streams.video:
            raise FrameDecodeError("clip has no video stream")
        stream = container.streams.video[stream_index]
        if stream.time_base is None:
            raise FrameDecodeError("video stream has no time base")
        try:
            pts = [p.pts for p in container.demux(stream) if p.pts is not None]
        except av.FFmpegError as exc:
            raise FrameDecodeError(f"demuxing failed: {exc}") from exc
        return pts_seconds(pts, stream.time_base)


def closest_indices(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Index of the closest element of sorted ``src`` for each of sorted ``dst`` (ties: left)."""
    if len(src) == 1:
        return np.zeros(len(dst), dtype=np.int64)
    right = np.clip(np.searchsorted(src, dst), 1, len(src) - 1)
    closest = right - 1
    right_closer = np.abs(dst - src[right]) < np.abs(dst - src[closest])
    closest[right_closer] = right[right_closer]
    closest[dst >= src[-1]] = len(src) - 1
    return closest


def sample_grid(start: np.float32, last: np.float32, fps: float) -> np.ndarray:
    """The reference's sample times: ``arange(start, last + 0.5 / fps, 1 / fps)`` in float32.

    Element ``k`` depends on ``start`` and ``fps`` only (numpy fills ``start + k * step``), so a
    longer ``last`` gives the same times and more of them; the frame tap relies on that."""
    interval = 1.0 / fps
    return np.arange(start, last + interval * 0.5, interval, dtype=np.float32)


def sample_times(timestamps: np.ndarray, fps: float) -> np.ndarray:
    """Frame indices (with repeats) that sampling ``timestamps`` at ``fps`` selects."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if len(timestamps) == 0:
        return np.zeros(0, dtype=np.int64)
    return closest_indices(timestamps, sample_grid(timestamps[0], timestamps[-1], fps))


def embedding_rates(fps: float = EMBEDDING_FPS, max_fps: float = MAX_REDECODE_FPS) -> list[float]:
    """The rates :func:`embedding_indices` may sample at: ``fps``, doubled while at most ``max_fps``."""
    rates = [fps]
    while rates[-1] * 2 <= max_fps:
        rates.append(rates[-1] * 2)
    return rates


def embedding_indices(
    timestamps: np.ndarray, num_frames: int = 8, fps: float = EMBEDDING_FPS, max_fps: float = MAX_REDECODE_FPS
) -> list[int]:
    """The ``num_frames`` frame indices a video-embedding model gets, as the reference picks them.

    Sampled at ``fps`` (2); while that yields fewer than ``num_frames`` the rate is doubled up to
    ``max_fps`` (20); then ``sample_evenly``. A clip too short even at ``max_fps`` raises
    ``TooFewFrames``.
    """
    if len(timestamps) == 0:
        raise FrameDecodeError("clip has no frames")
    rate = fps
    idx = sample_times(timestamps, rate)
    while len(idx) < num_frames:
        rate *= 2
        if rate > max_fps:
            raise TooFewFrames(f"clip too short: {len(idx)} frames at up to {rate / 2:g} fps, {num_frames} needed")
        idx = sample_times(timestamps, rate)
    return [int(i) for i in sample_evenly(list(idx), num_frames)]


def window_indices(
    timestamps: np.ndarray, windows: Sequence[tuple[int, int | None]], fps: float | None
) -> list[np.ndarray]:
    """Frame indices (with repeats) sampled at ``fps`` inside each inclusive ``(start, end)`` window
    (``end`` None: the last frame); every frame of the window when ``fps`` is None. The sample times
    start at the window's first frame."""
    wanted: list[np.ndarray] = []
    for start, end in windows:
        end = len(timestamps) - 1 if end is None else min(int(end), len(timestamps) - 1)
        start = max(0, int(start))
        if start > end:
            wanted.append(np.zeros(0, dtype=np.int64))
            continue
        sub = timestamps[start : end + 1]
        local = np.arange(len(sub)) if fps is None else sample_times(sub, fps)
        wanted.append(local + start)
    return wanted


def _decode_indices(
    data: bytes,
    wanted: Sequence[np.ndarray],
    *,
    size: tuple[int, int] | None = None,
    threads: int = 1,
    stream_index: int = 0,
) -> list[list[np.ndarray]]:
    """Decode once and return, for each index list in ``wanted``, those frames (repeats kept).

    Indices count decoded frames in presentation order, the way the reference counts them.
    """
    need: set[int] = set()
    for idx in wanted:
        need.update(int(i) for i in idx)
    last = max(need) if need else -1
    got: dict[int, np.ndarray] = {}

    def convert(frame: av.VideoFrame) -> np.ndarray:
        if size is not None:
            frame = frame.reformat(width=size[0], height=size[1])
        return frame.to_ndarray(format="rgb24")

    decoded = -1
    tail: av.VideoFrame | None = None
    if last >= 0:
        with _open(data) as container:
            stream = container.streams.video[stream_index]
            if threads != 1:
                stream.thread_type = "AUTO"
                stream.thread_count = max(0, threads)
            try:
                for i, frame in enumerate(container.decode(stream)):
                    decoded, tail = i, frame
                    if i in need:
                        got[i] = convert(frame)
                    if i >= last:
                        break
            except av.FFmpegError as exc:
                raise FrameDecodeError(f"decoding failed: {exc}") from exc
    missing = need - set(got)
    if missing:
        if tail is None or min(missing) <= decoded:
            raise FrameDecodeError(f"the clip decoded {decoded + 1} frames; its timestamps promise at least {last + 1}")
        # Only the tail is missing (packets at the end of the stream that gave no frame): those
        # samples take the last decoded frame, the closest one that exists.
        last_frame = got.get(decoded)
        if last_frame is None:
            last_frame = convert(tail)
        for i in missing:
            got[i] = last_frame
    return [[got[int(i)] for i in idx] for idx in wanted]


def decode_frames(
    data: bytes,
    fps: float | None = None,
    *,
    start_frame: int = 0,
    end_frame: int | None = None,
    size: tuple[int, int] | None = None,
    threads: int = 1,
) -> list[np.ndarray]:
    """Frames of ``data`` (uint8 ``(H, W, 3)`` RGB) sampled at ``fps``; every frame when ``fps`` is None.

    ``start_frame``/``end_frame`` (inclusive, counted in presentation order) restrict sampling to
    a window; the sample times then start at the window's first frame. ``size`` = ``(width,
    height)`` rescales the returned frames.
    """
    return decode_windows(data, [(start_frame, end_frame)], fps, size=size, threads=threads)[0]


def decode_windows(
    data: bytes,
    windows: Sequence[tuple[int, int | None]],
    fps: float | None,
    *,
    size: tuple[int, int] | None = None,
    threads: int = 1,
) -> list[list[np.ndarray]]:
    """Frames sampled at ``fps`` inside each inclusive ``(start_frame, end_frame)`` window, one decode."""
    ts = frame_timestamps(data)
    if len(ts) == 0:
        raise FrameDecodeError("clip has no frames")
    return _decode_indices(data, window_indices(ts, windows, fps), size=size, threads=threads)


def sample_evenly(frames: Sequence[T], n: int) -> list[T]:
    """``n`` frames spread over ``frames`` the way the reference picks Cosmos-Embed1 inputs.

    ``step = len(frames) // n``, then ``frames[::step][:n]`` (NeMo Curator
    ``CosmosEmbed1.formulate_input_frames``). Raises ``TooFewFrames`` when fewer than ``n``.
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if len(frames) < n:
        raise TooFewFrames(f"{len(frames)} frames, {n} needed")
    step = len(frames) // n
    return list(frames[::step][:n])


def frames_for_embedding(
    data: bytes,
    num_frames: int = 8,
    fps: float = EMBEDDING_FPS,
    *,
    max_fps: float = MAX_REDECODE_FPS,
    threads: int = 1,
) -> list[np.ndarray]:
    """``num_frames`` frames for a video-embedding model, as the reference builds them.

    Frames are sampled at ``fps`` (2); while that yields fewer than ``num_frames`` the rate is
    doubled (re-decoding) up to ``max_fps`` (20); then ``sample_evenly``. A clip too short even
    at ``max_fps`` raises ``TooFewFrames``.
    """
    chosen = embedding_indices(frame_timestamps(data), num_frames, fps, max_fps)
    return _decode_indices(data, [np.asarray(chosen)], threads=threads)[0]
