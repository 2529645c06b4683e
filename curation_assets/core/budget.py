"""The resource budget of one video, checked from its stream header before any frame is decoded.

A small file can promise frames of any size (a few 16000x16000 MJPEG frames of one colour fit in
a small MKV), their transcode peaks at several GB, and a process killed for memory takes every
other video of its batch with it. Opening a container with PyAV reads the header without decoding a
frame, so the probe's width, height and ``num_frames`` are known at no cost; a video whose frames
(``max_frame_pixels``) or whose whole decode (``max_video_pixels``, width x height x frames) are
over the budget fails alone, with the reason, before the scene pass or the transcode touches it.
The video-level bound is what the decode will cost in time, not in memory: frames are streamed,
one video after the other, and :func:`release_video_memory` hands a finished video's memory back
before the next one starts.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
from typing import Literal

from .model import VideoMetadata
from .options import PipelineOptions

log = logging.getLogger(__name__)

#: The error key of a video refused by its budget (in ``errors`` / ``error_details``).
BUDGET_ERROR_KEY = "budget"


def _pixels(n: int) -> str:
    """``33177600`` -> ``33.2 Mpx``: a pixel count a person reads at a glance."""
    for unit, scale in (("Tpx", 10**12), ("Gpx", 10**9), ("Mpx", 10**6)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} px"


def over_budget(metadata: VideoMetadata, options: PipelineOptions) -> str | None:
    """Why the video ``metadata`` describes (its probe) must not be decoded, or None when it fits."""
    if not metadata.width or not metadata.height:
        return None  # an incomplete header is the ``metadata`` error's business
    frame = metadata.width * metadata.height
    if options.max_frame_pixels and frame > options.max_frame_pixels:
        return (f"frames of {metadata.width}x{metadata.height} ({_pixels(frame)}) are over max_frame_pixels="
                f"{options.max_frame_pixels} ({_pixels(options.max_frame_pixels)}); not decoded")
    total = frame * (metadata.num_frames or 0)
    if options.max_video_pixels and total > options.max_video_pixels:
        return (f"{metadata.num_frames} frames of {metadata.width}x{metadata.height} are {_pixels(total)} to decode, "
                f"over max_video_pixels={options.max_video_pixels} ({_pixels(options.max_video_pixels)}); not decoded")
    return None


_LIBC: ctypes.CDLL | None | Literal[False] = None


def _malloc_trim() -> None:
    """Hand the C heap's free pages back to the system (glibc's ``malloc_trim``; elsewhere nothing)."""
    global _LIBC
    if _LIBC is None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _LIBC = libc if hasattr(libc, "malloc_trim") else False
        except OSError:
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


#: Frames from this size up (720p) make a video's leftovers worth a full garbage collection, which
#: takes a noticeable fraction of a second in a process holding Dagster and torch.
COLLECT_FROM_FRAME_PIXELS = 1280 * 720


def release_video_memory(metadata: VideoMetadata | None = None) -> None:
    """Called when a video is done: the pages the allocator keeps after a decode are handed back
    and, for frames of 720p and up (``metadata``: the video's probe), the reference cycles that
    still hold its frames (PyAV containers, frames held by tracebacks) are collected first, so a
    batch's resident memory is one video's, not the sum of its videos'."""
    try:
        if metadata is not None and (metadata.width or 0) * (metadata.height or 0) >= COLLECT_FROM_FRAME_PIXELS:
            gc.collect()
        _malloc_trim()
    except Exception:  # noqa: BLE001 - never fail a video for housekeeping
        log.debug("releasing a video's memory failed", exc_info=True)
