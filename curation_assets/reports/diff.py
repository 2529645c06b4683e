"""What changed between two runs: videos and clips added, removed and changed, settings that
differ, and how the score distributions moved.

Each side is a :class:`~.snapshot.Snapshot`: an output read live from its manifest, or a snapshot
file (``snapshot.load``). Clips are matched by id first: the id is made of the source and the
span's frames, so an id on both sides is the same span, and such a clip is *changed* when a field
of :data:`CLIP_FIELDS` differs. Ids on one side only were added or removed; per video they are
grouped by overlapping spans (:attr:`VideoDiff.respans`), so a re-split reads as
``0-10 s -> 0-5 s, 5-10 s`` rather than as unrelated ids. ``to_json`` is the document for scripts
(stable keys); ``render`` the text for people (summary first, detail capped unless ``full``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from ..core.options import setting
from .snapshot import Snapshot, load

#: The clip fields compared when an id is on both sides (the snapshot's columns).
CLIP_FIELDS = ("passed", "filtered_by", "motion_global_mean", "motion_per_patch_min_256", "aesthetic_score",
               "width", "height", "caption_models", "enhanced_caption_models")
#: The score columns whose distributions are compared.
SCORES = ("motion_global_mean", "aesthetic_score")
QUANTILES = (10, 50, 90)
#: Items shown per list in the text unless ``full``.
SHOWN = 10
JSON_KEYS = ("old", "new", "identical", "summary", "settings", "versions", "scores", "videos")


@dataclass(frozen=True)
class Clip:
    uuid: str
    start: float
    end: float

    def to_json(self) -> dict[str, Any]:
        return {"uuid": self.uuid, "span": [self.start, self.end]}


@dataclass(frozen=True)
class ClipChange:
    clip: Clip
    fields: dict[str, tuple[Any, Any]]  # name -> (old, new)

    def to_json(self) -> dict[str, Any]:
        return {**self.clip.to_json(), "fields": {k: list(v) for k, v in self.fields.items()}}


@dataclass(frozen=True)
class VideoDiff:
    """One video present on both sides whose clips differ."""

    rel_path: str
    added: list[Clip] = field(default_factory=list)
    removed: list[Clip] = field(default_factory=list)
    changed: list[ClipChange] = field(default_factory=list)
    respans: list[tuple[list[Clip], list[Clip]]] = field(default_factory=list)  # (old spans, new spans)

    def to_json(self) -> dict[str, Any]:
        return {"rel_path": self.rel_path, "clips_added": [c.to_json() for c in self.added],
                "clips_removed": [c.to_json() for c in self.removed],
                "clips_changed": [c.to_json() for c in self.changed],
                "respans": [{"old": [[c.start, c.end] for c in o], "new": [[c.start, c.end] for c in n]}
                            for o, n in self.respans]}


@dataclass(frozen=True)
class DatasetDiff:
    old: Snapshot
    new: Snapshot
    videos_added: dict[str, list[Clip]]
    videos_removed: dict[str, list[Clip]]
    videos_changed: list[VideoDiff]
    videos_unchanged: int
    videos_settings_changed: int  # videos on both sides written with other settings (locations aside)
    settings: dict[str, tuple[list[Any], list[Any]]]  # setting -> (old values, new values), only those differing
    versions: tuple[list[str], list[str]]
    scores: dict[str, dict[str, dict[str, Any]]]

    @property
    def identical(self) -> bool:
        return not (self.videos_added or self.videos_removed or self.videos_changed or self.settings
                    or self.versions[0] != self.versions[1])

    def summary(self) -> dict[str, int]:
        return {
            "videos_added": len(self.videos_added), "videos_removed": len(self.videos_removed),
            "videos_changed": len(self.videos_changed), "videos_unchanged": self.videos_unchanged,
            "videos_settings_changed": self.videos_settings_changed,
            "clips_added": sum(len(v.added) for v in self.videos_changed) + sum(map(len, self.videos_added.values())),
            "clips_removed": (sum(len(v.removed) for v in self.videos_changed)
                              + sum(map(len, self.videos_removed.values()))),
            "clips_changed": sum(len(v.changed) for v in self.videos_changed),
        }

    def to_json(self) -> dict[str, Any]:
        """One document with the keys of :data:`JSON_KEYS`."""
        return {
            "old": _side(self.old), "new": _side(self.new), "identical": self.identical, "summary": self.summary(),
            "settings": [{"name": k, "old": o, "new": n} for k, (o, n) in self.settings.items()],
            "versions": {"old": self.versions[0], "new": self.versions[1]},
            "scores": self.scores,
            "videos": {
                "added": [{"rel_path": r, "clips": [c.to_json() for c in cs]} for r, cs in self.videos_added.items()],
                "removed": [{"rel_path": r, "clips": [c.to_json() for c in cs]}
                            for r, cs in self.videos_removed.items()],
                "changed": [v.to_json() for v in self.videos_changed],
            },
        }


def _side(snap: Snapshot) -> dict[str, Any]:
    passed = snap.table.column("passed").to_pylist()
    return {"source": snap.source, "output_path": snap.output_path, "created": snap.created,
            "videos": len(set(snap.table.column("rel_path").to_pylist())), "clips": snap.table.num_rows,
            "passed": sum(1 for p in passed if p), "problems": list(snap.problems)}


# ---------------------------------------------------------------------------------------------
# Comparing


def _by_video(table: pa.Table) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for row in table.to_pylist():
        out.setdefault(row["rel_path"], {})[row["clip_uuid"]] = row
    return out


def _clip(row: Mapping[str, Any]) -> Clip:
    return Clip(row["clip_uuid"], float(row["span_start_s"]), float(row["span_end_s"]))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return bool(a == b)


def respans(removed: list[Clip], added: list[Clip]) -> list[tuple[list[Clip], list[Clip]]]:
    """Removed and added clips of one video grouped by overlapping spans (a chain of overlaps is
    one group), in time order; a group may have one side empty (a span only dropped or only new)."""
    items = sorted([(c.start, c.end, 0, c) for c in removed] + [(c.start, c.end, 1, c) for c in added],
                   key=lambda t: (t[0], t[1], t[2], t[3].uuid))
    groups: list[tuple[list[Clip], list[Clip]]] = []
    reach = -math.inf
    for start, end, side, clip in items:
        if not groups or start >= reach:
            groups.append(([], []))
            reach = end
        else:
            reach = max(reach, end)
        groups[-1][side].append(clip)
    return groups


def _video_diff(rel: str, old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]) -> VideoDiff:
    added = sorted((_clip(new[u]) for u in new.keys() - old.keys()), key=lambda c: (c.start, c.end, c.uuid))
    removed = sorted((_clip(old[u]) for u in old.keys() - new.keys()), key=lambda c: (c.start, c.end, c.uuid))
    changed = []
    for uid in sorted(old.keys() & new.keys(), key=lambda u: (old[u]["span_start_s"], u)):
        fields = {f: (old[uid][f], new[uid][f]) for f in CLIP_FIELDS if not _same(old[uid][f], new[uid][f])}
        if fields:
            changed.append(ClipChange(_clip(old[uid]), fields))
    return VideoDiff(rel, added, removed, changed, respans(removed, added) if added or removed else [])


def _settings_values(snap: Snapshot) -> dict[str, list[Any]]:
    """Each setting's values over the settings records the side's clips use."""
    hashes = {h for h in snap.table.column("settings_hash").to_pylist() if h}
    values: dict[str, list[Any]] = {}
    for digest in sorted(hashes):
        record = snap.settings.get(digest)
        for name, value in (record or {}).get("settings", {}).items():
            if value not in values.setdefault(name, []):
                values[name].append(value)
    return values


def _settings_diff(old: Snapshot, new: Snapshot) -> dict[str, tuple[list[Any], list[Any]]]:
    a, b = _settings_values(old), _settings_values(new)
    out = {}
    for name in sorted(a.keys() | b.keys()):
        va, vb = a.get(name, []), b.get(name, [])
        if sorted(map(repr, va)) != sorted(map(repr, vb)):
            out[name] = (va, vb)
    return out


def _versions(snap: Snapshot) -> list[str]:
    hashes = set(snap.table.column("settings_hash").to_pylist())
    return sorted({str(r.get("version")) for h, r in snap.settings.items() if h in hashes})


def distribution(values: Iterable[Any]) -> dict[str, Any]:
    """count, mean and quantiles of the non-null values (None each when there are none)."""
    arr = np.array([v for v in values if v is not None], dtype=np.float64)
    stats: dict[str, Any] = {"count": int(arr.size), "mean": float(arr.mean()) if arr.size else None}
    for q in QUANTILES:
        stats[f"p{q}"] = float(np.percentile(arr, q)) if arr.size else None
    return stats


def _scores(old: Snapshot, new: Snapshot) -> dict[str, dict[str, dict[str, Any]]]:
    out = {name: {"old": distribution(old.table.column(name).to_pylist()),
                  "new": distribution(new.table.column(name).to_pylist())} for name in SCORES}

    def share(snap: Snapshot) -> dict[str, Any]:
        passed = snap.table.column("passed").to_pylist()
        return {"clips": len(passed), "passed": sum(1 for p in passed if p),
                "share": (sum(1 for p in passed if p) / len(passed)) if passed else None}

    out["passed"] = {"old": share(old), "new": share(new)}
    return out


@functools.cache
def _is_location(name: str) -> bool:
    """A path setting (``input_path``, ``output_path``): two outputs always differ in it."""
    try:
        return setting(name).path
    except KeyError:  # a setting of another version
        return False


def _shaping(snap: Snapshot, hashes: tuple[str, ...]) -> list[Any]:
    """What a video's settings hashes stand for, path settings aside (the hash itself when its
    record could not be read)."""
    out: list[Any] = []
    for digest in hashes:
        record = snap.settings.get(digest)
        if record is None:
            out.append(digest)
        else:
            out.append({k: v for k, v in record["settings"].items() if not _is_location(k)})
    return out


def _hashes(rows: dict[str, dict[str, Any]]) -> tuple[str, ...]:
    return tuple(sorted({r["settings_hash"] for r in rows.values() if r["settings_hash"]}))


def diff_snapshots(old: Snapshot, new: Snapshot) -> DatasetDiff:
    a, b = _by_video(old.table), _by_video(new.table)
    changed, unchanged, resettled = [], 0, 0
    same: dict[tuple[tuple[str, ...], tuple[str, ...]], bool] = {}  # few distinct pairs of hashes
    for rel in sorted(a.keys() & b.keys()):
        pair = (_hashes(a[rel]), _hashes(b[rel]))
        if pair not in same:
            same[pair] = _shaping(old, pair[0]) == _shaping(new, pair[1])
        resettled += not same[pair]
        video = _video_diff(rel, a[rel], b[rel])
        if video.added or video.removed or video.changed:
            changed.append(video)
        else:
            unchanged += 1

    def clips(rows: dict[str, dict[str, Any]]) -> list[Clip]:
        return sorted((_clip(r) for r in rows.values()), key=lambda c: (c.start, c.end, c.uuid))

    return DatasetDiff(
        old, new,
        videos_added={rel: clips(b[rel]) for rel in sorted(b.keys() - a.keys())},
        videos_removed={rel: clips(a[rel]) for rel in sorted(a.keys() - b.keys())},
        videos_changed=changed, videos_unchanged=unchanged, videos_settings_changed=resettled,
        settings=_settings_diff(old, new), versions=(_versions(old), _versions(new)), scores=_scores(old, new),
    )


def diff(old: str | Snapshot, new: str | Snapshot) -> DatasetDiff:
    """The diff of two sides, each an output path (read live from its manifest), a snapshot file or
    a :class:`Snapshot`."""
    return diff_snapshots(old if isinstance(old, Snapshot) else load(old),
                          new if isinstance(new, Snapshot) else load(new))


__all__ = ["CLIP_FIELDS", "JSON_KEYS", "SCORES", "Clip", "ClipChange", "DatasetDiff", "VideoDiff", "diff",
           "diff_snapshots", "distribution", "respans"]
