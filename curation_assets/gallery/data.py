"""What a gallery card shows, from the manifest (``packaging/manifest.py``) and SemDeDup's result.

Two shapes per video: the *fragment* (every card of the video, loaded by the page on demand) and
its *summary* (the video's line of the compact index: counts, score ranges and the few per-clip
columns the page's global filters and sorts need). Both are plain JSON values made only of
validated parts: a clip id that is not a canonical uuid is dropped, and a link (preview, clip) is
rebuilt from ``core.layout``'s relative paths, never taken from a stored URL. Clips are in source
order (span start), so a summary's column ``i`` and the fragment's clip ``i`` are the same clip.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..core import layout, storage
from ..core.documents import is_canonical_uuid
from ..packaging import dedup, manifest

#: The manifest columns a card shows (everything but the embedding and the absolute locations
#: that the page never follows).
CARD_COLUMNS = ["clip_uuid", "source_video", "rel_path", "span_start_s", "span_end_s", "duration_s", "snapped",
                "source_width", "source_height", "source_framerate", "width", "height", "framerate", "num_frames",
                "video_codec", "num_bytes", "motion_global_mean", "motion_per_patch_min_256", "aesthetic_score",
                "passed", "filtered_by", "errors", "windows", "caption", "clip_url"]

_FRAGMENT_RE = re.compile(r"[0-9a-f]{32}")

#: Bits of a clip's flags in the summary (the page's filters read them).
PASSED, HAS_CAPTION, HAS_PREVIEW = 1, 2, 4


def is_fragment_name(name: Any) -> bool:
    """A manifest fragment's name as ``manifest.fragment_name`` makes it (32 lowercase hex)."""
    return isinstance(name, str) and _FRAGMENT_RE.fullmatch(name) is not None


def _num(value: Any, digits: int | None = None) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return round(value, digits) if digits is not None else value


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _texts(items: Any) -> list[list[str]]:
    """``[{"model", "text"}]`` -> ``[[model, text]]``, strings only."""
    out = []
    for item in items or []:
        if isinstance(item, Mapping) and isinstance(item.get("model"), str) and isinstance(item.get("text"), str):
            out.append([item["model"], item["text"]])
    return out


def _preview(uuid: str, window: Mapping[str, Any]) -> str | None:
    """The window's preview, relative to the output, when the manifest says one was written there."""
    start, end, url = window.get("start_frame"), window.get("end_frame"), window.get("preview_url")
    if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end and isinstance(url, str)):
        return None
    rel = layout.preview_path(uuid, start, end)
    return rel if url.replace("\\", "/").endswith("/" + rel) else None


@dataclass(frozen=True)
class Dedup:
    """SemDeDup's word on each clip: its k-means cluster, and what it duplicates (at the run's eps)."""

    cluster: dict[str, int]
    duplicate_of: dict[str, tuple[str, float]]
    eps: float | None

    @classmethod
    def empty(cls) -> Dedup:
        return cls({}, {}, None)


def read_dedup(output_path: str, clip_ids: Iterable[str] | None = None) -> Dedup:
    """The clusters and duplicates of ``<output>/semdedup/`` (of ``clip_ids`` only, when given);
    empty when dedup was never run. Ids that are not canonical uuids are ignored."""
    import pyarrow.compute as pc

    folder = dedup.dedup_dir(output_path)
    try:
        pairwise = pq.read_table(io.BytesIO(storage.read_bytes(storage.join(folder, "pairwise.parquet"))),
                                 columns=["id", "centroid"])
        dups = pq.read_table(io.BytesIO(storage.read_bytes(storage.join(folder, "duplicates.parquet"))))
    except storage.StorageNotFoundError:
        return Dedup.empty()
    if clip_ids is not None:
        wanted = pa.array(sorted(set(clip_ids)), pa.string())
        pairwise = pairwise.filter(pc.is_in(pairwise.column("id"), value_set=wanted))
        dups = dups.filter(pc.is_in(dups.column("id"), value_set=wanted))
    cluster = {i: int(c) for i, c in zip(pairwise.column("id").to_pylist(), pairwise.column("centroid").to_pylist(),
                                         strict=True) if is_canonical_uuid(i) and isinstance(c, int)}
    duplicate_of = {}
    for row in dups.to_pylist():
        if is_canonical_uuid(row.get("id")) and is_canonical_uuid(row.get("max_id")):
            duplicate_of[row["id"]] = (row["max_id"], _num(row.get("cosine_sim_score"), 4) or 0.0)
    eps = None
    try:
        import json

        summary = json.loads(storage.read_bytes(storage.join(folder, "summary.json")))
        eps = _num(summary.get("eps")) if isinstance(summary, dict) else None
    except (storage.StorageNotFoundError, ValueError):
        pass
    return Dedup(cluster, duplicate_of, float(eps) if eps is not None else None)


def card(row: Mapping[str, Any], dedup_info: Dedup) -> dict[str, Any] | None:
    """One clip's card from its manifest row; None when the row has no canonical clip id."""
    uuid = row.get("clip_uuid")
    if not isinstance(uuid, str) or not is_canonical_uuid(uuid):
        return None
    passed = row.get("passed") is True
    windows = []
    for w in row.get("windows") or []:
        if not isinstance(w, Mapping):
            continue
        windows.append({"s": _num(w.get("start_frame")), "e": _num(w.get("end_frame")), "preview": _preview(uuid, w),
                        "captions": _texts(w.get("captions")), "enhanced": _texts(w.get("enhanced_captions"))})
    dup = dedup_info.duplicate_of.get(uuid)
    return {
        "uuid": uuid,
        "start": _num(row.get("span_start_s"), 3), "end": _num(row.get("span_end_s"), 3),
        "duration": _num(row.get("duration_s"), 3), "snapped": row.get("snapped") is True,
        "width": _num(row.get("width")), "height": _num(row.get("height")), "fps": _num(row.get("framerate"), 3),
        "source_width": _num(row.get("source_width")), "source_height": _num(row.get("source_height")),
        "source_fps": _num(row.get("source_framerate"), 3), "codec": _text(row.get("video_codec")),
        "num_frames": _num(row.get("num_frames")), "num_bytes": _num(row.get("num_bytes")),
        "motion": _num(row.get("motion_global_mean"), 4), "motion_patch": _num(row.get("motion_per_patch_min_256"), 4),
        "aesthetic": _num(row.get("aesthetic_score"), 4),
        "passed": passed, "filtered_by": None if passed else (_text(row.get("filtered_by")) or "unknown"),
        "errors": [[e["key"], e.get("message") or ""] for e in row.get("errors") or []
                   if isinstance(e, Mapping) and isinstance(e.get("key"), str)],
        "windows": windows,
        "clip": layout.clip_path(uuid, filtered=not passed) if isinstance(row.get("clip_url"), str) else None,
        "cluster": dedup_info.cluster.get(uuid),
        "duplicate_of": dup[0] if dup else None, "duplicate_score": dup[1] if dup else None,
    }


def _has_caption(c: Mapping[str, Any]) -> bool:
    return any(w["captions"] or w["enhanced"] for w in c["windows"])


def _range(values: list[Any]) -> list[float] | None:
    present = [v for v in values if v is not None]
    return [min(present), max(present)] if present else None


#: The summary's per-clip columns: name -> numpy type, packed little-endian and base64-encoded
#: (a JSON string parses at memory speed, 100k clips of numbers as JSON arrays did not); a float
#: column's NaN is a null (no score).
COLUMN_TYPES = {"d": "<f4", "m": "<f4", "a": "<f4", "k": "u1"}


def _pack(values: list[Any], dtype: str) -> str:
    array = np.array([np.nan if v is None else v for v in values], dtype=dtype)
    return base64.b64encode(array.tobytes()).decode("ascii")


def columns(entry: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A summary's per-clip columns decoded (ValueError when one is not ``clips`` values long)."""
    n = entry["clips"]
    out = {}
    for key, dtype in COLUMN_TYPES.items():
        raw = base64.b64decode(entry["cols"][key], validate=True)
        array = np.frombuffer(raw, dtype=dtype)
        if len(array) != n:
            raise ValueError(f"column {key} has {len(array)} values for {n} clips")
        out[key] = array
    return out


def summary(fragment: str, rel_path: str, cards: list[dict[str, Any]]) -> dict[str, Any]:
    """The video's index entry: counts, ranges, and per clip (:data:`COLUMN_TYPES`) its duration,
    motion, aesthetic and flags (:data:`PASSED`, :data:`HAS_CAPTION`, :data:`HAS_PREVIEW`), in the
    fragment's order."""
    durations = [c["duration"] for c in cards]
    motion = [c["motion"] for c in cards]
    aesthetic = [c["aesthetic"] for c in cards]
    flags = [(PASSED if c["passed"] else 0) | (HAS_CAPTION if _has_caption(c) else 0)
             | (HAS_PREVIEW if any(w["preview"] for w in c["windows"]) else 0) for c in cards]
    return {"f": fragment, "name": rel_path, "clips": len(cards), "passed": sum(1 for c in cards if c["passed"]),
            "filtered": sum(1 for c in cards if not c["passed"]), "captioned": sum(1 for f in flags if f & HAS_CAPTION),
            "duration_s": round(sum(d for d in durations if d is not None), 3),
            "motion": _range(motion), "aesthetic": _range(aesthetic),
            "cols": {"d": _pack(durations, "<f4"), "m": _pack(motion, "<f4"), "a": _pack(aesthetic, "<f4"),
                     "k": _pack(flags, "u1")}}


def video_payload(rel_path: str, rows: Sequence[Mapping[str, Any]], dedup_info: Dedup) -> dict[str, Any]:
    """The fragment file's value of one video (its summary included, so an index can be rebuilt
    from the fragments alone)."""
    fragment = manifest.fragment_name(rel_path)
    cards = [c for c in (card(r, dedup_info) for r in rows) if c is not None]
    cards.sort(key=lambda c: (c["start"] if c["start"] is not None else math.inf, c["uuid"]))
    source = next((r.get("source_video") for r in rows if isinstance(r.get("source_video"), str)), None)
    return {"kind": "video", "fragment": fragment, "rel_path": rel_path, "source_video": source,
            "summary": summary(fragment, rel_path, cards), "clips": cards}


def valid_summary(entry: Any) -> bool:
    """Whether a summary read back (from an index or a fragment file) has the shape :func:`summary`
    writes: anything else is rebuilt from the manifest, never shown."""
    if not isinstance(entry, dict) or not is_fragment_name(entry.get("f")) or not isinstance(entry.get("name"), str):
        return False
    if not all(isinstance(entry.get(k), int) and not isinstance(entry.get(k), bool)
               for k in ("clips", "passed", "filtered", "captioned")):
        return False
    cols = entry.get("cols")
    if not isinstance(cols, dict) or set(cols) != set(COLUMN_TYPES):
        return False
    if not all(isinstance(v, str) for v in cols.values()):
        return False
    n = entry["clips"]
    try:  # lengths only (the page reads them as typed arrays), and flags below 8
        for key, dtype in COLUMN_TYPES.items():
            raw = binascii.a2b_base64(cols[key], strict_mode=True)
            if len(raw) != n * np.dtype(dtype).itemsize or (key == "k" and raw and max(raw) >= 8):
                return False
    except (ValueError, TypeError):  # binascii.Error is a ValueError
        return False
    return all(entry.get(k) is None or (isinstance(entry[k], list) and len(entry[k]) == 2
                                        and all(isinstance(v, (int, float)) for v in entry[k]))
               for k in ("motion", "aesthetic"))


__all__ = ["CARD_COLUMNS", "COLUMN_TYPES", "Dedup", "HAS_CAPTION", "HAS_PREVIEW", "PASSED", "card", "columns",
           "is_fragment_name", "read_dedup", "summary", "valid_summary", "video_payload"]
