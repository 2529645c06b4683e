"""The one schema of a WebDataset sample's ``.json``: the same keys in every sample, null for what
is absent, each key of one type.

A loader batches samples by stacking their JSON key by key (energon's default collation, a
``default_collate``): a key present in one sample and not in another (``errors``, ``motion_score``,
``error_details`` in a raw ``metas/v0`` document) or an ``int`` where another sample has a
``float`` breaks the batch. So the sample JSON is not the raw ``metas/v0`` document but the clip's
manifest row (:data:`manifest.COLUMNS`, the one definition of a clip's facts, with its nulls)
without the embedding, which is the ``.npy``, each value coerced to its column's type. Lists
(``errors``, ``windows``) are never stacked, so their length may differ between samples.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from ..core.layout_read import ClipLayout, VideoLayout
from ..core.urls import relative_to
from .manifest import COLUMNS, clip_row

#: The keys of every sample JSON, in order: the manifest's columns less ``embedding``.
SAMPLE_KEYS: tuple[str, ...] = tuple(name for name in COLUMNS if name != "embedding")
#: A sample's members (``<uuid>.<ext>``) in the order the tar holds them; ``npy`` (float32
#: embedding, shape ``(D,)``) only when the clip has an embedding, ``txt`` (the JSON's
#: ``caption``) only when it has a caption.
MEMBER_ORDER: tuple[str, ...] = ("json", "mp4", "npy", "txt")
#: The sample's format, recorded with the shards' settings (``ShardSettings.record``): shards written
#: with another format (other keys, members, or coercion rules: bump the number) are rebuilt by
#: the next run instead of kept beside samples of the new one.
SAMPLE_FORMAT = "2/" + hashlib.sha256(" ".join(SAMPLE_KEYS + MEMBER_ORDER).encode()).hexdigest()[:12]


def _coerce(value: Any, kind: pa.DataType) -> Any:
    """``value`` as the JSON type of an Arrow column type (ints stay ints, floats become floats)."""
    if value is None:
        return None
    if pa.types.is_floating(kind):
        return float(value) if math.isfinite(value) else None  # NaN is no score, and no JSON
    if pa.types.is_integer(kind):
        return int(value)
    if pa.types.is_boolean(kind):
        return bool(value)
    return value


def _in_output(output_path: str, url: Any) -> Any:
    """A location of the layout as a path relative to its output folder (``clips/<uuid>.mp4``): a
    shard's bytes do not depend on where the output lies, so one moved or copied and packaged
    again gives the same samples (the manifest keeps the absolute locations)."""
    if not isinstance(url, str):
        return url
    try:
        return relative_to(output_path, url)
    except ValueError:
        return url


def sample_json(video: VideoLayout, clip: ClipLayout) -> dict[str, Any]:
    """The sample JSON of ``clip``: every key of :data:`SAMPLE_KEYS`, typed by its column, its
    locations relative to the output folder."""
    row = clip_row(video, clip, None, locate=functools.partial(_in_output, video.output_path))
    return {key: _coerce(row.get(key), COLUMNS[key][0]) for key in SAMPLE_KEYS}


def sample_json_bytes(doc: Mapping[str, Any]) -> bytes:
    """The ``.json`` member: compact, strict JSON (no NaN), keys in schema order."""
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()


def schema_problems(doc: Any) -> list[str]:
    """Why ``doc`` (a sample JSON read back) is not of the schema; [] when it is."""
    if not isinstance(doc, Mapping):
        return [f"not an object ({type(doc).__name__})"]
    problems = []
    if list(doc) != list(SAMPLE_KEYS):
        missing = [k for k in SAMPLE_KEYS if k not in doc]
        extra = [k for k in doc if k not in SAMPLE_KEYS]
        problems.append(f"keys differ from the schema (missing {missing}, extra {extra})")
    for key in SAMPLE_KEYS:
        value, kind = doc.get(key), COLUMNS[key][0]
        if value is None:
            continue
        ok = (isinstance(value, float) if pa.types.is_floating(kind) else
              isinstance(value, int) and not isinstance(value, bool) if pa.types.is_integer(kind) else
              isinstance(value, bool) if pa.types.is_boolean(kind) else
              isinstance(value, str) if pa.types.is_string(kind) else
              isinstance(value, list) if pa.types.is_list(kind) else True)
        if not ok:
            problems.append(f"{key}: {type(value).__name__} where the schema has {kind}")
    return problems


__all__ = ["MEMBER_ORDER", "SAMPLE_KEYS", "sample_json", "sample_json_bytes", "schema_problems"]
