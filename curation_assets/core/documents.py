"""The layout's JSON documents (``metas/v0``, ``processed_videos``, ``processed_clip_chunks``):
their keys in the spec's order, the type of each value, and the predicates, in one place.

Two questions are asked of a document read back, with two strictnesses, from this one schema:

- **May it be used at all?** (``*_unusable``: the first reason, or None.) The reader
  (``core.layout_read``) and the writer ask it before a document's ids, frames and counts become
  paths or bound a loop; a document that fails is reported and never used.
- **Does it match the spec in full?** (``*_departures``: every reason.) The checks
  (``core.layout_checks``) ask it of the documents the reader let through, and fail the check of
  the document's asset for each departure.

``core.layout`` writes the documents; this module only says what a good one is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeGuard

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
CLIP_ID_RE = UUID_RE

#: More chunks than this in one video document is not a document we wrote.
MAX_CHUNKS = 100_000

# ---------------------------------------------------------------------------------------------
# Predicates (every document rule is made of these)


def is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_count(value: Any) -> TypeGuard[int]:
    """A non-negative int (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def is_positive_int(value: Any) -> TypeGuard[int]:
    return is_count(value) and value >= 1


def is_positive_number(value: Any) -> bool:
    return is_number(value) and value > 0


def is_index(value: Any) -> TypeGuard[int]:
    """A frame or chunk index as the documents store it (a non-negative int below 10**9, not a bool)."""
    return is_count(value) and value < 10**9


def is_canonical_uuid(value: Any) -> bool:
    """A clip or chunk id as the layout writes it: ``str(uuid.UUID)``, lowercase, hyphenated."""
    return isinstance(value, str) and UUID_RE.match(value) is not None


def is_text_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(e, str) for e in value)


def is_frame_pair(start: Any, end: Any) -> bool:
    """Window frames: non-negative integers with ``start <= end``."""
    return is_count(start) and is_count(end) and start <= end


def key_departures(doc: Mapping[str, Any], allowed: Sequence[str], required: Sequence[str]) -> list[str]:
    """A document holds no key the spec does not name, every key it requires, in the spec's order."""
    out = []
    unknown = [k for k in doc if k not in allowed]
    if unknown:
        out.append(f"keys not in the spec: {', '.join(map(repr, unknown))}")
    missing = [k for k in required if k not in doc]
    if missing:
        out.append(f"missing keys: {', '.join(missing)}")
    known = [k for k in doc if k in allowed]
    if known != sorted(known, key=list(allowed).index):
        out.append(f"keys out of the spec's order: {', '.join(known)}")
    return out


def errors_departure(doc: Mapping[str, Any]) -> str | None:
    """``error_details`` gives a message for exactly the keys in ``errors`` (both or neither)."""
    errors, details = doc.get("errors"), doc.get("error_details")
    if ("errors" in doc) != ("error_details" in doc) or (
            "errors" in doc
            and not (isinstance(details, dict) and isinstance(errors, list) and set(details) == set(errors))):
        return "error_details does not give a message for exactly the keys in errors"
    return None


# ---------------------------------------------------------------------------------------------
# metas/v0/<clip_uuid>.json

#: The keys in the spec's order (optional ones included); the probe keys come all or none.
META_KEYS = ("span_uuid", "source_video", "duration_span", "snapped", "width_source", "height_source",
             "framerate_source", "clip_location", "width", "height", "framerate", "num_frames", "video_codec",
             "num_bytes", "motion_score", "aesthetic_score", "errors", "error_details", "windows", "valid")
META_REQUIRED = ("span_uuid", "source_video", "duration_span", "width_source", "height_source", "framerate_source",
                 "clip_location", "windows", "valid")
PROBE_KEYS = ("width", "height", "framerate", "num_frames", "video_codec", "num_bytes")
MOTION_KEYS = ("global_mean", "per_patch_min_256")
#: Window keys besides the frames: ``<model>_caption`` and ``<model>_enhanced_caption``.
CAPTION_SUFFIX, ENHANCED_CAPTION_SUFFIX = "_caption", "_enhanced_caption"
WINDOW_FRAMES = ("start_frame", "end_frame")


def has_motion_numbers(motion: Any) -> bool:
    return isinstance(motion, dict) and all(is_number(motion.get(k)) for k in MOTION_KEYS)


def meta_unusable(doc: Mapping[str, Any], uid: str, source_video: str) -> str | None:
    """Why a clip's meta may not be used (its id, source, span, windows, errors and numbers have
    the wrong shape), else None."""
    if doc.get("span_uuid") != uid:
        return "span_uuid is not the clip's id"
    if doc.get("source_video") != source_video:
        return "source_video is not the video document's"
    span = doc.get("duration_span")
    if not (isinstance(span, list) and len(span) == 2 and all(is_number(x) for x in span)):
        return "duration_span is not [start_s, end_s]"
    windows = doc.get("windows", [])
    if not isinstance(windows, list):
        return "windows is not a list"
    for w in windows:
        if not isinstance(w, dict):
            return "a window is not an object"
        s, e = w.get("start_frame"), w.get("end_frame")
        if not is_frame_pair(s, e):
            return f"window frames {s!r}, {e!r} are not non-negative integers with start <= end"
        for key, value in w.items():
            if key.endswith(CAPTION_SUFFIX) and not isinstance(value, str):
                return f"window {key} is not text"
    if not is_text_list(doc.get("errors", [])):
        return "errors is not a list of strings"
    if "error_details" in doc and not isinstance(doc["error_details"], dict):
        return "error_details is not an object"
    for key in ("width", "height", "num_frames", "num_bytes"):
        if key in doc and doc[key] is not None and not is_count(doc[key]):
            return f"{key} {doc[key]!r} is not a count"
    motion = doc.get("motion_score")
    if motion is not None and not has_motion_numbers(motion):
        return "motion_score is not {global_mean, per_patch_min_256}"
    if doc.get("aesthetic_score") is not None and not is_number(doc["aesthetic_score"]):
        return "aesthetic_score is not a number"
    return None


def meta_has_bytes(meta: Mapping[str, Any]) -> bool:
    """The meta records the clip's encoded bytes: every probe key is there."""
    return all(k in meta for k in PROBE_KEYS)


def meta_departures(meta: Mapping[str, Any], captions: tuple[str, ...], enhanced: tuple[str, ...]) -> list[str]:
    """Every way a meta departs from the spec (``captions``/``enhanced``: the configured caption
    models, whose keys its windows may hold; none configured, any ``*_caption`` key)."""
    out = key_departures(meta, META_KEYS, META_REQUIRED)
    probe = [k for k in PROBE_KEYS if k in meta]
    if probe and len(probe) != len(PROBE_KEYS):
        out.append(f"probe keys come all or none; missing {', '.join(k for k in PROBE_KEYS if k not in meta)}")
    span = meta.get("duration_span")
    if isinstance(span, list) and len(span) == 2 and all(is_number(x) for x in span) and not 0 <= span[0] < span[1]:
        out.append(f"duration_span {span} is not 0 <= start < end")
    if "snapped" in meta and meta["snapped"] is not True:
        out.append(f"snapped is {meta['snapped']!r} (only true is written)")
    for key in ("width_source", "height_source"):
        if key in meta and meta[key] is not None and not is_positive_int(meta[key]):
            out.append(f"{key} {meta[key]!r} is not a positive integer")
    if "framerate_source" in meta and meta["framerate_source"] is not None and not is_positive_number(
            meta["framerate_source"]):
        out.append(f"framerate_source {meta['framerate_source']!r} is not a positive number")
    if not isinstance(meta.get("clip_location"), str):
        out.append("clip_location is not text")
    has_bytes = meta_has_bytes(meta)
    if has_bytes:
        for key in ("width", "height", "num_bytes"):
            if not is_positive_int(meta[key]):
                out.append(f"{key} {meta[key]!r} is not a positive integer")
        if not is_count(meta["num_frames"]):
            out.append(f"num_frames {meta['num_frames']!r} is not a count")
        if not is_positive_number(meta["framerate"]):
            out.append(f"framerate {meta['framerate']!r} is not a positive number")
        if not isinstance(meta["video_codec"], str) or not meta["video_codec"]:
            out.append(f"video_codec {meta['video_codec']!r} is not a codec name")
    motion = meta.get("motion_score")
    if "motion_score" in meta and not (isinstance(motion, dict) and set(motion) == set(MOTION_KEYS)
                                       and all(is_number(v) for v in motion.values())):
        out.append("motion_score is not {global_mean, per_patch_min_256} numbers")
    if "aesthetic_score" in meta and not is_number(meta["aesthetic_score"]):
        out.append(f"aesthetic_score {meta['aesthetic_score']!r} is not a number")
    errors = meta.get("errors")
    if "errors" in meta and not (isinstance(errors, list) and errors and is_text_list(errors)):
        out.append("errors is not a non-empty list of error keys")
    elif errors_departure(meta):
        out.append(errors_departure(meta) or "")
    out += window_departures(meta.get("windows"), captions, enhanced)
    valid = meta.get("valid")
    if not isinstance(valid, bool):
        out.append(f"valid {valid!r} is not true or false")
    elif valid != (has_bytes and bool(meta.get("windows"))):
        out.append(f"valid is {str(valid).lower()} but the clip {'has' if has_bytes else 'has no'} bytes and "
                   f"{len(meta.get('windows') or [])} window(s)")
    return out


def window_departures(windows: Any, captions: tuple[str, ...], enhanced: tuple[str, ...]) -> list[str]:
    """Windows are consecutive from frame 0 and hold only the configured caption keys."""
    if not isinstance(windows, list):
        return []  # unusable: reported by the reader
    allowed = {f"{m}{CAPTION_SUFFIX}" for m in captions} | {f"{m}{ENHANCED_CAPTION_SUFFIX}" for m in enhanced}
    out = []
    expected_start = 0
    for i, w in enumerate(windows):
        if not isinstance(w, dict):
            continue
        if w.get("start_frame") != expected_start:
            out.append(f"window {i} starts at frame {w.get('start_frame')!r}, expected {expected_start} "
                       "(windows are consecutive from frame 0)")
        if is_count(w.get("end_frame")):
            expected_start = w["end_frame"] + 1
        extra = [k for k in w if k not in WINDOW_FRAMES and (k not in allowed if allowed else
                                                             not k.endswith(CAPTION_SUFFIX))]
        if extra:
            out.append(f"window {i} has keys that are not configured caption keys: {', '.join(map(repr, extra))}")
    return out


def caption_pairs(window: Mapping[str, Any], suffix: str) -> tuple[tuple[str, str], ...]:
    """``(model, text)`` of a window's ``<model><suffix>`` keys, in the order the meta lists them."""
    pairs = []
    for key, value in window.items():
        if key.endswith(suffix) and not (suffix == CAPTION_SUFFIX and key.endswith(ENHANCED_CAPTION_SUFFIX)):
            pairs.append((key[: -len(suffix)], value))
    return tuple(pairs)


# ---------------------------------------------------------------------------------------------
# processed_videos/<rel>.json

#: The keys in the spec's order, then our documented additions.
VIDEO_KEYS = ("video", "height", "width", "framerate", "num_frames", "duration", "video_codec", "pixel_format",
              "audio_format", "num_total_clips", "num_clip_chunks")
VIDEO_OPTIONAL = ("errors", "error_details", "pipeline")
#: The type of each probe value (each may also be null: a video that could not be probed).
VIDEO_VALUE_RULES: dict[str, Callable[[Any], bool]] = {
    "height": is_positive_int, "width": is_positive_int, "framerate": is_positive_number, "num_frames": is_count,
    "duration": lambda v: is_number(v) and v >= 0, "video_codec": lambda v: isinstance(v, str),
    "pixel_format": lambda v: isinstance(v, str), "audio_format": lambda v: isinstance(v, str),
}


def video_unusable(doc: Mapping[str, Any]) -> str | None:
    """Why a video document may not be used (its source, counts or errors), else None."""
    if not isinstance(doc.get("video"), str) or not doc["video"]:
        return "no 'video' string"
    n = doc.get("num_clip_chunks")
    if not is_count(n) or n > MAX_CHUNKS:
        return f"num_clip_chunks {n!r} is not a count up to {MAX_CHUNKS}"
    if not is_count(doc.get("num_total_clips")):
        return f"num_total_clips {doc.get('num_total_clips')!r} is not a count"
    if not is_text_list(doc.get("errors", [])):
        return "errors is not a list of strings"
    return None


def video_departures(doc: Mapping[str, Any]) -> list[str]:
    """Every way a video document departs from the spec (its pipeline record aside: its hash is
    the settings' business, ``core.layout_checks``)."""
    out = key_departures(doc, VIDEO_KEYS + VIDEO_OPTIONAL, VIDEO_KEYS)
    for key, ok in VIDEO_VALUE_RULES.items():
        if key in doc and doc[key] is not None and not ok(doc[key]):
            out.append(f"{key} {doc[key]!r} has the wrong type")
    problem = errors_departure(doc)
    return out + ([problem] if problem else [])


# ---------------------------------------------------------------------------------------------
# processed_clip_chunks/<rel>_<index>.json

#: The chunk's clip lists and whether their clips passed (``clips``: passed; else filtered).
CHUNK_CLIP_LISTS: tuple[tuple[str, bool], ...] = (("clips", True), ("filtered_clips", False))


def chunk_unusable(doc: Mapping[str, Any], index: int, source_video: str) -> str | None:
    """Why chunk document ``index`` of ``source_video`` may not be used, else None."""
    if doc.get("clip_chunk_index") != index or isinstance(doc.get("clip_chunk_index"), bool):
        return f"clip_chunk_index {doc.get('clip_chunk_index')!r}, expected {index}"
    if doc.get("video") != source_video:
        return "its 'video' is not the video document's"
    for key, _ in CHUNK_CLIP_LISTS:
        ids = doc.get(key, [])
        if not isinstance(ids, list):
            return f"{key} is not a list"
        bad = [i for i in ids if not is_canonical_uuid(i)]
        if bad:
            return f"{key} holds ids that are not canonical UUIDs, e.g. {str(bad[0])[:60]!r}"
    return None


def chunk_clip_ids(doc: Mapping[str, Any]) -> list[tuple[Any, bool]]:
    """``(clip id, passed)`` for every id the chunk lists (untrusted: not checked here)."""
    out = []
    for key, passed in CHUNK_CLIP_LISTS:
        ids = doc.get(key)
        out += [(uid, passed) for uid in (ids if isinstance(ids, list) else [])]
    return out
