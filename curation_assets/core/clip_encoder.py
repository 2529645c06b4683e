"""One clip's encoder: its own thread, fed the source's decoded frames and audio packets by the
single pass (:mod:`.transcode`) through a small bounded queue, writing the clip's mp4 in memory,
its previews (:mod:`.previews`) and what the clip tap keeps (the model frames).

The pass decides which frames belong to the clip (``start_s <= t < end_s``, in microseconds); this
module encodes what it is given: timestamps from 0 in the source's time base, libx264 at the
chosen preset (x264's defaults otherwise), audio packets remuxed without re-encoding. Plain Python
(PyAV); no dagster.
"""

from __future__ import annotations

import io
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Protocol

import av

from .encoders import encodable_size, mp4_time_base, rescale
from .model import Span
from .options import DEFAULT_X264_PRESET
from .previews import PreviewCollector, PreviewOptions
from .timing import to_us as _to_us  # the span rule's microseconds (core.timing.in_span)
from .windows import compute_windows
from .x264_cpu import x264_options

log = logging.getLogger(__name__)

# Frames (or audio packets) waiting per clip encoder. Small: libx264 keeps its own lookahead.
QUEUE_DEPTH = 8
# How often a wait between the transcode's threads (a full or empty clip queue, the finished clips)
# looks whether the transcode was aborted: no such wait is without a timeout.
POLL_S = 0.05


class Aborted(BaseException):
    """The transcode was aborted (its ``abort`` event set: any BaseException in one of its threads,
    Dagster's interrupt among them): a wait between its threads gives up instead of waiting for a
    thread that stopped. Internal to the transcode: ``transcode_clips`` never raises it."""


class ClipTap(Protocol):
    """Takes what it needs from one clip's frames as they stream past (model frames: ``models.tap``).

    ``add`` is called for every frame of the clip in presentation order with its index, its
    presentation timestamp in the clip (in the time base the tap was made with) and the frame,
    or None for a frame the caller did not decode because :meth:`plan` did not list it.
    ``finish`` returns what the tap keeps for the clip (bytes), or None.
    """

    def plan(self, pts: list[int]) -> set[int]:
        """Every timestamp of the clip known up front (a clip decoded from its own bytes): the
        indices of the frames ``add`` needs pixels of."""
        ...

    def add(self, index: int, pts: int, frame: av.VideoFrame | None) -> None: ...

    def finish(self) -> bytes | None: ...


# (the clip's video time base, the pixel format its encoder stores or None when the frames are the
# clip's own decoded frames, the clip's expected duration in seconds or None) -> a tap for one clip
ClipTapFactory = Callable[[Fraction, "str | None", "float | None"], ClipTap]


@dataclass
class ClipOutput:
    span: Span
    data: bytes | None  # the mp4 bytes (None on error)
    num_frames: int  # frames encoded (the decoded count within the span)
    windows: list[tuple[int, int]]  # compute_windows(num_frames)
    previews: dict[tuple[int, int], bytes]  # animated WebP per window (when options.preview)
    error: str | None  # message for the spec's "transcode" error key
    preview_error: str | None = None  # set when previews were asked for but could not be made
    model_frames: bytes | None = None  # what the clip tap kept (TranscodeOptions.tap), None without one


@dataclass
class VideoParams:
    encoder: str
    threads: int
    time_base: Fraction
    rate: Fraction | None
    pix_fmt: str
    color: dict[str, int] = field(default_factory=dict)
    preset: str = DEFAULT_X264_PRESET
    x264_avx512: bool = False  # libx264's AVX-512 functions where they are exact (core.x264_cpu)


class _NoFrames(Exception):
    pass


class ClipMuxer:
    """One clip's mp4 in memory: video encoder plus copied audio. Used by one thread only."""

    def __init__(self, params: VideoParams, audio_template: Any) -> None:
        self.params = params
        self.audio_template = audio_template
        self.buf = io.BytesIO()
        self.container: Any = None
        self.vstream: Any = None
        self.astream: Any = None
        self.p0 = 0  # source pts of the clip's first frame (set with t0 when that frame opens the container)
        self.t0: Fraction = Fraction(0)
        self.last_pts = -1
        self.muxed_time_base: Fraction | None = None
        self.pending_audio: list[tuple[bytes, int, int | None, int | None, Fraction]] = []

    def _open(self, frame: av.VideoFrame) -> None:
        p = self.params
        self.container = av.open(self.buf, mode="w", format="mp4")
        width, height = encodable_size(p.encoder, p.pix_fmt, frame.width, frame.height)
        # preset medium is x264's default (passed explicitly: same bytes, tested); x264_cpu: when AVX-512
        options = {"preset": p.preset, **x264_options(width, avx512=p.x264_avx512)} if p.encoder == "libx264" else {}
        vs = self.container.add_stream(p.encoder, rate=p.rate, options=options)
        vs.width, vs.height = width, height
        vs.pix_fmt = p.pix_fmt
        vs.time_base = p.time_base
        cc = vs.codec_context
        cc.time_base = p.time_base
        if p.rate:
            cc.framerate = p.rate
        cc.thread_count = p.threads
        # PyAV defaults to slice threads only; ffmpeg's default (frame and slice) lets libx264
        # use frame threads, as `ffmpeg -c:v libx264` does.
        cc.thread_type = "AUTO"
        for name, value in p.color.items():
            try:
                setattr(cc, name, value)
            except Exception:  # pragma: no cover - informational fields only
                pass
        rotation = getattr(frame, "rotation", 0) or 0
        if rotation:
            try:
                vs.set_display_rotation(rotation)
            except Exception as exc:  # pragma: no cover
                log.warning("could not keep rotation %s: %s", rotation, exc)
        self.vstream = vs
        if self.audio_template is not None:
            try:
                self.astream = self.container.add_stream_from_template(self.audio_template)
            except Exception as exc:
                log.warning("audio codec %s cannot go into mp4, clip has no audio: %s",
                            self.audio_template.codec_context.name, exc)
                self.astream = None

    def add_video(self, frame: av.VideoFrame) -> tuple[int, av.VideoFrame]:
        """Encode ``frame``; returns its pts in the clip (the stream's time base) and the frame as
        given to the encoder (scaled to an even size where the source's is odd)."""
        if self.container is None:
            self._open(frame)
            self.p0 = frame.pts if frame.pts is not None else 0
            self.t0 = Fraction(self.p0) * self.params.time_base
            for item in self.pending_audio:
                self._mux_audio(*item)
            self.pending_audio.clear()
        pts = (frame.pts if frame.pts is not None else self.last_pts + 1 + self.p0) - self.p0
        if pts <= self.last_pts:  # encoders need strictly increasing pts
            pts = self.last_pts + 1
        self.last_pts = pts
        if (frame.width, frame.height) != (self.vstream.width, self.vstream.height):  # odd source size
            frame = frame.reformat(width=self.vstream.width, height=self.vstream.height, format=self.params.pix_fmt)
        frame.pts = pts
        frame.time_base = self.params.time_base
        frame.pict_type = av.video.frame.PictureType.NONE  # let the encoder choose, as ffmpeg does
        for packet in self.vstream.encode(frame):
            self.container.mux(packet)
        return pts, frame

    def add_audio(self, data: bytes, pts: int, dts: int | None, duration: int | None, tb: Fraction) -> None:
        if self.container is None:
            self.pending_audio.append((data, pts, dts, duration, tb))
        else:
            self._mux_audio(data, pts, dts, duration, tb)

    def _mux_audio(self, data: bytes, pts: int, dts: int | None, duration: int | None, tb: Fraction) -> None:
        if self.astream is None:
            return
        offset = int(round(self.t0 / tb))
        new_pts = pts - offset
        new_dts = (dts if dts is not None else pts) - offset
        if new_pts < 0 or new_dts < 0:
            return  # before the clip's first video frame
        packet = av.Packet(data)
        packet.pts, packet.dts, packet.time_base = new_pts, new_dts, tb
        if duration:
            packet.duration = duration
        packet.stream = self.astream
        self.container.mux(packet)

    def finish(self) -> bytes:
        if self.container is None:
            raise _NoFrames()
        for packet in self.vstream.encode(None):
            self.container.mux(packet)
        self.muxed_time_base = Fraction(self.vstream.time_base)  # the track timescale the muxer chose
        self.container.close()
        self.container = None
        return self.buf.getvalue()

    def abort(self) -> None:
        if self.container is not None:
            try:
                self.container.close()
            except Exception:
                pass
            self.container = None


class ClipJob:
    """A clip in flight: its queue, its encoder thread and what the demux loop knows about it."""

    def __init__(self, index: int, span: Span, params: VideoParams, audio_template: Any,
                 preview: PreviewOptions | None, frame_duration: Fraction, done: queue.Queue,
                 tap: ClipTapFactory | None = None, abort: threading.Event | None = None) -> None:
        self.index = index
        self.tap_factory = tap
        self.span = span
        self.start_us = _to_us(span.start_s)
        self.end_us = _to_us(span.end_s)
        self.params = params
        self.audio_template = audio_template
        self.preview = preview
        self.frame_duration = frame_duration
        self.done = done
        self.abort = abort if abort is not None else threading.Event()  # the transcode's, shared by its threads
        self.q: queue.Queue = queue.Queue(maxsize=QUEUE_DEPTH)
        self.thread = threading.Thread(target=self._run, name=f"clip-encoder-{index}", daemon=True)
        self.video_done = False
        self.closed = False
        self.output = ClipOutput(span=span, data=None, num_frames=0, windows=[], previews={}, error=None)

    # -- demux-loop side
    def start(self) -> None:
        self.thread.start()

    def put(self, item: Any) -> None:
        """Queue ``item`` for the encoder, waiting while its queue is full; raises :class:`Aborted`
        once the transcode is aborted (the encoder may have stopped taking)."""
        while True:
            if self.abort.is_set():
                raise Aborted()
            try:
                self.q.put(item, timeout=POLL_S)
                return
            except queue.Full:
                pass

    def close(self) -> None:
        """The clip has all its frames: the encoder flushes and reports (nothing to do once aborted:
        the encoder stops by itself)."""
        if not self.closed:
            self.closed = True
            try:
                self.put(None)
            except Aborted:
                pass

    # -- encoder-thread side
    def _take(self) -> Any:
        """The next item of the queue (None: the clip is complete); raises :class:`Aborted` once the
        transcode is aborted, whether the queue is empty (its producer may have stopped) or not."""
        while True:
            try:
                item = self.q.get(timeout=POLL_S)
            except queue.Empty:
                item = queue.Empty
            if self.abort.is_set():
                raise Aborted()
            if item is not queue.Empty:
                return item

    def _run(self) -> None:
        out = self.output
        muxer = ClipMuxer(self.params, self.audio_template)
        collector = PreviewCollector(self.preview, self.frame_duration) if self.preview else None
        clip_tb = mp4_time_base(self.params.time_base)
        tap = None
        if self.tap_factory is not None:
            try:
                tap = self.tap_factory(clip_tb, self.params.pix_fmt, self.span.end_s - self.span.start_s)
            except Exception as exc:  # the model steps then decode the clip instead
                log.warning("clip %d: no model frames (%s)", self.index, exc)
        error: str | None = None
        preview_error: str | None = None
        count = 0
        try:
            while True:
                item = self._take()
                if item is None:
                    break
                kind = item[0]
                if kind == "v":
                    _, frame, t = item
                    if collector is not None and preview_error is None:
                        try:
                            collector.add(count, t, frame)
                        except Exception as exc:
                            preview_error = f"preview frame {count}: {exc}"
                    count += 1
                    if error is None:
                        try:
                            pts, frame = muxer.add_video(frame)
                        except Exception as exc:
                            error = f"encoding frame {count - 1} with {self.params.encoder} failed: {exc}"
                    if tap is not None and error is None:
                        try:
                            tap.add(count - 1, rescale(pts, self.params.time_base, clip_tb), frame)
                        except Exception as exc:  # the model steps then decode the clip instead
                            log.warning("clip %d: model frames not kept (frame %d: %s)", self.index, count - 1, exc)
                            tap = None
                elif error is None:
                    try:
                        muxer.add_audio(*item[1:])
                    except Exception as exc:
                        error = f"muxing audio failed: {exc}"
            out.num_frames = count
            out.windows = compute_windows(count)
            if error is None:
                try:
                    out.data = muxer.finish()
                except _NoFrames:
                    error = (f"no video frames in span [{self.span.start_s:.3f}, {self.span.end_s:.3f}) s "
                             "(past the end of the source?)")
                except Exception as exc:
                    error = f"finishing the {self.params.encoder} encode failed: {exc}"
            if tap is not None and error is None:
                out.model_frames = self._tap_result(tap, muxer.muxed_time_base, clip_tb)
            if collector is not None and count and preview_error is None:
                try:
                    out.previews = collector.finish()
                except Exception as exc:
                    preview_error = f"preview encoding failed: {exc}"
        except Aborted:
            error = "the transcode was aborted"  # its outputs are not used: nothing else to do
        except BaseException as exc:  # never leave the demux loop waiting on a dead thread
            error = error or f"clip encoder crashed: {exc!r}"
            self._drain()
        finally:
            if error is not None:
                muxer.abort()
                out.data = None
            out.error = error
            out.preview_error = preview_error
            if self.preview and not out.previews and out.windows and preview_error is None and error is None:
                out.preview_error = "no preview produced"
            self.done.put(self)

    def _drain(self) -> None:
        """Take the rest of the queue unused until the clip is closed (its producer then never waits
        on a full queue) or the transcode is aborted."""
        while not self.abort.is_set():
            try:
                if self.q.get(timeout=POLL_S) is None:
                    return
            except queue.Empty:
                if self.closed:
                    return

    def _tap_result(self, tap: ClipTap, muxed: Fraction | None, predicted: Fraction) -> bytes | None:
        if muxed != predicted:  # the tap's timestamps would not be the clip's: keep nothing
            log.warning("clip %d: the muxer chose time base %s, not %s: model frames not kept", self.index, muxed,
                        predicted)
            return None
        try:
            return tap.finish()
        except Exception as exc:
            log.warning("clip %d: model frames not kept (%s)", self.index, exc)
            return None
