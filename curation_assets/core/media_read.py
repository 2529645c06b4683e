"""Media the layout checks read: a written clip's frames counted (keyframes decoded), a source's frame times.

Kept apart from ``core.layout_checks`` (the rules) because it opens files: a local path as is, any
other URL through its fsspec file, closed after.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import storage
from .probe import presented_times


def _with_file(url: str, read: Callable[[Any], Any]) -> Any:
    """``read`` of the local path of ``url``, or of its fsspec file (closed after)."""
    source: Any = storage.local_path(url) if storage.is_local(url) else storage.open_input(url)
    try:
        return read(source)
    finally:
        if not isinstance(source, str):
            source.close()


def decode_clip(url: str) -> tuple[int, float | None, float | None]:
    """``(frames, duration_s, fps)`` of a clip's first video stream.

    Frames are counted from the stream's own packets (an mp4 sample is one picture, however its
    frames are reordered), and only the keyframes are decoded (``skip_frame=NONKEY``: the other
    packets are parsed and dropped): decoding every frame of every clip again cost the writer step
    about 6% of the encode's CPU for a count the packets give (docs/performance.md). A clip with
    frames its edit list hides (a stream-copied cut of a source whose first GOP starts before its
    first shown frame) is decoded in full instead: only decoding tells which frames it shows.
    Raises when the clip has no keyframe or a keyframe does not decode."""
    counted = _with_file(url, _count_packets)
    return counted if counted is not None else _with_file(url, _decode_all)


def _count_packets(source: Any) -> tuple[int, float | None, float | None] | None:
    """:func:`decode_clip` from the packets, decoding keyframes only; None when a packet is hidden."""
    import av

    with av.open(source) as container:
        stream = container.streams.video[0]
        stream.codec_context.skip_frame = "NONKEY"
        frames = keyframes = decoded = 0
        for packet in container.demux(stream):
            if packet.is_discard:
                return None
            if packet.size:  # the empty packet at the end only flushes the decoder
                frames += 1
                keyframes += packet.is_keyframe
            decoded += len(packet.decode())
        if not keyframes or decoded < keyframes:
            raise ValueError(f"{decoded} of its {keyframes} keyframes decode")
        return frames, *_duration_and_rate(stream)


def _decode_all(source: Any) -> tuple[int, float | None, float | None]:
    """:func:`decode_clip` by decoding every frame (the frames shown, edit lists applied)."""
    import av

    with av.open(source) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frames = sum(1 for _ in container.decode(stream))
        return frames, *_duration_and_rate(stream)


def _duration_and_rate(stream: Any) -> tuple[float | None, float | None]:
    duration = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
    return duration, float(stream.average_rate) if stream.average_rate else None


def source_times(url: str) -> list:
    """The source's frame times (:func:`core.probe.presented_times`); [] when unreadable."""
    try:
        return _with_file(url, presented_times)
    except Exception:  # noqa: BLE001 - a source gone or unreadable since the run: the plain rule
        return []
