"""Read a video's container metadata with PyAV, with the spec's field definitions.

The reference probes with ffprobe; these rules (stream duration, average frame rate,
``num_frames = int(duration * framerate)``) reproduce its numbers and so its clip ids.
"""

from __future__ import annotations

from typing import BinaryIO

import av

from .model import VideoMetadata


class ProbeError(Exception):
    """The source could not be read as a video; ``key`` is the spec's per-video error key."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def _bit_depth(pix_fmt: str | None) -> int | None:
    if not pix_fmt:
        return None
    try:
        desc = av.VideoFormat(pix_fmt)
        return max(c.bits for c in desc.components) if desc.components else None
    except Exception:  # unknown/hardware formats
        return None


def _rotation(stream: av.video.stream.VideoStream) -> int:
    try:
        rotate = stream.metadata.get("rotate")
        if rotate is not None:
            return int(float(rotate)) % 360
    except (TypeError, ValueError):
        pass
    for data in getattr(stream, "side_data", {}) or {}:
        try:
            if "DISPLAYMATRIX" in str(data).upper():
                return int(round(stream.side_data[data])) % 360
        except Exception:
            pass
    return 0


def probe_container(container: av.container.InputContainer) -> VideoMetadata:
    """Metadata of an opened container (video stream: the last one listed, as the reference)."""
    video_streams = list(container.streams.video)
    if not video_streams:
        audio = [a.codec_context.name for a in container.streams.audio]
        raise ProbeError("metadata", "no video stream" + (f" (audio only: {', '.join(audio)})" if audio else ""))
    stream = video_streams[-1]
    ctx = stream.codec_context
    framerate = float(stream.average_rate) if stream.average_rate else None
    if framerate is None and stream.guessed_rate:
        framerate = float(stream.guessed_rate)
    duration: float | None = None
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / av.time_base
    num_frames = int(duration * framerate) if duration is not None and framerate else None
    audio = list(container.streams.audio)
    pix_fmt = ctx.format.name if ctx.format is not None else None
    return VideoMetadata(
        height=ctx.height or None,
        width=ctx.width or None,
        framerate=framerate,
        num_frames=num_frames,
        duration=duration,
        video_codec=ctx.name,
        pixel_format=pix_fmt,
        audio_format=audio[0].codec_context.name if audio else None,
        bit_depth=_bit_depth(pix_fmt),
        rotation=_rotation(stream),
    )


def _size(source: str | BinaryIO) -> int | None:
    try:
        if isinstance(source, str):
            import os

            return os.path.getsize(source)
        pos = source.tell()
        end = source.seek(0, 2)
        source.seek(pos)
        return end
    except (OSError, AttributeError, ValueError):
        return None


def probe_video(source: str | BinaryIO, name: str | None = None) -> VideoMetadata:
    """Probe a path or binary file object; raise ProbeError naming the source when unreadable."""
    label = name or (source if isinstance(source, str) else getattr(source, "name", "<stream>"))
    if _size(source) == 0:
        raise ProbeError("metadata", f"{label}: empty file (0 bytes)")
    try:
        with av.open(source, mode="r", metadata_errors="ignore") as container:
            return probe_container(container)
    except ProbeError as exc:
        raise ProbeError(exc.key, f"{label}: {exc}") from None
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        hint = _mp4_hint(source)
        raise ProbeError("metadata", f"{label}: not a readable video{hint} ({type(exc).__name__}: {exc})") from exc


def _mp4_hint(source: str | BinaryIO) -> str:
    """Why an ISO-BMFF file (mp4/mov) did not open, when its top-level boxes tell: no ``moov``
    (the index, written last by most muxers: an upload or recording that did not finish)."""
    try:
        f = open(source, "rb") if isinstance(source, str) else source  # noqa: SIM115
        try:
            f.seek(0)
            end = f.seek(0, 2)
            pos, kinds = 0, []
            while pos + 8 <= end and len(kinds) < 64:
                f.seek(pos)
                head = f.read(16)
                size, kind = int.from_bytes(head[:4], "big"), head[4:8]
                if size == 1 and len(head) >= 16:
                    size = int.from_bytes(head[8:16], "big")
                elif size == 0:
                    size = end - pos
                if size < 8 or not kind.isalnum():
                    break
                kinds.append(kind)
                pos += size
            if kinds[:1] == [b"ftyp"] and b"moov" not in kinds:
                return ": mp4 without its moov atom (index), e.g. a recording or upload that did not finish"
            if kinds[:1] == [b"ftyp"] and pos > end:
                return ": mp4 shorter than its boxes say (truncated)"
        finally:
            if isinstance(source, str):
                f.close()
    except (OSError, ValueError, AttributeError):
        pass
    return ""
