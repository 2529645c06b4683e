"""The resource budget of one video, checked from its stream header before any frame is decoded.

A small file can promise frames of any size (a few 16000x16000 MJPEG frames of one colour fit in
a small MKV), their transcode peaks at several GB, and a process killed for memory takes every
other video of its batch with it. Opening a container with PyAV reads the header without decoding a
frame, so the probe's width, height and ``num_frames`` are known at no cost; a video whose frames
(``max_frame_pixels``) or whose whole decode (``max_video_pixels``, width x height x frames) are
over the budget fails alone, with the reason, before the scene pass or the transcode touches it.
The video-level bound is what the decode will cost in time, not in memory: frames are streamed,
one video after the other.
"""

from __future__ import annotations

from .model import VideoMetadata
from .options import PipelineOptions

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
