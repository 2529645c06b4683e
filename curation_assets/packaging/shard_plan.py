"""Which clips go into the WebDataset shards, and where: the selection, the shard settings, and the
hashes that place each video in a shard group and a split and each clip in a bucket.

Placement depends only on a video's relative path (the key its documents are stored under) and a
clip's own meta, so the same dataset is always cut the same way (``shards`` writes what this plans).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ..core.layout_read import ClipLayout, VideoLayout
from .manifest import first_caption, motion_scores
from .sample import SAMPLE_FORMAT

SPLITS = ("train", "val")
BUCKET_BY = ("none", "resolution", "aspect", "length")
#: Named aspect ratios clips are bucketed to (nearest in log ratio).
ASPECTS: dict[str, float] = {"9x16": 9 / 16, "3x4": 3 / 4, "1x1": 1.0, "4x3": 4 / 3, "16x9": 16 / 9, "21x9": 21 / 9}
DEFAULT_MAX_SHARD_BYTES = 1_000_000_000
DEFAULT_MAX_SHARD_SAMPLES = 10_000
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Selection:
    """Which clips go into the shards. By default: passed clips with a valid meta and mp4 bytes."""

    include_filtered: bool = False
    include_invalid: bool = False
    min_aesthetic_score: float | None = None
    min_motion_global_mean: float | None = None
    min_motion_per_patch_min_256: float | None = None
    require_caption: bool = False
    require_embedding: bool = False
    exclude: frozenset[str] = frozenset()  # clip uuids, e.g. semantic duplicates

    def skip_reason(self, clip: ClipLayout) -> str | None:
        """Why ``clip`` is left out, or None when it is selected."""
        meta = clip.meta
        if clip.clip_url is None:
            return "no_clip_bytes"
        if not clip.passed and not self.include_filtered:
            return "filtered"
        if meta.get("valid") is not True and not self.include_invalid:
            return "invalid"
        if clip.uuid in self.exclude:
            return "excluded"
        if self.min_aesthetic_score is not None:
            score = meta.get("aesthetic_score")
            if score is None or score < self.min_aesthetic_score:
                return "aesthetic_score"
        global_mean, per_patch = motion_scores(meta)  # None where not scored (the reference's sentinel)
        for value, least in ((global_mean, self.min_motion_global_mean),
                             (per_patch, self.min_motion_per_patch_min_256)):
            if least is not None and (value is None or value < least):
                return "motion"
        if self.require_caption and first_caption(clip) is None:
            return "no_caption"
        if self.require_embedding and clip.parquet_url is None:
            return "no_embedding"
        return None

    def record(self) -> dict[str, Any]:
        out = asdict(self)
        excluded = "\n".join(sorted(self.exclude)).encode()
        out["exclude"] = hashlib.sha256(excluded).hexdigest()[:16] if self.exclude else None
        return out


@dataclass(frozen=True)
class ShardSettings:
    """How shards are cut. ``num_groups`` fixes which videos share shards: changing it rebuilds all."""

    name: str = "default"
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES
    max_shard_samples: int = DEFAULT_MAX_SHARD_SAMPLES
    num_groups: int = 16
    val_fraction: float = 0.0
    bucket_by: str = "none"
    length_edges_s: tuple[float, ...] = (2.0, 5.0, 10.0, 20.0)
    selection: Selection = field(default_factory=Selection)

    def __post_init__(self) -> None:
        problems = []
        if not _NAME_RE.match(self.name):
            problems.append(f"name {self.name!r} (letters, digits, '.', '_', '-'; up to 64)")
        if self.max_shard_bytes < 64 * 1024:
            problems.append(f"max_shard_bytes={self.max_shard_bytes} (at least 65536)")
        if self.max_shard_samples < 1:
            problems.append(f"max_shard_samples={self.max_shard_samples} (at least 1)")
        if not 1 <= self.num_groups <= 9999:
            problems.append(f"num_groups={self.num_groups} (1 to 9999)")
        if not 0.0 <= self.val_fraction < 1.0:
            problems.append(f"val_fraction={self.val_fraction} (0 <= f < 1)")
        if self.bucket_by not in BUCKET_BY:
            problems.append(f"bucket_by={self.bucket_by!r} (one of {', '.join(BUCKET_BY)})")
        edges = tuple(self.length_edges_s)
        if not edges or any(e <= 0 for e in edges) or list(edges) != sorted(set(edges)):
            problems.append(f"length_edges_s={edges} (increasing positive seconds)")
        if problems:
            raise ValueError("invalid shard settings: " + "; ".join(problems))

    def record(self) -> dict[str, Any]:
        """What shapes the shards; its hash is in the index."""
        out = asdict(self)
        out["length_edges_s"] = list(self.length_edges_s)
        out["selection"] = self.selection.record()
        out["sample_format"] = SAMPLE_FORMAT  # a new sample format rebuilds every group
        return out

    def settings_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.record(), sort_keys=True).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Where a clip goes


def _unit_hash(tag: str, rel_path: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{tag}\0{rel_path}".encode()).digest()[:8], "big")


def shard_group(rel_path: str, num_groups: int) -> int:
    """The shard group of a video (stable: a hash of its relative path)."""
    return _unit_hash("group", rel_path) % num_groups


def split_of(rel_path: str, val_fraction: float) -> str:
    """``train`` or ``val`` for a whole video, deterministically (a hash of its relative path)."""
    return "val" if _unit_hash("split", rel_path) / 2**64 < val_fraction else "train"


def bucket_of(meta: Mapping[str, Any], settings: ShardSettings) -> str | None:
    """The bucket a clip goes to (None without bucketing), from its probed size and its span."""
    if settings.bucket_by == "none":
        return None
    if settings.bucket_by == "length":
        start, end = meta["duration_span"]
        length = float(end) - float(start)
        edges = settings.length_edges_s
        lo = 0.0
        for edge in edges:
            if length < edge:
                return f"{_fmt(lo)}-{_fmt(edge)}s"
            lo = edge
        return f"{_fmt(edges[-1])}s+"
    w, h = meta.get("width"), meta.get("height")
    if not w or not h:
        return "unknown"
    if settings.bucket_by == "resolution":
        return f"{w}x{h}"
    ratio = math.log(w / h)
    return min(ASPECTS, key=lambda name: (abs(math.log(ASPECTS[name]) - ratio), name))


def _fmt(x: float) -> str:
    return f"{x:g}".replace(".", "p")


@dataclass(frozen=True)
class PlannedClip:
    """A selected clip and where it goes; its bytes are read when its shard is written."""

    clip: ClipLayout
    video: VideoLayout
    split: str
    bucket: str | None
    order: tuple


def plan_video(video: VideoLayout, settings: ShardSettings, skipped: dict[str, int]) -> list[PlannedClip]:
    split = split_of(video.rel_path, settings.val_fraction)
    out = []
    for clip in video.clips:
        reason = settings.selection.skip_reason(clip)
        if reason:
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        start = float(clip.meta["duration_span"][0])
        out.append(PlannedClip(clip, video, split, bucket_of(clip.meta, settings), (video.rel_path, start, clip.uuid)))
    return out


def group_digest(video_digests: Mapping[str, str], settings_hash: str) -> str:
    """What a group's shards are made from: its videos' manifest rows (:func:`manifest.row_digest`,
    the same whether read from the layout or from the manifest) and the settings. Videos without
    a row leave no trace, so a failed video and a missing one are alike."""
    h = hashlib.sha256(settings_hash.encode())
    for rel in sorted(video_digests):
        h.update(json.dumps([rel, video_digests[rel]]).encode())
    return h.hexdigest()
