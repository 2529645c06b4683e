"""One decode position of the transcode: a demux and decode loop that feeds its clips' encoders.

The single pass of :mod:`.transcode` is one :class:`DecodePass` over the whole source. Where the
cores would idle (x264's per-clip start and flush, its lookahead ramp, the serial decode), a
second pass over the same source, opened again and positioned at a keyframe before the later
clips, encodes those clips at the same time (:func:`split_point`, :func:`second_position`). Each
clip still gets every one of its frames, the same frames (a decode from a keyframe gives the
pictures a decode from the start gives), with its encoder's thread count and parameters unchanged,
so its bytes are the same (tested).

A second position is only taken on demuxers that seek each stream by its own sample index (the
mov/mp4 family), so the frames and audio packets after the seek are those a read from the start
gives; and only when the first frame decoded after the seek lies at or before the first clip's
start (checked before any encoder starts).

The passes and the clip encoders share the transcode's ``abort`` event: any BaseException that
ends a pass (Dagster's interrupt raised in the calling thread at whatever it is doing, a stop, a
crash of the second position's thread) sets it, and every wait between these threads (a full or
empty clip queue) gives up once it is set (:class:`~.clip_encoder.Aborted`), so no thread waits for
one that stopped. Plain Python (PyAV); no dagster.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av

from .clip_encoder import Aborted, ClipJob, VideoParams
from .encoders import clone_frame
from .timing import to_us as _to_us  # the span rule's microseconds (core.timing.in_span)

log = logging.getLogger(__name__)

# Demuxers (PyAV's ``container.format.name`` lists them comma-separated) that seek each stream by
# its own index: the frames and audio packets after a seek are those of a read from the start.
SEEKABLE_FORMATS = frozenset({"mov", "mp4"})
# Encoders a second concurrent clip can use (NVENC sessions are limited per GPU on many cards).
CONCURRENT_ENCODERS = frozenset({"libx264", "libvpx-vp9"})


class NoFramesError(Exception):
    """No video frame could be decoded by a pass that had clips to feed."""


def decoder_threads(cores: int) -> int:
    """The source decoder's threads: ffmpeg's own auto rule."""
    return min(16, cores + 1)


class DecodePass:
    """Reads ``container`` from where it stands and feeds the frames and audio packets of ``jobs``
    (sorted by start) to their clip encoders; a job's encoder reports itself on ``done`` when its
    clip is finished, and a job never started is put there with its error by :meth:`finish`.
    ``abort`` is the transcode's (the jobs' own): the pass stops at its next packet once it is set."""

    def __init__(self, container: Any, name: str, jobs: list[ClipJob], params: VideoParams, origin: Fraction,
                 frame_duration: Fraction, done: queue.Queue, cores: int,
                 abort: threading.Event | None = None) -> None:
        self.container = container
        self.abort = abort if abort is not None else threading.Event()
        self.name = name
        self.params = params
        self.origin = origin
        self.frame_duration = frame_duration
        self.done = done
        self.vstream = container.streams.video[0]
        self.astream = container.streams.audio[0] if container.streams.audio else None
        self.vstream.thread_type = "AUTO"
        self.vstream.codec_context.thread_count = decoder_threads(cores)
        self.vtb = self.vstream.time_base or Fraction(1, 90000)
        self.pending: deque[ClipJob] = deque(jobs)
        self.active: list[ClipJob] = []
        self.started: list[ClipJob] = []
        self.audio_pos_us = -(1 << 62)
        self.audio_eof = self.astream is None
        self.last_t: Fraction | None = None
        self.failure: str | None = None  # why the pass stopped early, for the clips it never reached

    # -- positioning (a second pass)
    def seek_before(self, start_us: int) -> bool:
        """Position the pass at the keyframe at or before span time ``start_us`` and check that the
        first frame decoded there is not later (a demuxer that seeks by decode time, or an index that
        is off, could land after it); positioned again at that keyframe with the decoder flushed.
        False (one decode position then) when the seek lands after the start."""
        target = int((self.origin + Fraction(start_us, 1_000_000)) / self.vtb)
        self._seek(target)
        first = self._first_frame_us()
        if first is None or first > start_us:
            log.info("%s: a seek to %.3f s lands at %s: one decode position", self.name, start_us / 1e6,
                     "the end" if first is None else f"{first / 1e6:.3f} s")
            return False
        self._seek(target)
        return True

    def _seek(self, target: int) -> None:
        self.container.seek(target, stream=self.vstream, backward=True, any_frame=False)
        self.vstream.codec_context.flush_buffers()

    def _first_frame_us(self) -> int | None:
        for packet in self.container.demux(self.vstream):
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                continue
            for frame in frames:
                if frame.pts is None:
                    return None  # untimed frames: the position cannot be checked
                return _to_us(Fraction(frame.pts) * self.vtb - self.origin)
        return None

    # -- the loop
    def run(self, after_packet: Callable[[], None]) -> None:
        """Demux and decode until every job is fed (or the source ends), calling ``after_packet``
        after each packet; :meth:`finish` runs on the way out, whatever happens. Raises
        :class:`NoFramesError` when jobs were waiting and no frame decoded at all, and
        :class:`~.clip_encoder.Aborted` once the transcode is aborted; any other BaseException
        that is not an Exception (an interrupt, raised by ``after_packet`` or at any moment) aborts
        the transcode on its way out."""
        streams = [s for s in (self.vstream, self.astream) if s is not None]
        decode_errors = 0
        had_work = bool(self.pending)
        try:
            try:
                for packet in self.container.demux(streams):
                    if self.abort.is_set():
                        self.failure = "the transcode was aborted"
                        raise Aborted()
                    if packet.stream is self.astream:
                        if packet.size == 0 and packet.pts is None:
                            self.audio_eof = True
                            self._close_finished()
                        else:
                            self._on_audio(packet)
                        continue
                    try:
                        frames = packet.decode()
                    except av.error.FFmpegError as exc:  # a damaged packet: skip it, as ffmpeg does
                        decode_errors += 1
                        if decode_errors <= 3:
                            log.warning("%s: decode error at pts %s: %s", self.name, packet.pts, exc)
                        continue
                    for frame in frames:
                        self._on_frame(frame)
                    after_packet()
                    if not self.pending and not self.active:
                        return  # every span is behind us: no need to read the rest of the source
            except av.error.FFmpegError as exc:
                if self.last_t is None:
                    self.failure = f"cannot read video source {self.name!r}: {exc}"
                    raise NoFramesError(self.failure) from exc
                log.warning("%s: reading stopped at %.3f s: %s", self.name, float(self.last_t), exc)
            if self.pending or self.active:
                try:
                    for frame in self.vstream.codec_context.decode(None):
                        self._on_frame(frame)
                except av.error.FFmpegError:
                    pass
            if had_work and self.last_t is None and not self.started:
                self.failure = f"cannot read video source {self.name!r}: no video frame could be decoded"
                raise NoFramesError(self.failure)
        except BaseException as exc:
            if not isinstance(exc, Exception):  # set first: finish() then waits on no encoder
                self.abort.set()
            raise
        finally:
            self.finish()

    def finish(self) -> None:
        """Close every clip still open (its encoder flushes and reports; once the transcode is
        aborted, it stops instead) and report the clips the pass never reached, with why."""
        self.audio_eof = True
        for job in self.active:
            job.video_done = True
        self._close_finished()
        for job in self.pending:  # the source ends before the span starts (or the pass stopped)
            end = float((self.last_t or self.origin) - self.origin + self.frame_duration)
            job.output.error = self.failure or (f"no video frames in span [{job.span.start_s:.3f}, "
                                                f"{job.span.end_s:.3f}) s (source ends at {end:.3f} s)")
            self.done.put(job)
        self.pending.clear()

    def _activate_until(self, t_us: int) -> None:
        while self.pending and self.pending[0].start_us <= t_us:
            job = self.pending.popleft()
            job.start()
            self.started.append(job)
            self.active.append(job)

    def _close_finished(self) -> None:
        still = []
        for job in self.active:
            if job.video_done and (self.audio_eof or self.audio_pos_us >= job.end_us):
                job.close()
            else:
                still.append(job)
        self.active[:] = still

    def _on_frame(self, frame: av.VideoFrame) -> None:
        if frame.pts is not None:
            t = Fraction(frame.pts) * self.vtb
        else:
            t = (self.last_t + self.frame_duration) if self.last_t is not None else Fraction(0)
            frame.pts = int(round(t / self.vtb))
            frame.time_base = self.vtb
        self.last_t = t
        t_us = _to_us(t - self.origin)
        self._activate_until(t_us)
        targets = []
        for job in self.active:
            if t_us >= job.end_us:
                job.video_done = True
            elif job.start_us <= t_us:
                targets.append(job)
        for k, job in enumerate(targets):
            f = frame if k == len(targets) - 1 else clone_frame(frame, self.params.pix_fmt)
            job.put(("v", f, t))
        self._close_finished()

    def _on_audio(self, packet: Any) -> None:
        if packet.pts is None:
            return
        tb = Fraction(packet.time_base)
        t_us = _to_us(Fraction(packet.pts) * tb - self.origin)
        self.audio_pos_us = max(self.audio_pos_us, t_us)
        self._activate_until(t_us)
        data = None
        for job in self.active:
            if job.start_us <= t_us < job.end_us and not job.closed:
                data = data if data is not None else bytes(packet)
                job.put(("a", data, packet.pts, packet.dts, packet.duration, tb))
        self._close_finished()


def split_point(jobs: list[ClipJob]) -> int:
    """Where to cut ``jobs`` (sorted by start) between two decode positions: the index that best
    balances the span time on each side (every job stays whole, neighbours stay together)."""
    lengths = [max(0, j.end_us - j.start_us) for j in jobs]
    total = sum(lengths)
    best, best_gap, prefix = 1, None, 0
    for k in range(1, len(jobs)):
        prefix += lengths[k - 1]
        gap = abs(2 * prefix - total)
        if best_gap is None or gap < best_gap:
            best, best_gap = k, gap
    return best


def wants_second_position(positions: int, encoder: str, format_name: str, jobs: int, cores: int) -> bool:
    """Whether a second decode position is worth taking: ``positions`` is the setting (0 = where
    the cores would idle: two or more cores; 1 = never; 2 = whenever the source allows it)."""
    if positions == 1 or jobs < 2 or encoder not in CONCURRENT_ENCODERS:
        return False
    if not SEEKABLE_FORMATS & set(format_name.split(",")):
        return False
    return positions == 2 or cores >= 2
