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
frame threads and a finishing clip's flush overlap and keep the cores busy. Where cores would
still idle, the later clips are encoded at the same time from a second decode position over the
same source (:mod:`.decode_pass`: the same frames reach the same encoders, so the same bytes).

An interrupt of any kind (a BaseException: ``core.cancel.Interrupted``, Dagster's own interrupt
raised in the calling thread at whatever it is doing, one raised by ``on_clip_done``) aborts the
transcode: every wait between its threads gives up (:class:`~.clip_encoder.Aborted`), the second
position's thread and every clip encoder thread have ended when :func:`transcode_clips` returns,
``on_clip_done`` is not called again, and the exception propagates unchanged.

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
import os
import queue
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from .clip_encoder import POLL_S, Aborted, ClipJob, ClipOutput, ClipTap, ClipTapFactory, VideoParams
from .cpus import usable_cores
from .decode_pass import DecodePass, NoFramesError, split_point, wants_second_position
from .encoders import auto_encoder_threads, available_encoders, mp4_time_base, target_pix_fmt
from .model import Span
from .options import DEFAULT_X264_PRESET
from .previews import PreviewOptions
from .probe import frame_period, frame_rate, open_video, probe_clip, source_name, span_origin_of

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
    x264_avx512: bool = False  # libx264 only: its AVX-512 functions where they are exact (core.x264_cpu)
    tap: ClipTapFactory | None = None  # a ClipTap per clip (the model frames), None = none
    # 0 = a second decode position where the cores would idle, 1 = one, 2 = two where the source allows
    decode_positions: int = 0


def open_source(source: Any) -> Any:
    """The source's container (``probe.open_video``); :class:`SourceReadError` naming it when it
    does not open. Shared with ``core.stream_copy``."""
    name = source_name(source)
    try:
        return open_video(source)
    except Exception as exc:
        raise SourceReadError(f"cannot read video source {name!r}: {exc}") from exc


def _reopener(source: Any, reopen: Callable[[], Any] | None) -> Callable[[], Any] | None:
    """How to get a second handle on ``source``: ``reopen``, else the path itself, else none."""
    if reopen is not None:
        return reopen
    if isinstance(source, (str, os.PathLike)):
        return lambda: source
    return None


def transcode_clips(
    source: Any,
    spans: list[Span],
    options: TranscodeOptions = TranscodeOptions(),
    *,
    on_clip_done: Callable[[ClipOutput], None] | None = None,
    reopen: Callable[[], Any] | None = None,
) -> list[ClipOutput]:
    """Transcode every span of ``source`` into an mp4 clip in memory, decoding the source once.

    ``source`` is a local path or a binary file-like object (an fsspec file). Returns one
    :class:`ClipOutput` per span, in the order of ``spans``. A clip that fails gets ``error``
    and ``data=None`` while the others complete; an unreadable source raises
    :class:`SourceReadError`. ``on_clip_done`` is called on the calling thread as each clip
    finishes. ``reopen`` gives another handle on the same source (a file-like source cannot be read
    from two places at once; a path is opened again without it): with one, the later clips may be
    encoded from a second decode position at the same time (``TranscodeOptions.decode_positions``).
    """
    if options.preset != DEFAULT_X264_PRESET and options.encoder != "libx264":
        raise TranscodeError(f"preset {options.preset!r} is an x264 preset; encoder {options.encoder!r} has none")
    if options.x264_avx512 and options.encoder != "libx264":
        raise TranscodeError(f"x264_avx512 chooses libx264's functions; encoder {options.encoder!r} is not libx264")
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
        return _transcode(container, name, spans, options, on_clip_done, _reopener(source, reopen))
    finally:
        container.close()


def _transcode(container: Any, name: str, spans: list[Span], options: TranscodeOptions,
               on_clip_done: Callable[[ClipOutput], None] | None,
               reopen: Callable[[], Any] | None) -> list[ClipOutput]:
    if not container.streams.video:
        raise SourceReadError(f"video source {name!r} has no video stream")
    vstream = container.streams.video[0]
    astream = container.streams.audio[0] if container.streams.audio else None
    vtb = vstream.time_base or Fraction(1, 90000)
    rate = frame_rate(vstream)
    frame_duration = frame_period(rate)
    vcc = vstream.codec_context
    # Span times count from the start of the file, as ffmpeg's -ss does (it adds the input's
    # start time): a source whose timestamps begin at 1.4 s has its first frame at span time 0.
    origin = span_origin_of(container, vstream)  # core.timing.span_origin: the video's start if far later
    cores = usable_cores()
    threads = options.encoder_threads if options.encoder_threads > 0 else auto_encoder_threads(options.encoder, cores)
    params = VideoParams(
        encoder=options.encoder,
        threads=threads,
        time_base=Fraction(vtb),
        rate=rate,
        pix_fmt=target_pix_fmt(options.encoder, vcc.pix_fmt),
        color={k: getattr(vcc, k) for k in ("color_range", "color_primaries", "color_trc", "colorspace")
               if getattr(vcc, k, None)},
        preset=options.preset,
        x264_avx512=options.x264_avx512,
    )

    done: queue.Queue = queue.Queue()
    abort = threading.Event()  # set by any BaseException that ends a pass: every wait between the threads ends
    jobs = [ClipJob(i, s, params, astream, options.preview, frame_duration, done, options.tap, abort)
            for i, s in enumerate(spans)]
    outputs: list[ClipOutput | None] = [None] * len(jobs)

    def report(job: ClipJob) -> None:
        outputs[job.index] = job.output
        if on_clip_done is not None:
            try:
                on_clip_done(job.output)
            except Exception:  # a progress callback must not break the other clips
                log.exception("on_clip_done callback failed")

    runnable = []
    for job in sorted(jobs, key=lambda j: (j.start_us, j.end_us)):
        if job.end_us <= job.start_us:
            job.output.error = f"empty span [{job.span.start_s}, {job.span.end_s})"
            report(job)
        else:
            runnable.append(job)

    def take_done(timeout: float = 0.0) -> bool:
        """Report one finished clip, waiting up to ``timeout`` for it (0: none); whether there was one."""
        try:
            job = done.get(timeout=timeout) if timeout else done.get_nowait()
        except queue.Empty:
            return False
        if job.thread.ident is not None:  # a clip never started has no encoder to wait for
            job.thread.join()  # it put itself on ``done`` last: ending
        report(job)
        return True

    def drain_done() -> None:
        """Report the clips finished so far."""
        while take_done():
            pass

    workers: list[threading.Thread] = []  # the second position's, then the encoders' (ClipJob.thread)

    def none_alive() -> bool:
        return not any(t.is_alive() for t in workers + [j.thread for j in runnable])

    second: DecodePass | None = None
    failure: list[BaseException] = []  # what ended the second position's thread, when not an Exception
    try:
        try:
            first = DecodePass(container, name, runnable, params, origin, frame_duration, done, cores, abort)
            second = _second_pass(runnable, options, container, reopen, name, params, origin, frame_duration, done,
                                  cores, abort)
            if second is not None:
                first.pending = deque(runnable[:len(runnable) - len(second.pending)])
                workers.append(threading.Thread(target=_run_second, args=(second, failure), name="decode-position-2",
                                                daemon=True))
                workers[0].start()
            try:
                first.run(drain_done)
            except NoFramesError as exc:
                raise SourceReadError(str(exc)) from exc
            while any(o is None for o in outputs):  # the last clips' flushes, the second position's clips
                if abort.is_set():
                    raise Aborted()
                if not take_done(POLL_S) and none_alive() and done.empty():
                    _lost(runnable, outputs, report)  # pragma: no cover - an encoder ended without reporting
        except BaseException:
            abort.set()  # first: every thread of the transcode stops at its next wait (or packet)
            raise
        finally:
            for thread in workers + [j.thread for j in runnable]:
                if thread.ident is not None:  # started (the second position starts encoders: it is first)
                    thread.join()
            if second is not None:
                second.container.close()
    except Aborted:
        if failure:  # the second position's thread was interrupted: the transcode ends with its exception
            raise failure[0] from None
        raise  # pragma: no cover - only the second position's thread aborts without the caller's exception
    return [o for o in outputs if o is not None]


def _lost(jobs: list[ClipJob], outputs: list[ClipOutput | None],
          report: Callable[[ClipJob], None]) -> None:  # pragma: no cover - a safety net
    """Every thread of the transcode ended and some clips never reported (an encoder thread ended
    by a BaseException before it could): those fail, instead of being waited for."""
    for job in jobs:
        if outputs[job.index] is None:
            job.output.error = job.output.error or "the clip's encoder ended without a result"
            job.output.data = None
            report(job)


def _second_pass(jobs: list[ClipJob], options: TranscodeOptions, container: Any, reopen: Callable[[], Any] | None,
                 name: str, params: VideoParams, origin: Fraction, frame_duration: Fraction, done: queue.Queue,
                 cores: int, abort: threading.Event) -> DecodePass | None:
    """A second decode position for the later half of ``jobs`` (:mod:`.decode_pass`), or None where
    it is not worth it, not possible (no way to open the source again) or not safe."""
    fmt = getattr(container.format, "name", "") or ""
    if reopen is None or not wants_second_position(options.decode_positions, options.encoder, fmt, len(jobs), cores):
        return None
    later = jobs[split_point(jobs):]
    try:
        other = open_video(reopen())
    except Exception as exc:  # the first position still does all the work
        log.info("%s: cannot open the source a second time (%s): one decode position", name, exc)
        return None
    try:
        second = DecodePass(other, name, later, params, origin, frame_duration, done, cores, abort)
        if second.seek_before(later[0].start_us):
            log.debug("%s: second decode position from %.3f s for %d of %d clips", name, later[0].span.start_s,
                      len(later), len(jobs))
            return second
    except Exception as exc:
        log.info("%s: no second decode position (%s)", name, exc)
    other.close()
    return None


def _run_second(second: DecodePass, failure: list[BaseException]) -> None:
    """The second position's thread: a failure there is its clips' (each gets the reason), not the
    run's; an interrupt there (any BaseException that is not an Exception) is the run's: it is kept
    in ``failure`` and the transcode aborted, and the calling thread raises it."""
    try:
        second.run(lambda: None)
    except NoFramesError:
        pass  # its clips carry the reason (DecodePass.finish)
    except Aborted:
        pass  # the calling thread aborted the transcode and raises its own exception
    except Exception as exc:  # pragma: no cover - DecodePass.run raises only NoFramesError
        log.exception("%s: second decode position failed", second.name)
        second.failure = second.failure or f"decoding the source failed: {exc!r}"
    except BaseException as exc:
        failure.append(exc)
        second.abort.set()
