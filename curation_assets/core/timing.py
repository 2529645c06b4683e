"""The one timing model: frame rates and their fallbacks, seconds <-> frame indices, durations, VFR.

Every module that turns time into frames (or back) calls a function here, so a rule is spelled
once. The reference (NeMo Curator 1.4.0) does not use one formula everywhere, and its ids depend
on which one each stage uses, so where it uses two rules both are here, named for where they
apply (spec ``clip-writer-layout.md``, "Identifiers" and "Probe fields"):

* :func:`frame_index` truncates (``int(seconds * fps)``): the fixed-stride split's span frames
  (the ids) and the scene stage's second-valued settings (min/max length, crop) in frames.
* :func:`nearest_frame` rounds: a time that is a frame's own presentation time (a keyframe a
  stream-copied clip snaps to), where truncating could land one frame early on float error.
* :func:`frame_time` is ``index / fps``: a scene's frame index back to seconds.
* :func:`span_frames_of` inverts all three for a document read back (the frames whose id to try).

Rates: :func:`frame_rate` is ffprobe's ``avg_frame_rate`` (the spec's ``framerate``), with
FFmpeg's guesses as fallbacks for a container that records none. Two stages need a rate for a
stream that has none at all, and the reference's stages differ: the cutters time frames without
timestamps at :data:`UNTIMED_FRAME_RATE` (FFmpeg's default rate for raw streams); the motion
stage samples at :data:`MOTION_FALLBACK_FPS` (the reference motion stage's own default). The
motion stage's sampling stride ``round(fps / 2)`` is a stride, not a time, and stays with that
stage's rules in ``core/motion.py``.

Origin: :func:`span_origin` is where span time 0 lies in the file.

Durations: :func:`probe_seconds` is ffprobe's ``%f`` printing, which the reference parses back;
:func:`frame_count` is the spec's ``num_frames``.

Variable frame rate (spec, "do better" 8): a source whose frame gaps differ holds, in a span,
the frames whose timestamps fall in it, not ``span x average rate`` of them.
:func:`frames_in_span` is that count and :func:`in_span` the rule a cutter applies to one frame
(FFmpeg's ``-ss``/``-to`` compare in microseconds, :func:`to_us`); :func:`span_promise` is what
the checks hold a clip to; :func:`is_vfr` tells a timestamp list whose gaps are not all one
frame period.

Pure arithmetic; no PyAV objects are created here (a stream is only read for its rate fields).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import Any

#: Frames per second assumed to time frames that carry no timestamp in a stream that declares no
#: rate (FFmpeg's default rate for raw streams); the cutters need some period.
UNTIMED_FRAME_RATE = Fraction(25)
#: The reference motion stage's sampling rate for a stream without any frame rate.
MOTION_FALLBACK_FPS = 30.0
#: Two frame gaps that differ by less than this share of a frame period count as equal (time
#: bases such as 1/1000 s cannot hold 1/30 s exactly: 33/34 ms alternate in a CFR file).
VFR_GAP_TOLERANCE = 0.25


def span_origin(file_start: Fraction | None, video_start: Fraction | None, slack: float = 2.0) -> Fraction:
    """Where span time 0 lies, in the file's seconds: the start of the file, as ``ffmpeg -ss``
    counts (the reference's cuts; an audio track starting a few ms before the video is the usual
    case), unless the video stream starts more than ``slack`` seconds after it (video moved by an
    ``-itsoffset``): spans then count from the video's first timestamp, the time it really covers."""
    file_start = Fraction(file_start or 0)
    if video_start is not None and video_start - file_start > slack:
        return Fraction(video_start)
    return file_start


def frame_rate(stream: Any) -> Fraction | None:
    """A video stream's frame rate: its average rate (ffprobe's ``avg_frame_rate``); where the
    container records none, the rate FFmpeg guesses (``r_frame_rate`` refined by the codec's),
    else the stream's base rate; None when it has none."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return Fraction(rate) if rate else None


def frame_period(rate: Fraction | float | None) -> Fraction:
    """How long one frame lasts: ``1 / rate``, or one period at :data:`UNTIMED_FRAME_RATE`."""
    return 1 / Fraction(rate) if rate else 1 / UNTIMED_FRAME_RATE


def motion_rate(stream: Any) -> float:
    """The rate the reference's motion stage samples a stream at: its frame rate, else 30."""
    rate = frame_rate(stream)
    return float(rate) if rate else MOTION_FALLBACK_FPS


def probe_seconds(seconds: float | Fraction) -> float:
    """Seconds as ffprobe prints them (C's ``%f``: six decimals, rounded) and the reference parses
    back: 19.98663333 s becomes 19.986633 (one frame less at 30000/1001 fps)."""
    return float(f"{float(seconds):f}")


def frame_count(duration: float | None, framerate: float | None) -> int | None:
    """The spec's ``num_frames``: ``int(duration * framerate)`` (not a decoded count)."""
    return int(duration * framerate) if duration is not None and framerate else None


def frame_index(seconds: float, fps: float) -> int:
    """``int(seconds * fps)``: the reference's truncating rule (fixed-stride span frames, i.e. the
    clip ids; the scene stage's min/max length and crop settings in frames)."""
    return int(seconds * fps)


def nearest_frame(seconds: float, fps: float) -> int:
    """``round(seconds * fps)``: the frame whose own presentation time ``seconds`` is (a keyframe
    that a stream-copied span snaps to), safe from float error below the frame."""
    return int(round(seconds * fps))


def frame_time(index: int, fps: float) -> float:
    """``index / fps``: a frame index back to seconds (the scene stage's spans)."""
    return float(index) / fps


def span_frames_of(seconds: float, fps: float) -> list[int]:
    """The frame indices the rules above could have turned ``seconds`` into: :func:`frame_index`
    (a split span), :func:`nearest_frame` (a snapped span; also a scene's ``frame_time``, whose
    product with ``fps`` may fall a hair below the index). Empty when the values cannot be times."""
    if not (_finite(seconds) and _finite(fps) and 0 <= seconds < 1e9 and 0 < fps < 1e6):
        return []
    return sorted({frame_index(seconds, fps), nearest_frame(seconds, fps)})


def to_us(seconds: float | Fraction) -> int:
    """Seconds as whole microseconds, rounded: the resolution FFmpeg compares ``-ss``/``-to`` at."""
    return int(round(seconds * 1_000_000))


def in_span(t: float | Fraction, start_s: float, end_s: float) -> bool:
    """Whether a frame presented at ``t`` (seconds from the start of the file) belongs to the clip
    of ``[start_s, end_s)``: the cutters' rule, compared in microseconds."""
    return to_us(start_s) <= to_us(t) < to_us(end_s)


def frames_in_span(times: Iterable[float | Fraction], start_s: float, end_s: float) -> int:
    """How many of the frames presented at ``times`` a clip of ``[start_s, end_s)`` holds: what a
    cut of that span promises, for a constant or a variable frame rate alike."""
    lo, hi = to_us(start_s), to_us(end_s)
    return sum(1 for t in times if lo <= to_us(t) < hi)


def span_promise(start_s: float, end_s: float, fps: float, times: Sequence[float | Fraction] | None = None
                 ) -> tuple[float, float]:
    """What a clip cut from ``[start_s, end_s)`` holds: ``(frames, seconds)``, the seconds from its
    first frame to the span's end. Without the source's frame times, ``span x fps`` frames over the
    whole span (a constant rate); with them, the frames whose times fall in the span
    (:func:`in_span`), from the first of them: what a variable frame rate source really gives."""
    if times is None:
        return (end_s - start_s) * fps, end_s - start_s
    first = next((t for t in times if in_span(t, start_s, end_s)), start_s)
    return float(frames_in_span(times, start_s, end_s)), end_s - float(first)


def is_vfr(times: Sequence[float | Fraction], tolerance: float = VFR_GAP_TOLERANCE) -> bool:
    """True when the gaps between consecutive presentation times (sorted) are not all one frame
    period: the smallest and largest gap differ by more than ``tolerance`` of the smallest."""
    ordered = sorted(times)
    gaps = [b - a for a, b in itertools.pairwise(ordered) if b > a]
    if len(gaps) < 2:
        return False
    low, high = min(gaps), max(gaps)
    return float(high - low) > tolerance * float(low)


def _finite(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and value == value and abs(value) != float("inf"))
