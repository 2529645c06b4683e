"""Cut a source video into clips: decode once, fan the frames out to one encoder per clip.

Why one module over the project's 500-line guide: the single pass (:func:`transcode_clips`), the
per-clip encoder (``_ClipMuxer`` and ``_ClipJob``, one thread each) and the helpers that pick an
encoder's pixel format, size and time base are one mechanism. The encoders exist only for the
pass, hold the frames it shares with them and follow its timestamp rule; split apart, the rule
that a frame at ``t`` belongs to ``start_s <= t < end_s`` would be read in one file and kept in
another.

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

import io
import logging
import math
import queue
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cache
from typing import Any, Protocol, cast

import av

from .cpus import usable_cores
from .model import Span
from .options import DEFAULT_X264_PRESET
from .previews import PreviewCollector, PreviewOptions
from .probe import frame_period, frame_rate, open_video, probe_clip, source_name, span_origin_of
from .timing import to_us as _to_us  # the span rule's microseconds (core.timing.in_span)
from .windows import compute_windows
from .x264_cpu import x264_options

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

# Encoders this module knows how to drive; available_encoders() reports the usable subset.
KNOWN_ENCODERS = ("libx264", "libvpx-vp9", "h264_nvenc")
# Frames (or audio packets) waiting per clip encoder. Small: libx264 keeps its own lookahead.
QUEUE_DEPTH = 8
# Pixel formats passed to an encoder unchanged (8-bit 4:2:0); everything else becomes yuv420p.
_PASSTHROUGH_PIX_FMTS = ("yuv420p", "yuvj420p")


class TranscodeError(RuntimeError):
    """A transcode could not run at all (bad options, unreadable source)."""


class SourceReadError(TranscodeError):
    """The source video could not be opened or has no video stream."""


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


@dataclass(frozen=True)
class TranscodeOptions:
    encoder: str = "libx264"  # also "libvpx-vp9", "h264_nvenc" (only where available_encoders() lists it)
    encoder_threads: int = 0  # 0 = auto: see auto_encoder_threads() (libx264: 1.5 per usable core)
    preview: PreviewOptions | None = None  # None = no previews
    preset: str = DEFAULT_X264_PRESET  # libx264 only
    tap: ClipTapFactory | None = None  # a ClipTap per clip (the model frames), None = none


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


# ----------------------------------------------------------------------------- helpers


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
        ctx = cast(av.VideoCodecContext, av.codec.CodecContext.create(codec))  # a video encoder's
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


def _target_pix_fmt(encoder: str, source_fmt: str | None) -> str:
    supported = [f.name for f in (av.codec.Codec(encoder, "w").video_formats or [])]
    if source_fmt in _PASSTHROUGH_PIX_FMTS and (not supported or source_fmt in supported):
        return source_fmt
    return "yuv420p"


def _encodable_size(encoder: str, pix_fmt: str, width: int, height: int) -> tuple[int, int]:
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
    this before the clip exists; :class:`_ClipMuxer` checks it against the finished clip.
    """
    scale = Fraction(time_base).denominator
    while scale < 10000:
        scale *= 2
    return Fraction(1, scale)


def _rescale(pts: int, src: Fraction, dst: Fraction) -> int:
    """``av_rescale_q`` (round to nearest, halves away from zero): exact for mp4_time_base."""
    x = Fraction(pts) * src / dst
    return math.floor(x + Fraction(1, 2)) if x >= 0 else -math.floor(-x + Fraction(1, 2))


def _clone_frame(frame: av.VideoFrame, target_fmt: str) -> av.VideoFrame:
    """An independent copy of a decoded frame, for a second clip encoding the same frame."""
    if frame.format.name != target_fmt:
        copy = frame.reformat(format=target_fmt)  # a new frame; the encoder wants this format anyway
    else:
        copy = av.VideoFrame.from_ndarray(frame.to_ndarray(), format=frame.format.name)
    copy.pts = frame.pts
    copy.time_base = frame.time_base
    return copy


# ----------------------------------------------------------------------------- per-clip encoder


@dataclass
class _VideoParams:
    encoder: str
    threads: int
    time_base: Fraction
    rate: Fraction | None
    pix_fmt: str
    color: dict[str, int] = field(default_factory=dict)
    preset: str = DEFAULT_X264_PRESET


class _NoFrames(Exception):
    pass


class _ClipMuxer:
    """One clip's mp4 in memory: video encoder plus copied audio. Used by one thread only."""

    def __init__(self, params: _VideoParams, audio_template: Any) -> None:
        self.params = params
        self.audio_template = audio_template
        self.buf = io.BytesIO()
        self.container: Any = None
        self.vstream: Any = None
        self.astream: Any = None
        self.p0: int | None = None  # source pts of the clip's first frame
        self.t0: Fraction = Fraction(0)
        self.last_pts = -1
        self.muxed_time_base: Fraction | None = None
        self.pending_audio: list[tuple[bytes, int, int | None, int | None, Fraction]] = []

    def _open(self, frame: av.VideoFrame) -> None:
        p = self.params
        self.container = av.open(self.buf, mode="w", format="mp4")
        # preset medium is x264's default (passed explicitly: same bytes, tested); x264_cpu: why no AVX-512
        options = {"preset": p.preset, **x264_options()} if p.encoder == "libx264" else {}
        vs = self.container.add_stream(p.encoder, rate=p.rate, options=options)
        vs.width, vs.height = _encodable_size(p.encoder, p.pix_fmt, frame.width, frame.height)
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
        assert self.p0 is not None  # set by the first frame, above
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


class _ClipJob:
    """A clip in flight: its queue, its encoder thread and what the demux loop knows about it."""

    def __init__(self, index: int, span: Span, params: _VideoParams, audio_template: Any,
                 preview: PreviewOptions | None, frame_duration: Fraction, done: queue.Queue,
                 tap: ClipTapFactory | None = None) -> None:
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
        self.q: queue.Queue = queue.Queue(maxsize=QUEUE_DEPTH)
        self.thread = threading.Thread(target=self._run, name=f"clip-encoder-{index}", daemon=True)
        self.video_done = False
        self.closed = False
        self.output = ClipOutput(span=span, data=None, num_frames=0, windows=[], previews={}, error=None)

    # -- demux-loop side
    def start(self) -> None:
        self.thread.start()

    def put(self, item: Any) -> None:
        self.q.put(item)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.q.put(None)

    # -- encoder-thread side
    def _run(self) -> None:
        out = self.output
        muxer = _ClipMuxer(self.params, self.audio_template)
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
                item = self.q.get()
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
                            tap.add(count - 1, _rescale(pts, self.params.time_base, clip_tb), frame)
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
        except BaseException as exc:  # never leave the demux loop waiting on a dead thread
            error = error or f"clip encoder crashed: {exc!r}"
            while True:  # drain so the producer never blocks
                try:
                    if self.q.get(timeout=0.5) is None:
                        break
                except queue.Empty:
                    if self.closed:
                        break
        finally:
            if error is not None:
                muxer.abort()
                out.data = None
            out.error = error
            out.preview_error = preview_error
            if self.preview and not out.previews and out.windows and preview_error is None and error is None:
                out.preview_error = "no preview produced"
            self.done.put(self)

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


# ----------------------------------------------------------------------------- the single pass


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
    params = _VideoParams(
        encoder=options.encoder,
        threads=threads,
        time_base=Fraction(vtb),
        rate=rate,
        pix_fmt=_target_pix_fmt(options.encoder, vcc.pix_fmt),
        color={k: getattr(vcc, k) for k in ("color_range", "color_primaries", "color_trc", "colorspace")
               if getattr(vcc, k, None)},
        preset=options.preset,
    )

    done: queue.Queue = queue.Queue()
    jobs = [_ClipJob(i, s, params, astream, options.preview, frame_duration, done, options.tap)
            for i, s in enumerate(spans)]
    outputs: list[ClipOutput | None] = [None] * len(jobs)
    pending: deque[_ClipJob] = deque()
    active: list[_ClipJob] = []
    audio_pos_us = -(1 << 62)
    audio_eof = astream is None
    last_t: Fraction | None = None
    started: list[_ClipJob] = []

    def report(job: _ClipJob) -> None:
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
            f = frame if k == len(targets) - 1 else _clone_frame(frame, params.pix_fmt)
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
