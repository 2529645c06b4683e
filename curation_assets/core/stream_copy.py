"""Cut clips without re-encoding (``--transcode-encoder copy``): spans snapped to keyframes.

Why one module over the project's 500-line guide: the packet pass and the decode of each
finished clip (previews, motion, model frames) are the one "copy" encoder that ``core.pipeline``
picks instead of :mod:`.transcode`; the decode is called only from the pass and relies on the
snapped span the pass computes. The remux of the kept packets is :mod:`.copy_mux`.

A clip that is not re-encoded must start on a keyframe: anything else would reference frames
the clip does not hold. So each span is *snapped* outward to the source's keyframes, as
``ffmpeg -ss <start> -to <end> -i src -c copy`` does in effect: the start moves back to the last
keyframe at or before it, the end forward to the first keyframe at or after it (or the end of
the stream). The clip then holds whole groups of pictures (GOPs): the source's video packets
from its start keyframe up to (not including) its end keyframe, and the audio packets whose time
falls in the same range, remuxed unchanged into an in-memory mp4 with timestamps counted from
the clip's start. Spans that snap to the same range give one clip; snapped clips may overlap
(a GOP that two spans share goes into both).

The returned :class:`CopyClipOutput` has the shape of transcoding's ``ClipOutput`` with the
*snapped* span (``Span(..., snapped=True)``): seconds are the keyframes' presentation times
(counted from the start of the file, as span times are), frames are those times times the
frame rate, rounded (:func:`~.timing.nearest_frame`: whole frame positions, so the clip uuid
derives from the snapped frames).

A source whose first keyframe lies before its first presented frame (a cut made with
``ffmpeg -ss 1.3 -i x.mp4 -c copy``: the GOP the cut point falls in is kept, and an edit list
hides its first 1.3 s, which the demuxer marks as discarded packets) is cut as the re-encoding
path cuts it: the time the stream presents starts at its first presented frame, so a clip
starting in that GOP starts there (never before the video does), keeps the hidden packets its
frames need and hides them the same way (negative timestamps, which the mp4 muxer turns into an
edit list), and counts only the frames it shows.

One pass over the source: packets are demuxed once (no decode) and a GOP is held only until the
next keyframe tells which clips it belongs to, so memory is bounded by a GOP plus the clips in
flight. Previews and motion scores need pixels and motion vectors: each finished clip is decoded
once, from its own bytes, by a pool of worker threads (one per usable core; PyAV releases the GIL
while decoding), single-threaded per clip so the motion vectors are deterministic (spec, "do
better" item 7), and that one decode feeds both the preview collector and the motion sampler
(:class:`~curation_assets.core.motion.MotionSampler`: the same score as decoding the clip again
in ``core.motion``). A clip tap (the model frames, ``transcode.ClipTap``) gets its frames from the
same decode; as the clip's timestamps are known from its packets, the tap says up front which
frames it needs and those are decoded. Without previews, motion and a tap nothing is decoded.

Plain Python (PyAV); no dagster.
"""

from __future__ import annotations

import concurrent.futures
import io
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av

from .copy_mux import KeptPacket, keep, mux, presented
from .cpus import usable_cores
from .model import MotionScore, Span
from .previews import PreviewCollector, PreviewOptions
from .probe import display_rotation, source_name, span_origin_of
from .timing import frame_period, frame_rate, nearest_frame
from .transcode import ClipOutput, ClipTap, ClipTapFactory, SourceReadError, open_source
from .windows import compute_windows

log = logging.getLogger(__name__)

__all__ = ["CopyClipOutput", "copy_clips", "snap_span"]

_END = float("inf")
_EPS = 1e-6  # seconds: a keyframe this close to a span boundary counts as on it


@dataclass
class CopyClipOutput(ClipOutput):
    """A stream-copied clip: ``span`` is the snapped span; ``requested`` the spans that snapped to it.

    ``motion`` / ``motion_error`` are set when motion was asked for (from the same decode as the
    previews); ``motion_error`` is a :class:`~curation_assets.core.motion.MotionDecodeError`.
    """

    requested: list[Span] | None = None
    motion: MotionScore | None = None
    motion_error: Exception | None = None


def snap_span(span: Span, keyframes: list[float], stream_end: float, fps: float) -> Span:
    """``span`` moved out to the keyframes (seconds, ascending, from the start of the file).

    Start: the last keyframe at or before ``span.start_s`` (the first keyframe when none is).
    End: the first keyframe at or after ``span.end_s``, else ``stream_end``. Frame indices are the
    snapped times times ``fps``, rounded. (The stream copy itself snaps as it streams, with the
    same rule; this is the rule on its own, for callers that know the keyframes.)
    """
    before = [k for k in keyframes if k <= span.start_s + _EPS]
    start = before[-1] if before else (keyframes[0] if keyframes else 0.0)
    after = [k for k in keyframes if k >= span.end_s - _EPS and k > start]
    end = after[0] if after else stream_end
    return _snapped(start, end, fps)


def _snapped(start_s: float, end_s: float, fps: float) -> Span:
    return Span(start_s, end_s, nearest_frame(start_s, fps), nearest_frame(end_s, fps), snapped=True)


# ----------------------------------------------------------------------------- clips in the making


class _Job:
    """One snapped clip being assembled: the spans it serves, its GOPs and audio."""

    def __init__(self, first: Span) -> None:
        self.requested: list[Span] = [first]
        self.start_s = first.start_s
        self.end_s = first.end_s
        self.snapped_start_s: float | None = None  # the keyframe time the clip starts at
        self.snapped_end_s: float | None = None  # the next keyframe (or the end of the video)
        self.video: list[KeptPacket] = []


# ----------------------------------------------------------------------------- decode (previews, motion)


class _PlanMismatch(Exception):
    """The decoder's frames did not follow the skip plan; the clip is decoded in full instead."""


def _packets(data: bytes) -> tuple[list[tuple[int | None, int]], Fraction | None]:
    """``(pts, size)`` of the clip's shown video packets in file order (not those an edit list
    hides), and the stream's time base (no decoding); empty when the clip cannot be read (the
    decode pass reports the error)."""
    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            stream = container.streams.video[0]
            return [(p.pts, p.size) for p in container.demux(stream) if not p.is_discard], stream.time_base
    except Exception:
        return [], None


def _display_pts(packets: Sequence[tuple[int | None, int]]) -> list[int] | None:
    """The clip's video frames' presentation timestamps in display order, from its packets; None
    when a packet has none or two share one (then nothing is skipped)."""
    pts = [p for p, size in packets if size]
    known = [p for p in pts if p is not None]
    if not pts or len(known) != len(pts) or len(set(known)) != len(known):
        return None
    return sorted(known)


def _start_tap(factory: ClipTapFactory | None, packets: list[tuple[int | None, int]], time_base: Fraction | None
               ) -> tuple[ClipTap | None, list[int], set[int]]:
    """A tap for the clip, its frames' timestamps (those a reader of the clip sees: every packet
    pts, sorted) and the indices it needs decoded; no tap when the clip's packets cannot be read."""
    if factory is None or time_base is None:
        return None, [], set()
    pts = sorted(p for p, _ in packets if p is not None)
    try:
        tap = factory(Fraction(time_base), None, None)
        return tap, pts, tap.plan(pts)
    except Exception as exc:  # the model steps then decode the clip instead
        log.warning("no model frames for a copied clip: %s", exc)
        return None, [], set()


def _planned_frames(container: Any, stream: Any, display: list[int], needed: set[int],
                    times: Sequence[Fraction | int]) -> Any:
    """``(index, time, frame)`` for every frame of the clip in display order, where ``frame`` is
    None for a frame that no preview or motion sample uses and that the decoder was allowed to
    drop (``skip_frame`` NONREF: a non-reference frame; nothing else depends on its pixels).
    Raises :class:`_PlanMismatch` when the decoded frames stray from ``display``."""
    ctx = stream.codec_context
    index_of = {p: i for i, p in enumerate(display)}
    needed_pts = {display[i] for i in needed}
    expected = 0
    for packet in container.demux(stream):
        ctx.skip_frame = "NONREF" if packet.pts is not None and packet.pts not in needed_pts else "DEFAULT"
        for frame in ctx.decode(packet):
            i = index_of.get(frame.pts)
            if i is None or i < expected:
                raise _PlanMismatch(f"frame pts {frame.pts} out of plan")
            for j in range(expected, i):
                if j in needed:
                    raise _PlanMismatch(f"needed frame {j} was not decoded")
                yield j, times[j], None
            yield i, times[i], frame
            expected = i + 1
    for j in range(expected, len(display)):
        if j in needed:
            raise _PlanMismatch(f"needed frame {j} was not decoded")
        yield j, times[j], None


def _decode_clip(data: bytes, preview: PreviewOptions | None, motion: bool, frame_duration: Fraction,
                 tap: ClipTapFactory | None = None
                 ) -> tuple[dict[tuple[int, int], bytes], str | None, MotionScore | None, Exception | None, int,
                            bytes | None]:
    """Decode a copied clip once: its previews, its motion score, its frame count and what the
    clip tap keeps (the model frames).

    Previews use about one frame per second, motion scores one frame in ``round(fps / 2)`` and
    the model frames a few per second, so the frames none uses are left undecoded where the codec
    allows it (non-reference frames, a large share of an x264 stream with B-frames). The plan comes
    from the packets' timestamps; should the decoder's frames not match it, the clip is decoded in
    full."""
    packets, time_base = _packets(data) if (preview is not None or motion or tap is not None) else ([], None)
    display = _display_pts(packets)
    if display is not None:
        try:
            return _decode_clip_pass(data, preview, motion, frame_duration, display, tap, packets, time_base)
        except _PlanMismatch as exc:
            log.debug("skip plan abandoned (%s): decoding every frame", exc)
    return _decode_clip_pass(data, preview, motion, frame_duration, None, tap, packets, time_base)


def _decode_clip_pass(data: bytes, preview: PreviewOptions | None, motion: bool, frame_duration: Fraction,
                      display: list[int] | None, tap_factory: ClipTapFactory | None = None,
                      packets: Sequence[tuple[int | None, int]] = (), time_base: Fraction | None = None,
                      ) -> tuple[dict[tuple[int, int], bytes], str | None, MotionScore | None, Exception | None, int,
                                 bytes | None]:
    from .motion import MotionDecodeError, MotionSampler, configure_motion_decoder

    previews: dict[tuple[int, int], bytes] = {}
    preview_error: str | None = None
    score: MotionScore | None = None
    motion_error: Exception | None = None
    count = 0
    collector = PreviewCollector(preview, frame_duration) if preview else None
    tap, tap_pts, tap_needed = _start_tap(tap_factory, list(packets), time_base)
    model_frames: bytes | None = None
    sampler = None
    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            stream = container.streams.video[0]
            ctx = stream.codec_context
            if motion:
                configure_motion_decoder(ctx)  # single-threaded: deterministic motion vectors
                sampler = MotionSampler(container, stream)
            else:
                ctx.thread_type = "SLICE"
                ctx.thread_count = 1  # the pool runs one clip per core; skip_frame acts per packet
            if collector is None and tap is None:  # pixels unused: the deblocking filter can go
                ctx.options = {**dict(ctx.options or {}), "skip_loop_filter": "all"}
            tb = stream.time_base or Fraction(1, 90000)
            frames: Any = None
            if display is not None:
                times = [Fraction(p) * tb for p in display]
                needed = collector.needed(times) if collector is not None else set()
                if sampler is not None:
                    needed |= set(range(0, len(display), sampler.sample_step))
                needed |= tap_needed
                if len(needed) < len(display):
                    frames = _planned_frames(container, stream, display, needed, times)
            if frames is None:
                frames = (
                    (i, Fraction(f.pts) * tb if f.pts is not None else i * frame_duration, f)
                    for i, f in enumerate(container.decode(stream))
                )
            try:
                for index, t, frame in frames:
                    if collector is not None and preview_error is None:
                        try:
                            collector.add(index, t, frame)
                        except Exception as exc:
                            preview_error = f"preview frame {index}: {exc}"
                    if sampler is not None:
                        sampler.add(index, frame)
                    if tap is not None:
                        try:
                            tap.add(index, tap_pts[index], frame)
                        except Exception as exc:  # the model steps then decode the clip instead
                            log.warning("model frames of a copied clip not kept (frame %d: %s)", index, exc)
                            tap = None
                    count += 1
                    if collector is None and tap is None and (sampler is None or sampler.done):
                        break  # motion only: stop after the last sampled frame, as core.motion does
            except _PlanMismatch:
                raise
            except Exception as exc:
                if sampler is not None:
                    sampler.fail(exc)
                if collector is not None and preview_error is None:
                    preview_error = f"decoding for previews failed at frame {count}: {exc}"
    except _PlanMismatch:
        raise
    except Exception as exc:
        if sampler is None and motion:
            motion_error = MotionDecodeError("decode_failed", f"{type(exc).__name__}: {exc}")
        preview_error = preview_error or (f"decoding for previews failed: {exc}" if collector else None)
    if sampler is not None:
        try:
            score = sampler.score()
        except MotionDecodeError as exc:
            motion_error = exc
    if collector is not None and count and preview_error is None:
        try:
            previews = collector.finish()
        except Exception as exc:
            preview_error = f"preview encoding failed: {exc}"
    if tap is not None and count:
        try:
            model_frames = tap.finish()
        except Exception as exc:
            log.warning("model frames of a copied clip not kept: %s", exc)
    return previews, preview_error, score, motion_error, count, model_frames


# ----------------------------------------------------------------------------- the pass


def copy_clips(
    source: Any,
    spans: list[Span],
    preview: PreviewOptions | None = None,
    *,
    motion: bool = False,
    workers: int = 0,
    on_clip_done: Callable[[CopyClipOutput], None] | None = None,
    tap: ClipTapFactory | None = None,
) -> list[CopyClipOutput]:
    """Stream-copy every span of ``source`` (a path or binary file object) into an mp4 in memory.

    Returns one :class:`CopyClipOutput` per distinct snapped range, in order of snapped start
    (and end); ``requested`` lists the spans that snapped to it. ``preview``: render previews
    per window; ``motion``: compute motion scores (``CopyClipOutput.motion``/``motion_error``),
    both from one decode of each clip on ``workers`` threads (0: one per usable core), which also
    feeds ``tap`` (a ``transcode.ClipTapFactory``: ``CopyClipOutput.model_frames``). A clip
    that fails gets ``error`` and ``data=None`` while the others complete; an unreadable source
    raises :class:`SourceReadError`. ``on_clip_done`` is called on the calling thread as each
    clip finishes.
    """
    container, name = open_source(source), source_name(source)
    try:
        if not container.streams.video:
            raise SourceReadError(f"video source {name!r} has no video stream")
        if not spans:
            return []
        return _copy(container, name, spans, preview, motion, workers or usable_cores(), on_clip_done, tap)
    finally:
        container.close()


def _copy(container: Any, name: str, spans: list[Span], preview: PreviewOptions | None, motion: bool,
          workers: int, on_clip_done: Callable[[CopyClipOutput], None] | None,
          tap: ClipTapFactory | None = None) -> list[CopyClipOutput]:
    vstream = container.streams.video[0]
    astream = container.streams.audio[0] if container.streams.audio else None
    vtb = Fraction(vstream.time_base or Fraction(1, 90000))
    frame_duration = frame_period(frame_rate(vstream))
    fps = float(1 / frame_duration)
    origin = float(span_origin_of(container, vstream))
    rotation = display_rotation(vstream)

    jobs = [_Job(s) for s in sorted(spans, key=lambda s: (s.start_s, s.end_s)) if s.end_s > s.start_s]
    empty = [s for s in spans if not s.end_s > s.start_s]
    pending: deque[_Job] = deque(jobs)  # not started: snapped start unknown
    open_jobs: list[_Job] = []  # snapped start known, end not yet
    closing: list[_Job] = []  # both ends known, waiting for audio to pass the end
    finished: dict[tuple[float, float], CopyClipOutput] = {}
    outputs: list[CopyClipOutput] = []

    gop: list[KeptPacket] = []
    gop_start: float | None = None
    audio_buf: deque[KeptPacket] = deque()
    audio_pos = -_END
    audio_eof = astream is None
    last_video_end = 0.0
    last_t: float | None = None
    video_packets = 0

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="copy-decode") \
        if (preview or motion or tap) else None
    in_flight: list[tuple[concurrent.futures.Future, CopyClipOutput]] = []

    def report(out: CopyClipOutput) -> None:
        outputs.append(out)
        if on_clip_done is not None:
            try:
                on_clip_done(out)
            except Exception:  # a progress callback must not break the other clips
                log.exception("on_clip_done callback failed")

    def collect(block: bool = False) -> None:
        while in_flight:
            fut, out = in_flight[0]
            if not block and not fut.done():
                return
            in_flight.pop(0)
            try:
                out.previews, out.preview_error, out.motion, out.motion_error, decoded, out.model_frames = fut.result()
            except Exception as exc:  # pragma: no cover - _decode_clip catches its own errors
                out.preview_error = f"decoding the clip failed: {exc}"
                decoded = 0
            if preview is not None and not out.previews and out.windows and out.preview_error is None:
                out.preview_error = "no preview produced"
            if decoded and decoded != out.num_frames:
                log.debug("%s: clip [%.3f, %.3f) has %d packets, %d decoded frames", name, out.span.start_s,
                          out.span.end_s, out.num_frames, decoded)
            report(out)

    def finish(job: _Job) -> None:
        start_s, end_s = job.snapped_start_s, job.snapped_end_s
        assert start_s is not None and end_s is not None  # both snapped before a job is finished
        span = _snapped(start_s, end_s, fps)
        key = (round(span.start_s, 6), round(span.end_s, 6))
        if key in finished:  # snapped onto a clip already made: one clip serves both spans
            served = finished[key].requested
            assert served is not None  # every clip made here lists the spans it serves
            served.extend(job.requested)
            return
        if not job.video:  # the span lies before the first packet of the source
            report(CopyClipOutput(span=span, data=None, num_frames=0, windows=[], previews={},
                                  error=f"no video frames in span [{job.start_s:.3f}, {job.end_s:.3f}) s",
                                  requested=list(job.requested)))
            return
        audio = [p for p in audio_buf if start_s - _EPS <= p.t < end_s - _EPS] if astream is not None else []
        shown = len(presented(job.video))
        out = CopyClipOutput(span=span, data=None, num_frames=shown, windows=compute_windows(shown),
                             previews={}, error=None, requested=list(job.requested))
        finished[key] = out
        try:
            out.data = mux(vstream, astream, job.video, audio, start_s, origin, rotation)
        except Exception as exc:
            out.error = (f"stream copy of [{span.start_s:.3f}, {span.end_s:.3f}) s into mp4 failed "
                         f"({vstream.codec_context.name}): {exc}")
        job.video = []
        if out.data and pool is not None:
            in_flight.append((pool.submit(_decode_clip, out.data, preview, motion, frame_duration, tap), out))
        else:
            report(out)

    def settle() -> None:
        """Close the clips whose video and audio are both past their end; trim the audio buffer."""
        still = []
        for job in closing:
            assert job.snapped_end_s is not None  # set when the job started closing
            if audio_eof or audio_pos >= job.snapped_end_s:
                finish(job)
            else:
                still.append(job)
        closing[:] = still
        if gop_start is None:
            return  # no video yet: any audio so far may belong to the first clip
        # a clip not started yet begins at the current GOP or later
        low = min([j.snapped_start_s for j in open_jobs + closing if j.snapped_start_s is not None] + [gop_start])
        while audio_buf and audio_buf[0].t < low:
            audio_buf.popleft()

    def close_gop(next_key: float) -> None:
        """The GOP ``[gop_start, next_key)`` is complete: hand it to every clip it belongs to."""
        nonlocal gop, gop_start
        if not gop:
            return
        assert gop_start is not None  # set with the GOP's first packet
        shown = [p.t for p in presented(gop)]
        if not shown:  # all before the presented start (not a GOP of its own): nothing to cut from
            gop, gop_start = [], None
            return
        g0 = gop_start if len(shown) == len(gop) else min(shown)  # a clip starts where the video is shown
        gop_end = last_video_end if next_key == _END else next_key
        while pending and gop_end > pending[0].start_s + _EPS:  # this GOP holds the span's start
            job = pending.popleft()
            job.snapped_start_s = g0
            open_jobs.append(job)
        for job in list(open_jobs):
            if g0 < job.end_s:
                job.video.extend(gop)
            if next_key >= job.end_s - _EPS:
                job.snapped_end_s = next_key if next_key != _END else last_video_end
                open_jobs.remove(job)
                closing.append(job)
        gop = []
        gop_start = None

    def on_video(packet: Any) -> None:
        nonlocal gop_start, last_t, last_video_end, video_packets
        ts = packet.pts if packet.pts is not None else packet.dts
        if ts is None:
            t = (last_t + float(frame_duration)) if last_t is not None else 0.0
        else:
            t = float(ts * vtb) - origin
        last_t = t
        video_packets += 1
        dur = float((packet.duration or 0) * vtb) or float(frame_duration)
        last_video_end = max(last_video_end, t + dur)
        if packet.is_keyframe and gop:
            close_gop(t)
        if gop_start is None:
            gop_start = t
        gop.append(keep(packet, t))

    def on_audio(packet: Any) -> None:
        nonlocal audio_pos
        ts = packet.pts if packet.pts is not None else packet.dts
        if ts is None:
            return
        t = float(ts * Fraction(packet.time_base)) - origin
        audio_pos = max(audio_pos, t)
        audio_buf.append(keep(packet, t))

    streams = [s for s in (vstream, astream) if s is not None]
    try:
        try:
            for packet in container.demux(streams):
                if packet.size == 0 and packet.pts is None and packet.dts is None:  # end of a stream
                    if packet.stream is astream:
                        audio_eof = True
                    continue
                if packet.stream is astream:
                    on_audio(packet)
                else:
                    on_video(packet)
                settle()
                collect()
                if not pending and not open_jobs and not closing:
                    break  # every clip is cut: the rest of the source is not needed
        except av.error.FFmpegError as exc:
            if not video_packets:
                raise SourceReadError(f"cannot read video source {name!r}: {exc}") from exc
            log.warning("%s: reading stopped at %.3f s: %s", name, last_t or 0.0, exc)
        if not video_packets:
            raise SourceReadError(f"cannot read video source {name!r}: no video packet")
        close_gop(_END)
        audio_eof = True
        settle()
        for job in list(pending):
            out = CopyClipOutput(span=job.requested[0], data=None, num_frames=0, windows=[], previews={},
                                 error=(f"no video frames in span [{job.start_s:.3f}, {job.end_s:.3f}) s "
                                        f"(source ends at {last_video_end:.3f} s)"),
                                 requested=list(job.requested))
            report(out)
        pending.clear()
        for span in empty:
            report(CopyClipOutput(span=span, data=None, num_frames=0, windows=[], previews={},
                                  error=f"empty span [{span.start_s}, {span.end_s})", requested=[span]))
        collect(block=True)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    outputs.sort(key=lambda o: (o.span.start_s, o.span.end_s))
    return outputs
