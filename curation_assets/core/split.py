"""Fixed-stride splitting, with the reference's arithmetic so clip ids match NeMo Curator's."""

from __future__ import annotations

from .model import Span, VideoMetadata
from .options import DEFAULTS
from .timing import frame_index


def fixed_stride_spans(
    metadata: VideoMetadata,
    *,
    clip_len_s: float = DEFAULTS.fixed_stride_split_duration,
    clip_stride_s: float | None = None,
    min_clip_length_s: float = DEFAULTS.fixed_stride_min_clip_length_s,
    limit_clips: int = 0,
) -> list[Span]:
    """Spans ``[k*stride, min(k*stride + len, duration))`` with ``duration = num_frames / fps``.

    A span shorter than ``min_clip_length_s`` is dropped (in practice only the last one).
    Frame indices are :func:`~.timing.frame_index` (``int(seconds * fps)``), exactly what the
    reference hashes into the uuid.
    ``limit_clips`` > 0 keeps only the first that many spans.
    """
    stride = clip_len_s if clip_stride_s is None else clip_stride_s
    if clip_len_s <= 0 or stride <= 0:
        raise ValueError(f"clip length and stride must be positive (got {clip_len_s}, {stride})")
    if min_clip_length_s < 0:
        raise ValueError(f"minimum clip length must not be negative (got {min_clip_length_s})")
    if not metadata.framerate or metadata.num_frames is None:
        raise ValueError("incomplete metadata: framerate and num_frames are required to split")
    fps = metadata.framerate
    if frame_index(stride, fps) < 1:
        raise ValueError(f"a stride of {stride:g} s is shorter than one frame of this {fps:g} fps video "
                         "(its clips would repeat the same frames and ids)")
    duration = metadata.num_frames / fps
    spans: list[Span] = []
    start = 0.0
    while start < duration:
        end = min(start + clip_len_s, duration)
        if end - start >= min_clip_length_s:
            spans.append(Span(start, end, frame_index(start, fps), frame_index(end, fps)))
            if limit_clips > 0 and len(spans) >= limit_clips:
                break
        start += stride
    return spans
