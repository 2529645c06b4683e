"""The model frames taken off the single decode pass (``model_frames=source``).

The transcode decodes each source once and feeds every clip's encoder; a :class:`ModelFrameTap`
per clip sees the same frames (``core.transcode.ClipTap``) with the timestamps they get in the
clip's mp4, and keeps exactly the frames each enabled model would pick from the clip by the rules
of :mod:`.frames`: the reference's 2 fps ``sequence`` sampling, re-sampled at up to 20 fps for
short clips, then 8 frames picked evenly (Cosmos-Embed1); 1 fps over the clip (aesthetics); 2 fps
inside each window (captions). The kept frames are resized where the model resizes them anyway
and stored beside the clip (:mod:`.frame_store`), so the model steps decode nothing.

The rules need the whole clip (how many samples there are, where the windows end), which is only
known at its last frame, so the tap keeps a frame as soon as it is picked by a sampling that may
still apply, and decides at the end with the same functions a clip decode uses. A sample time
between two frames picks one of them by the same float32 comparison ``frames.closest_indices``
makes over the whole clip, so a frame is kept only when some sample picks it (plus each possible
window end, which the samples after a window's last frame pick); the higher embedding rates stop
once the 2 fps sampling has enough samples. Memory: the picked frames of the clip, resized (about
20 per 10 s clip for embeddings at 224², JPEG images for captions).

When the timestamps are known before decoding (a stream-copied clip decoded from its own bytes),
:meth:`ModelFrameTap.plan` computes the exact indices up front and the decoder may skip the rest.

Plain Python (numpy, PyAV frames, Pillow; torch only for the aesthetic resize, the model's own).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from ..core.windows import MIN_REMAINDER, WINDOW_SIZE, compute_windows
from ._weights import ModelWeightsMissing
from .aesthetics import CLIP_SHORT_SIDE, resize_frames
from .captions import DEFAULT_JPEG_QUALITY, encode_jpeg
from .embeddings import NUM_VIDEO_FRAMES, VARIANT_RESOLUTIONS, CosmosEmbedder, normalize_variant, resize_for_processor
from .frame_store import AestheticFrames, CaptionFrames, EmbeddingFrames, StoredFrames
from .frames import (
    TooFewFrames,
    closest_indices,
    embedding_indices,
    embedding_rates,
    pts_seconds,
    sample_grid,
    window_indices,
)

log = logging.getLogger(__name__)

__all__ = ["FrameRequest", "ModelFrameTap", "TapMiss", "frame_request"]

EMBEDDING, AESTHETIC, CAPTION = "embedding", "aesthetic", "caption"
# A clip may end this much before its span and still be counted as long (``expected_s``)
EXPECTED_MARGIN_S = 0.5


class TapMiss(RuntimeError):
    """A frame the rules pick at the end of the clip was not kept (never expected: a bug)."""


@dataclass(frozen=True)
class FrameRequest:
    """Which model frames to keep per clip; ``tap`` is a ``core.transcode.ClipTapFactory``."""

    embedding: EmbeddingFrames | None = None
    aesthetic: AestheticFrames | None = None
    caption: CaptionFrames | None = None

    def tap(self, time_base: Fraction, pix_fmt: str | None, expected_s: float | None = None) -> ModelFrameTap:
        return ModelFrameTap(self, time_base, pix_fmt, expected_s)


def frame_request(options: Any) -> FrameRequest | None:
    """The frames the model steps of ``options`` (a ``PipelineOptions``) need, or None when none
    are to be taken from the decode pass (``model_frames=clip``, or no model step on)."""
    if options.model_frames != "source":
        return None
    request = FrameRequest(
        embedding=EmbeddingFrames(NUM_VIDEO_FRAMES, VARIANT_RESOLUTIONS[normalize_variant(options.embedding_algorithm)])
        if _embeddings_will_run(options) else None,
        aesthetic=AestheticFrames(CLIP_SHORT_SIDE) if options.aesthetic_threshold is not None else None,
        caption=CaptionFrames(DEFAULT_JPEG_QUALITY) if options.generate_captions else None,
    )
    if request.embedding is None and request.aesthetic is None and request.caption is None:
        return None
    return request


def _embeddings_will_run(options: Any) -> bool:
    """Embeddings on, or ``auto`` with the weights on disk (or downloadable): in ``auto`` mode without
    them the step is skipped, and frames kept for it would be wasted."""
    if options.generate_embeddings != "auto":
        return options.generate_embeddings == "on"
    if options.allow_model_download:
        return True
    try:
        CosmosEmbedder(options.embedding_algorithm, model_dir=options.model_dir or None).resolve()
    except ModelWeightsMissing:
        return False
    return True


class _Sampling:
    """One sampling of the clip at ``fps`` from the time of frame ``origin``: its sample times (grown
    as the clip goes on) and the frames they pick. ``last`` is the last frame it may pick (a
    window's furthest possible end), None for the whole clip."""

    def __init__(self, purpose: str, fps: float, origin: int, t0: np.float32, last: int | None) -> None:
        self.purpose, self.fps, self.origin, self.t0, self.last = purpose, fps, origin, t0, last
        self.picks: set[int] = set()
        self._span = 8.0
        self._times = sample_grid(t0, t0 + np.float32(self._span), fps)

    def times_in(self, lo: np.float32 | None, hi: np.float32) -> np.ndarray:
        """Sample times ``s`` with ``lo < s <= hi`` (``lo`` None: ``s <= hi``)."""
        while self._times[-1] <= hi:
            self._span *= 2
            self._times = sample_grid(self.t0, self.t0 + np.float32(self._span), self.fps)
        i = 0 if lo is None else int(np.searchsorted(self._times, lo, side="right"))
        j = int(np.searchsorted(self._times, hi, side="right"))
        return self._times[i:j]


class ModelFrameTap:
    """Keeps one clip's model frames while its frames stream past (a ``core.transcode.ClipTap``).

    ``time_base``: the clip's video time base (the pts given to :meth:`add` count in it);
    ``pix_fmt``: the pixel format the clip's encoder stores, so a frame is converted to RGB from
    what the clip holds (None: the frames are the clip's own). ``expected_s``: how long the clip
    should be (its span): when that is long enough for the first embedding rate to give enough
    samples, the re-sampling rates are not followed at all; should the clip end early after all
    (a truncated source), its embedding frames are not stored and that step decodes the clip.
    """

    def __init__(self, request: FrameRequest, time_base: Fraction, pix_fmt: str | None,
                 expected_s: float | None = None) -> None:
        self.request = request
        self.time_base = Fraction(time_base)
        self.pix_fmt = pix_fmt
        self._times: list[np.float32] = []
        self._samplings: list[_Sampling] = []
        self._pending: tuple[int, Any] | None = None
        self._kept: dict[str, dict[int, Any]] = {EMBEDDING: {}, AESTHETIC: {}, CAPTION: {}}
        self._plan: dict[str, set[int]] | None = None
        self._planned_count = 0
        self._embedding_rates = embedding_rates(request.embedding.fps, request.embedding.max_fps) \
            if request.embedding else []
        if request.embedding is not None and expected_s is not None and \
                len(sample_grid(np.float32(0), np.float32(expected_s - EXPECTED_MARGIN_S), request.embedding.fps)) \
                >= request.embedding.num_frames:
            self._embedding_rates = self._embedding_rates[:1]
        self._embedding_settled = request.embedding is None or len(self._embedding_rates) == 1

    # -- the rules, applied to the whole clip ------------------------------------------------------
    def _final(self, ts: np.ndarray) -> dict[str, Any]:
        """Per model the indices a clip decode would pick from a clip with these timestamps."""
        out: dict[str, Any] = {}
        r = self.request
        if r.embedding is not None:
            try:
                out[EMBEDDING] = (embedding_indices(ts, r.embedding.num_frames, r.embedding.fps, r.embedding.max_fps),
                                  None)
            except TooFewFrames as exc:
                out[EMBEDDING] = ([], str(exc))
        if r.aesthetic is not None:
            out[AESTHETIC] = [int(i) for i in window_indices(ts, [(0, None)], r.aesthetic.fps)[0]]
        if r.caption is not None:
            windows = compute_windows(len(ts))
            out[CAPTION] = (windows, [[int(i) for i in w] for w in window_indices(ts, windows, r.caption.fps)])
        return out

    @staticmethod
    def _needed(final: dict[str, Any]) -> dict[str, set[int]]:
        needed = {EMBEDDING: set(final[EMBEDDING][0]) if EMBEDDING in final else set(),
                  AESTHETIC: set(final.get(AESTHETIC, ())), CAPTION: set()}
        for per_window in final.get(CAPTION, ((), ()))[1]:
            needed[CAPTION].update(per_window)
        return needed

    # -- ClipTap -----------------------------------------------------------------------------------
    def plan(self, pts: list[int]) -> set[int]:
        """All of the clip's timestamps known up front: keep exactly the frames the rules pick."""
        self._plan = self._needed(self._final(pts_seconds(pts, self.time_base)))
        self._planned_count = len(pts)
        return set().union(*self._plan.values())

    def add(self, index: int, pts: int, frame: Any) -> None:
        if index != len(self._times):
            raise ValueError(f"frames must come in order: got {index}, expected {len(self._times)}")
        t = pts_seconds([pts], self.time_base)[0]
        if self._times and t < self._times[-1]:
            raise ValueError(f"frame {index} at {float(t):.6f} s comes before the previous frame")
        self._times.append(t)
        if self._plan is not None:
            wants = {p for p, indices in self._plan.items() if index in indices}
            if wants:
                if frame is None:
                    raise TapMiss(f"frame {index} is needed but was not decoded")
                self._keep(index, frame, wants)
            return
        self._pick(index, t)
        if self._pending is not None:
            self._settle(*self._pending)
        self._pending = (index, frame)
        self._samplings = [s for s in self._samplings if s.last is None or s.last > index]

    def finish(self) -> bytes | None:
        n = len(self._times)
        if n == 0:
            return None
        if self._plan is not None and n != self._planned_count:
            raise TapMiss(f"{n} frames decoded, the clip's timestamps promise {self._planned_count}")
        if self._pending is not None:  # the last frame: picked by any sample past the clip's end
            index, frame = self._pending
            self._keep(index, frame, {p for p in (EMBEDDING, AESTHETIC, CAPTION) if self._wanted(p)})
            self._pending = None
        final = self._final(np.asarray(self._times, dtype=np.float32))
        kw: dict[str, Any] = {}
        r = self.request
        if r.embedding is not None:
            indices, too_short = final[EMBEDDING]
            if too_short or all(i in self._kept[EMBEDDING] for i in indices) or self._plan is not None:
                frames = None if too_short else np.stack([self._get(EMBEDDING, i) for i in indices])
                kw["embedding"] = (r.embedding, indices, frames, too_short)
            else:  # shorter than its span, re-sampled at rates not followed: that step decodes the clip
                log.info("clip of %d frames ended before its span: embedding frames not kept", n)
        if r.aesthetic is not None:
            indices = final[AESTHETIC]
            kw["aesthetic"] = (r.aesthetic, indices, np.stack([self._get(AESTHETIC, i) for i in indices]))
        if r.caption is not None:
            windows, per_window = final[CAPTION]
            number: dict[int, int] = {}
            jpegs: list[bytes] = []
            images = []
            for indices in per_window:
                for i in indices:
                    if i not in number:
                        number[i] = len(jpegs)
                        jpegs.append(self._get(CAPTION, i))
                images.append([number[i] for i in indices])
            kw["caption"] = (r.caption, windows, per_window, images, jpegs)
        self._kept = {EMBEDDING: {}, AESTHETIC: {}, CAPTION: {}}
        return StoredFrames.to_bytes(n, **kw)

    # -- streaming ---------------------------------------------------------------------------------
    def _wanted(self, purpose: str) -> bool:
        return getattr(self.request, purpose) is not None

    def _open_samplings(self, index: int, t: np.float32) -> None:
        r = self.request
        if index == 0:
            if r.embedding is not None:
                self._samplings += [_Sampling(EMBEDDING, rate, 0, t, None) for rate in self._embedding_rates]
            if r.aesthetic is not None:
                self._samplings.append(_Sampling(AESTHETIC, r.aesthetic.fps, 0, t, None))
        if r.caption is not None and index % WINDOW_SIZE == 0:  # a window may start here
            # and end as late as the next block's remainder, when that joins this window
            self._samplings.append(_Sampling(CAPTION, r.caption.fps, index, t, index + WINDOW_SIZE + MIN_REMAINDER - 1))

    def _pick(self, index: int, t: np.float32) -> None:
        """The sample times up to ``t`` that frame ``index`` decides: each picks ``index`` or the
        frame before, whichever ``closest_indices`` finds closer (ties: the earlier)."""
        self._open_samplings(index, t)
        prev = self._times[-2] if index else None
        pair = np.asarray([prev if prev is not None else t, t], dtype=np.float32)
        for s in self._samplings:
            if s.origin == index:  # the sampling's first time is this frame's
                if len(s.times_in(None, t)):
                    s.picks.add(index)
                continue
            times = s.times_in(prev, t)
            if len(times):
                for k in set(closest_indices(pair, times).tolist()):
                    s.picks.add(index - 1 + k)
        self._settle_embedding_rates(t)

    def _settle_embedding_rates(self, t: np.float32) -> None:
        """Once a rate has enough samples for the clip so far it has them for the whole clip (more
        frames only add samples): the higher rates are never used, their frames can go."""
        if self._embedding_settled:
            return
        spec = self.request.embedding
        assert spec is not None  # rates exist only for a request with an embedding
        for k, rate in enumerate(self._embedding_rates):
            if len(sample_grid(self._times[0], t, rate)) >= spec.num_frames:
                dead = {r for r in self._embedding_rates[k + 1:]}
                self._samplings = [s for s in self._samplings if not (s.purpose == EMBEDDING and s.fps in dead)]
                live = set().union(*(s.picks for s in self._samplings if s.purpose == EMBEDDING))
                for i in [i for i in self._kept[EMBEDDING] if i not in live]:
                    del self._kept[EMBEDDING][i]
                self._embedding_settled = k == 0
                return

    def _settle(self, index: int, frame: Any) -> None:
        """Frame ``index``'s neighbours are both known: keep it for the models whose samples pick it."""
        wants = {s.purpose for s in self._samplings if index in s.picks}
        if self.request.caption is not None and index % WINDOW_SIZE == WINDOW_SIZE - 1:
            wants.add(CAPTION)  # a window's last frame: the samples after it pick it
        if wants:
            self._keep(index, frame, wants)

    # -- the kept frames ---------------------------------------------------------------------------
    def _keep(self, index: int, frame: Any, purposes: set[str]) -> None:
        purposes = {p for p in purposes if index not in self._kept[p]}
        if not purposes:
            return
        if self.pix_fmt and frame.format.name != self.pix_fmt:
            frame = frame.reformat(format=self.pix_fmt)  # what the encoder stores
        rgb = frame.to_ndarray(format="rgb24")  # as a clip decode converts it
        r = self.request
        # a purpose is planned only for a request that has its spec
        if EMBEDDING in purposes and r.embedding is not None:
            self._kept[EMBEDDING][index] = resize_for_processor(rgb, r.embedding.resolution)
        if AESTHETIC in purposes and r.aesthetic is not None:
            self._kept[AESTHETIC][index] = resize_frames(rgb[None], r.aesthetic.short_side)[0]
        if CAPTION in purposes and r.caption is not None:
            self._kept[CAPTION][index] = encode_jpeg(rgb, r.caption.jpeg_quality, r.caption.max_side)

    def _get(self, purpose: str, index: int) -> Any:
        try:
            return self._kept[purpose][index]
        except KeyError:
            raise TapMiss(f"{purpose} frame {index} was picked but not kept") from None
