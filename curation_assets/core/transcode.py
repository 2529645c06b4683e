"""Cut a source video into clips: decode once, fan the frames out to one encoder per clip.

This module is the single pass (:func:`transcode_clips`) and the one place of the timestamp rule
(a frame at ``t`` belongs to a clip when ``start_s <= t < end_s``); the per-clip encoder thread is
:mod:`.clip_encoder`, the choice and setup of an encoder (threads, pixel format, size, time base)
:mod:`.encoders`.

The architecture note's "Decode once, fan out": the source is demuxed and decoded a single time
on the calling thread; every decoded frame goes to the encoder of each clip whose span holds it
(spans may overlap), audio packets whose pts fall in a span are remuxed into that clip (no audio
re-encode), and preview frames are picked off the same frames (:mod:`.previews`). Each clip has
its own encoder thread fed through a small bounded queue, so the decoded video is never held in
memory; PyAV releases the GIL in decode, encode, mux and scaling, so decoding, libx264's own
frame threads and a finishing clip's flush overlap and keep the cores busy.

Clip contents follow ``ffmpeg -ss <start> -to <end> -i src -c:v libx264 -c:a copy``: a frame
belongs to a clip when its presentation time ``t`` satisfies ``start_s <= t < end_s`` (compared
in microseconds, as FFmpeg does), timestamps start at 0, the time base and frame rate are the
source's, libx264 runs with its defaults (preset medium, crf 23; ``TranscodeOptions.preset``
picks another x264 preset), and sources whose pixel format is not 8-bit 4:2:0 (10-bit among
them) are converted to ``yuv420p``.

A clip tap (``TranscodeOptions.tap``, see :class:`ClipTap`) sees each clip's frames as they are
encoded, with the presentation timestamps they get in the clip's mp4 (:func:`mp4_time_base`), so
it can keep the frames a reader of the clip would pick without decoding the clip again.

Plain Python (PyAV); no dagster.
"""

from __future__ import annotations

import logging
import queue
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av

from .clip_encoder import ClipJob, ClipOutput, ClipTap, ClipTapFactory, VideoParams
from .cpus import usable_cores
from .encoders import auto_encoder_threads, available_encoders, clone_frame, mp4_time_base, target_pix_fmt
from .model import Span
from .options import DEFAULT_X264_PRESET
from .previews import PreviewOptions
from .probe import frame_period, frame_rate, open_video, probe_clip, source_name, span_origin_of
from .timing import to_us as _to_us  # the span rule's microseconds (core.timing.in_span)

log = logging.getLogger(__name__)

__all__ = [
    "ClipOutput",
    "ClipTap",
    "ClipTapFactory",
    "SourceReadError",
    "TranscodeError",
    "TranscodeOptions",
    "auto_encoder_threads",
    "available_encoders",
    "mp4_time_base",
    "probe_clip",
    "transcode_clips",
]


class TranscodeError(RuntimeError):
    """A transcode could not run at all (bad options, unreadable source)."""


class SourceReadError(TranscodeError):
    """The source video could not be opened or has no video stream."""


@dataclass(frozen=True)
class TranscodeOptions:
    encoder: str = "libx264"  # also "libvpx-vp9", "h264_nvenc" (only where available_encoders() lists it)
    encoder_threads: int = 0  # 0 = auto: see auto_encoder_threads() (libx264: 1.5 per usable core)
    preview: PreviewOptions | None = None  # None = no previews
    preset: str = DEFAULT_X264_PRESET  # libx264 only
    tap: ClipTapFactory | None = None  # a ClipTap per clip (the model frames), None = none


def open_source(source: Any) -> Any:
    """The source's container (``probe.open_video``); :class:`SourceReadError` naming it when it
    does not open. Shared with ``core.stream_copy``."""
    name = source_name(source)
    try:
        return open_video(source)
    except Exception as exc:
        raise SourceReadError(f"cannot read video source {name!r}: {exc}") from exc


def transcode_clips(
    source: Any,
    spans: list[Span],
    options: TranscodeOptions = TranscodeOptions(),
    *,
    on_clip_done: Callable[[ClipOutput], None] | None = None,
) -> list[ClipOutput]:
    """Transcode every span of ``source`` into an mp4 clip in memory, decoding the source once.

    ``source`` is a local path or a binary file-like object (an fsspec file). Returns one
    :class:`ClipOutput` per span, in the order of ``spans``. A clip that fails gets ``error``
    and ``data=None`` while the others complete; an unreadable source raises
    :class:`SourceReadError`. ``on_clip_done`` is called on the calling thread as each clip
    finishes.
    """
    if options.preset != DEFAULT_X264_PRESET and options.encoder != "libx264":
        raise TranscodeError(f"preset {options.preset!r} is an x264 preset; encoder {options.encoder!r} has none")
    usable = available_encoders()
    if options.encoder not in usable:
        raise TranscodeError(
            f"encoder {options.encoder!r} is not usable here (usable: {', '.join(usable) or 'none'})"
        )
    name = source_name(source)
    container = open_source(source)
    if not spans:
        container.close()
        return []
    try:
        return _transcode(container, name, spans, options, on_clip_done)
    finally:
        container.close()


def _transcode(container: Any, name: str, spans: list[Span], options: TranscodeOptions,
               on_clip_done: Callable[[ClipOutput], None] | None) -> list[ClipOutput]:
    if not container.streams.video:
        raise SourceReadError(f"video source {name!r} has no video stream")
    vstream = container.streams.video[0]
    astream = container.streams.audio[0] if container.streams.audio else None
    vstream.thread_type = "AUTO"
    vtb = vstream.time_base or Fraction(1, 90000)
    rate = frame_rate(vstream)
    frame_duration = frame_period(rate)
    vcc = vstream.codec_context
    # Span times count from the start of the file, as ffmpeg's -ss does (it adds the input's
    # start time): a source whose timestamps begin at 1.4 s has its first frame at span time 0.
    origin = span_origin_of(container, vstream)  # core.timing.span_origin: the video's start if far later
    cores = usable_cores()
    threads = options.encoder_threads if options.encoder_threads > 0 else auto_encoder_threads(options.encoder, cores)
    vstream.codec_context.thread_count = min(16, cores + 1)  # ffmpeg's decoder auto rule
    params = VideoParams(
        encoder=options.encoder,
        threads=threads,
        time_base=Fraction(vtb),
        rate=rate,
        pix_fmt=target_pix_fmt(options.encoder, vcc.pix_fmt),
        color={k: getattr(vcc, k) for k in ("color_range", "color_primaries", "color_trc", "colorspace")
               if getattr(vcc, k, None)},
        preset=options.preset,
    )

    done: queue.Queue = queue.Queue()
    jobs = [ClipJob(i, s, params, astream, options.preview, frame_duration, done, options.tap)
            for i, s in enumerate(spans)]
    outputs: list[ClipOutput | None] = [None] * len(jobs)
    pending: deque[ClipJob] = deque()
    active: list[ClipJob] = []
    audio_pos_us = -(1 << 62)
    audio_eof = astream is None
    last_t: Fraction | None = None
    started: list[ClipJob] = []

    def report(job: ClipJob) -> None:
        outputs[job.index] = job.output
        if on_clip_done is not None:
            try:
                on_clip_done(job.output)
            except Exception:  # a progress callback must not break the other clips
                log.exception("on_clip_done callback failed")

    for job in sorted(jobs, key=lambda j: (j.start_us, j.end_us)):
        if job.end_us <= job.start_us:
            job.output.error = f"empty span [{job.span.start_s}, {job.span.end_s})"
            report(job)
        else:
            pending.append(job)

    def drain_done(block: bool = False) -> None:
        while True:
            try:
                job = done.get(block=block, timeout=None) if block else done.get_nowait()
            except queue.Empty:
                return
            job.thread.join()
            report(job)
            if block:
                return

    def activate_until(t_us: int) -> None:
        while pending and pending[0].start_us <= t_us:
            job = pending.popleft()
            job.start()
            started.append(job)
            active.append(job)

    def close_finished() -> None:
        still = []
        for job in active:
            if job.video_done and (audio_eof or audio_pos_us >= job.end_us):
                job.close()
            else:
                still.append(job)
        active[:] = still

    def on_frame(frame: av.VideoFrame) -> None:
        nonlocal last_t
        if frame.pts is not None:
            t = Fraction(frame.pts) * vtb
        else:
            t = (last_t + frame_duration) if last_t is not None else Fraction(0)
            frame.pts = int(round(t / vtb))
            frame.time_base = vtb
        last_t = t
        t_us = _to_us(t - origin)
        activate_until(t_us)
        targets = []
        for job in active:
            if t_us >= job.end_us:
                job.video_done = True
            elif job.start_us <= t_us:
                targets.append(job)
        for k, job in enumerate(targets):
            f = frame if k == len(targets) - 1 else clone_frame(frame, params.pix_fmt)
            job.put(("v", f, t))
        close_finished()

    def on_audio(packet: Any) -> None:
        nonlocal audio_pos_us
        if packet.pts is None:
            return
        tb = Fraction(packet.time_base)
        t_us = _to_us(Fraction(packet.pts) * tb - origin)
        audio_pos_us = max(audio_pos_us, t_us)
        activate_until(t_us)
        data = None
        for job in active:
            if job.start_us <= t_us < job.end_us and not job.closed:
                data = data if data is not None else bytes(packet)
                job.put(("a", data, packet.pts, packet.dts, packet.duration, tb))
        close_finished()

    streams = [s for s in (vstream, astream) if s is not None]
    decode_errors = 0
    had_work = bool(pending)
    try:
        try:
            for packet in container.demux(streams):
                if packet.stream is astream:
                    if packet.size == 0 and packet.pts is None:
                        audio_eof = True
                        close_finished()
                    else:
                        on_audio(packet)
                    continue
                try:
                    frames = packet.decode()
                except av.error.FFmpegError as exc:  # a damaged packet: skip it, as ffmpeg does
                    decode_errors += 1
                    if decode_errors <= 3:
                        log.warning("%s: decode error at pts %s: %s", name, packet.pts, exc)
                    continue
                for frame in frames:
                    on_frame(frame)
                drain_done()
                if not pending and not active:
                    break  # every span is behind us: no need to read the rest of the source
        except av.error.FFmpegError as exc:
            if last_t is None:
                raise SourceReadError(f"cannot read video source {name!r}: {exc}") from exc
            log.warning("%s: reading stopped at %.3f s: %s", name, float(last_t), exc)
        if pending or active:
            try:
                for frame in vstream.codec_context.decode(None):
                    on_frame(frame)
            except av.error.FFmpegError:
                pass
        if had_work and last_t is None and not started:
            raise SourceReadError(f"cannot read video source {name!r}: no video frame could be decoded")
    finally:
        audio_eof = True
        for job in active:
            job.video_done = True
        close_finished()
        for job in pending:  # never reached: the source ends before the span starts
            job.output.error = (f"no video frames in span [{job.span.start_s:.3f}, {job.span.end_s:.3f}) s "
                                f"(source ends at {float((last_t or origin) - origin + frame_duration):.3f} s)")
            report(job)
        pending.clear()
        while any(o is None for o in outputs):
            drain_done(block=True)
    return [o for o in outputs if o is not None]
