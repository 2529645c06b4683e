"""Read a video's (or a clip's) container metadata with PyAV, with the spec's field definitions.

The reference probes with ffprobe; the rules here reproduce its numbers and so its clip ids. The
arithmetic (rates and their fallbacks, ffprobe's printing of seconds, ``num_frames``) is the timing
model's (:mod:`.timing`, re-exported here for the cutters); this module reads the container:

* :func:`duration_seconds`: the stream's duration (the container's when the stream has none)
  *as ffprobe prints it* (:func:`.timing.probe_seconds`). An NTSC ``.mov`` with
  ``duration_ts=599599`` and ``time_base=1/30000`` is exactly 599 frames long, but prints as
  19.986633 s and so has 598 frames to the reference.
* a claim is not believed past what the stream holds (:func:`covered_seconds`): where the
  claimed duration runs more than :data:`CLAIM_SLACK_S` past the stream's last timestamp (a
  container whose timestamps start at 100,000 s and which records its *end* time as its duration,
  as Matroska does), the duration is the time the stream's frames cover, measured from a seek to
  the end (one GOP read), so spans are planned for the frames that exist. Ordinary files keep
  ffprobe's number (and the reference's ids).
* the video stream probed is the last one listed, as the reference's loop over ffprobe's streams.
"""

from __future__ import annotations

import io
import os
from fractions import Fraction
from typing import Any, BinaryIO

import av

from .model import ClipProbe, VideoMetadata
from .timing import frame_count, frame_period, frame_rate, probe_seconds, span_origin

__all__ = ["ProbeError", "covered_seconds", "display_rotation", "duration_seconds", "frame_count", "frame_period",
           "frame_rate", "open_video", "presented_times", "probe_clip", "probe_container", "probe_video",
           "source_name", "span_origin_of"]

#: A claimed duration may run this far past the stream's last frame before it is not believed
#: (an audio track or a last frame's long display outlasting the video stays the claim's).
CLAIM_SLACK_S = 2.0


class ProbeError(Exception):
    """The source could not be read as a video; ``key`` is the spec's per-video error key."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def duration_seconds(container: Any, stream: Any) -> float | None:
    """The duration of ``stream`` in seconds, as ffprobe prints it (the container's as fallback)."""
    if stream.duration is not None and stream.time_base:
        seconds = stream.duration * (stream.time_base.numerator / stream.time_base.denominator)
    elif container.duration is not None:
        seconds = container.duration * (1 / av.time_base)
    else:
        return None
    return probe_seconds(seconds)


def span_origin_of(container: Any, stream: Any) -> Fraction:
    """Where span time 0 lies for ``stream`` of ``container``, in seconds (:func:`.timing.span_origin`):
    the one origin the cutters and the checks count span times from."""
    file_start = Fraction(container.start_time, av.time_base) if container.start_time is not None else None
    video_start = (Fraction(stream.start_time) * Fraction(stream.time_base)
                   if stream.start_time is not None and stream.time_base else None)
    return span_origin(file_start, video_start, CLAIM_SLACK_S)


def covered_seconds(container: Any, stream: Any) -> float | None:
    """Seconds the stream's frames really cover: from its first shown frame to the end of its last,
    the last found by a seek to the end of the stream (one GOP and what follows it is demuxed, no
    decoding), else by demuxing the whole stream; None when no timed packet can be read."""
    tb = Fraction(stream.time_base) if stream.time_base else None
    if tb is None:
        return None
    first, last = stream.start_time, None
    for target in (1 << 62, None):
        try:
            if target is None:
                container.seek(0)
            else:
                container.seek(target, backward=True, any_frame=False, stream=stream)
            for packet in container.demux(stream):
                if packet.pts is None or not packet.size or packet.is_discard:
                    continue
                end = packet.pts + (packet.duration or 0)
                last = end if last is None else max(last, end)
                if target is None:
                    first = packet.pts if first is None else min(first, packet.pts)
        except (av.FFmpegError, OSError, ValueError):
            pass
        if last is not None and first is not None:
            return float((last - first) * tb)
    return None


def display_rotation(stream: Any) -> int:
    """Degrees the stream is rotated for display (its ``rotate`` tag or display matrix), 0..359."""
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


def _probed_stream(container: Any) -> Any:
    """The video stream the reference probes: the last one listed (None: no video stream)."""
    streams = list(container.streams.video)
    return streams[-1] if streams else None


def probe_container(container: av.container.InputContainer) -> VideoMetadata:
    """Metadata of an opened container; ProbeError ``metadata`` when it has no video stream."""
    stream = _probed_stream(container)
    if stream is None:
        audio = [a.codec_context.name for a in container.streams.audio]
        raise ProbeError("metadata", "no video stream" + (f" (audio only: {', '.join(audio)})" if audio else ""))
    ctx = stream.codec_context
    rate = frame_rate(stream)
    framerate = float(rate) if rate else None
    duration = duration_seconds(container, stream)
    if stream.duration is None and duration is not None:  # the container's claim: not believed past the frames
        covered = covered_seconds(container, stream)
        if covered is not None and duration - covered > CLAIM_SLACK_S:
            duration = probe_seconds(covered)
    audio_streams = list(container.streams.audio)
    return VideoMetadata(
        height=ctx.height or None,
        width=ctx.width or None,
        framerate=framerate,
        num_frames=frame_count(duration, framerate),
        duration=duration,
        video_codec=ctx.name,
        pixel_format=ctx.format.name if ctx.format is not None else None,
        audio_format=audio_streams[0].codec_context.name if audio_streams else None,
    )


def probe_clip(data: bytes) -> ClipProbe:
    """The spec's per-clip probe fields, read from the clip's own bytes by the same rules."""
    with av.open(io.BytesIO(data), mode="r") as container:
        if _probed_stream(container) is None:
            return ClipProbe(None, None, None, None, None, len(data))
        meta = probe_container(container)
    return ClipProbe(
        width=meta.width,
        height=meta.height,
        framerate=meta.framerate,
        num_frames=meta.num_frames,
        video_codec=meta.video_codec,
        num_bytes=len(data),
    )


def source_name(source: Any) -> str:
    """A human-readable name of a path or file object, for error messages (the file object's
    ``full_name``, ``path`` or ``name``, else its ``repr``)."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    for attr in ("full_name", "path", "name"):
        value = getattr(source, attr, None)
        if isinstance(value, (str, os.PathLike)) and os.fspath(value):
            return os.fspath(value)
    return repr(source)


def open_video(source: Any) -> Any:
    """Open a path, path-like, bytes or readable binary file object for reading with PyAV: the one
    way every step opens a source or a clip (undecodable metadata text is ignored, as the probe
    does, so a file the probe accepted opens everywhere)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(bytes(source))
    elif isinstance(source, os.PathLike):
        source = os.fspath(source)
    return av.open(source, mode="r", metadata_errors="ignore")


def _size(source: str | BinaryIO) -> int | None:
    try:
        if isinstance(source, str):
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
            pos, kinds = 0, list[bytes]()
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


def presented_times(source: Any) -> list[Fraction]:
    """The presentation time of every frame the cutters' video stream (the first) shows, in
    seconds from the start of the file as span times count, sorted; read from its packets (no
    decoding), frames an edit list hides left out. What a clip of a span promises to hold is the
    frames whose times fall in it (:func:`.timing.frames_in_span`), whatever the frame rate."""
    with open_video(source) as container:
        if not container.streams.video:
            return []
        stream = container.streams.video[0]
        origin = span_origin_of(container, stream)
        tb = Fraction(stream.time_base or Fraction(1, 90000))
        return sorted(Fraction(p.pts) * tb - origin for p in container.demux(stream)
                      if p.pts is not None and p.size and not p.is_discard)
