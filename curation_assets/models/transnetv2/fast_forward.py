"""TransNetV2's forward pass on the CPU, re-arranged but computing the same function.

The package's ``nn.Module`` runs four (1,3,3) spatial and four (3,1,1) temporal 3-D convolutions
per block, each followed by batch norm. This forward computes the same outputs with fewer
operations and no per-window allocations:

* the four spatial convolutions of a block are one ``conv2d`` (their kernels stacked);
* each temporal convolution is one matmul giving its three taps, batch norm folded into its
  weights, the taps summed with time shifts (zero outside the window, as the conv's padding);
* in the 3-channel input layer the temporal taps are folded into the spatial kernels
  (:func:`_composite_weights`), cheaper there than two steps;
* from the second layer on the spatial 3x3 convolutions are computed by Winograd F(6,3) along
  the frame width (:func:`_ddcnn_forward_winograd`): a row of 6 outputs costs 8 multiplies
  instead of 18, with float32 rounding no worse than the direct conv;
* activations live in flat buffers (:class:`Workspace`) reused from window to window.

The measured cost and accuracy of each step are in the README ("Performance") and
``benchmarks/transnetv2_throughput.py --ab``; the tests hold this forward to the module's.
:func:`prepare` returns None for a module whose layout differs from the one expected here, and
the caller then runs the module's own forward.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


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
class FastParams:
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


def prepare(module: Any, winograd: bool = True) -> FastParams | None:
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
        return FastParams(
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


class Workspace:
    """Flat float32 buffers reused across windows of one video.

    The first blocks' activations of one window are tens of megabytes: allocated afresh for
    every window, glibc maps new pages each time and the page faults cost a sizeable share of
    the CPU time (README, "Performance"). Reusing these buffers, and running the spatial
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


def _ddcnn_forward(p: _DDCNNParams, x: Any, ws: Workspace, out_name: str) -> Any:
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


def _ddcnn_forward_composite(p: _DDCNNParams, x: Any, ws: Workspace, out_name: str) -> Any:
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
WINOGRAD_BT = (  # input transform (8 x 8): every entry exact in float32
    (-1, 0, 21 / 4, 0, -21 / 4, 0, 1, 0),
    (0, 1, 1, -17 / 4, -17 / 4, 1, 1, 0),
    (0, -1, 1, 17 / 4, -17 / 4, -1, 1, 0),
    (0, 1 / 2, 1 / 4, -5 / 2, -5 / 4, 2, 1, 0),
    (0, -1 / 2, 1 / 4, 5 / 2, -5 / 4, -2, 1, 0),
    (0, 2, 4, -5 / 2, -5, 1 / 2, 1, 0),
    (0, -2, 4, 5 / 2, -5, -1 / 2, 1, 0),
    (0, -1, 0, 21 / 4, 0, -21 / 4, 0, 1),
)
WINOGRAD_G = (  # filter transform (8 x 3), applied once in float64
    (-1, 0, 0),
    (-2 / 9, -2 / 9, -2 / 9),
    (-2 / 9, 2 / 9, -2 / 9),
    (1 / 90, 1 / 45, 2 / 45),
    (1 / 90, -1 / 45, 2 / 45),
    (32 / 45, 16 / 45, 8 / 45),
    (32 / 45, -16 / 45, 8 / 45),
    (0, 0, 1),
)
WINOGRAD_AT = (  # output transform (6 x 8): exact in float32
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
    g = torch.tensor(WINOGRAD_G, dtype=torch.float64)
    transformed = torch.einsum("bk,ocyk->byco", g, spatial.double())  # (8, 3, Cin, 8F)
    return _WinogradWeights(
        g=transformed.float().contiguous(),
        bt=torch.tensor(WINOGRAD_BT, dtype=torch.float32),
        at=torch.tensor(WINOGRAD_AT, dtype=torch.float32),
        temporal=torch.stack([t.detach() for t in temporal]).contiguous(),
    )


def _winograd_inputs(wp: _WinogradWeights, x: Any, v: Any, r0: int, r1: int, ws: Workspace) -> None:
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


def _ddcnn_forward_winograd(p: _DDCNNParams, x: Any, ws: Workspace, out_name: str) -> Any:
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


def _ddcnn(p: _DDCNNParams, x: Any, ws: Workspace, out_name: str) -> Any:
    if p.winograd is not None and x.shape[3] % _WINOGRAD_TILE == 0:
        return _ddcnn_forward_winograd(p, x, ws, out_name)
    if p.composite is not None:
        return _ddcnn_forward_composite(p, x, ws, out_name)
    return _ddcnn_forward(p, x, ws, out_name)


def forward_window(p: FastParams, frames: Any, ws: Workspace) -> Any:
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

