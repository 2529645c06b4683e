"""Which clip encoders this FFmpeg build can drive, and how a clip's encoder is set up from its
source: threads, pixel format, an even frame size for H.264, the mp4 time base and timestamp
rescaling. Used by the single pass (:mod:`.transcode`) and the per-clip encoder
(:mod:`.clip_encoder`). Plain Python (PyAV); no dagster.
"""

from __future__ import annotations

import logging
import math
from fractions import Fraction
from functools import cache

import av

from .cpus import usable_cores

log = logging.getLogger(__name__)

# Encoders the transcode knows how to drive; available_encoders() reports the usable subset.
KNOWN_ENCODERS = ("libx264", "libvpx-vp9", "h264_nvenc")
# Pixel formats passed to an encoder unchanged (8-bit 4:2:0); everything else becomes yuv420p.
_PASSTHROUGH_PIX_FMTS = ("yuv420p", "yuvj420p")


def auto_encoder_threads(encoder: str, cores: int | None = None) -> int:
    """Threads per clip encoder for ``encoder_threads=0``.

    libx264 gets 1.5 frame threads per core (x264's own auto rule, computed here so a
    quota-limited container on a big node does not get one thread per host CPU): with only as
    many frame threads as cores, each waits on the rows of the other's reference frame and the
    cores idle (README, "Performance"). Other encoders get one thread per core.
    """
    cores = cores or usable_cores()
    if encoder == "libx264":
        return max(1, (cores * 3) // 2)
    return cores


@cache
def _encoder_usable(name: str) -> bool:
    """True when ``name`` exists in this FFmpeg build and opens (NVENC needs a GPU with NVENC)."""
    try:
        codec = av.codec.Codec(name, "w")
    except Exception:
        return False
    try:
        ctx = av.codec.CodecContext.create(codec)
        if not isinstance(ctx, av.VideoCodecContext):  # not a video encoder: it has no frame size to set
            return False
        ctx.width, ctx.height = 256, 256
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = Fraction(1, 25)
        ctx.framerate = Fraction(25, 1)
        ctx.open()
        return True
    except Exception as exc:  # e.g. "Cannot load libcuda.so.1", "OpenEncodeSessionEx failed"
        log.debug("encoder %s not usable: %s", name, exc)
        return False


def available_encoders() -> list[str]:
    """The encoders of :data:`KNOWN_ENCODERS` that open on this machine."""
    return [name for name in KNOWN_ENCODERS if _encoder_usable(name)]


def target_pix_fmt(encoder: str, source_fmt: str | None) -> str:
    supported = [f.name for f in (av.codec.Codec(encoder, "w").video_formats or [])]
    if source_fmt in _PASSTHROUGH_PIX_FMTS and (not supported or source_fmt in supported):
        return source_fmt
    return "yuv420p"


def encodable_size(encoder: str, pix_fmt: str, width: int, height: int) -> tuple[int, int]:
    """H.264 cannot store 4:2:0 frames with an odd side (``ffmpeg -c:v libx264`` stops with
    "width not divisible by 2"): such sources are scaled down to the next even size (at most one
    pixel per side); VP9 and other formats keep the source size."""
    if encoder in ("libx264", "h264_nvenc") and pix_fmt in ("yuv420p", "yuvj420p", "nv12"):
        return max(2, width - width % 2), max(2, height - height % 2)
    return width, height


def mp4_time_base(time_base: Fraction) -> Fraction:
    """The time base the mp4 muxer gives a video stream created with ``time_base``.

    FFmpeg's mov muxer uses the stream's time-base denominator as the track timescale, doubled
    until it reaches 10000 (``movenc.c``, ``mov_init``); timestamps are rescaled exactly, since
    the timescale is a multiple of the denominator. A clip tap computes the clip's timestamps with
    this before the clip exists; ``clip_encoder.ClipMuxer`` checks it against the finished clip.
    """
    scale = Fraction(time_base).denominator
    while scale < 10000:
        scale *= 2
    return Fraction(1, scale)


def rescale(pts: int, src: Fraction, dst: Fraction) -> int:
    """``av_rescale_q`` (round to nearest, halves away from zero): exact for mp4_time_base."""
    x = Fraction(pts) * src / dst
    return math.floor(x + Fraction(1, 2)) if x >= 0 else -math.floor(-x + Fraction(1, 2))


def clone_frame(frame: av.VideoFrame, target_fmt: str) -> av.VideoFrame:
    """An independent copy of a decoded frame, for a second clip encoding the same frame."""
    if frame.format.name != target_fmt:
        copy = frame.reformat(format=target_fmt)  # a new frame; the encoder wants this format anyway
    else:
        copy = av.VideoFrame.from_ndarray(frame.to_ndarray(), format=frame.format.name)
    copy.pts = frame.pts
    copy.time_base = frame.time_base
    return copy
