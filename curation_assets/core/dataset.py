"""One dataset's videos by partition key, and the input folder an instance folder belongs to:
what ``partitions`` (Dagster's side) and the CLI, before it imports Dagster, both read."""

from __future__ import annotations

import json
import os

from . import storage
from .keys import rel_path_from_key

# ``$DAGSTER_HOME/<this>``: the input folder the instance's partitions belong to (``partitions.bind_dataset``)
DATASET_FILE = "curation_assets_dataset.json"


def source_url_for_key(input_path: str, key: str) -> str:
    """The video a partition key addresses; refuses keys that would leave ``input_path``."""
    return storage.resolve_under(input_path, rel_path_from_key(key))


def video_of_key(input_path: str, key: str) -> tuple[str, str] | None:
    """``(source URL, path relative to input_path)`` of the video a key names, or None when it names
    none under ``input_path``: the one reading of a key the transcode step and the CLI's head start
    (``core.head_start``) both make, so a claim matches the step's own video."""
    try:
        source = source_url_for_key(input_path, key)
        rel = storage.relative_to(input_path, source)
    except ValueError:
        return None
    return (source, rel) if rel else None


def bound_dataset(instance_root: str) -> str | None:
    """The input folder this instance's partitions belong to, or None when it is not bound yet."""
    try:
        with open(os.path.join(instance_root, DATASET_FILE), encoding="utf-8") as f:
            doc = json.load(f)
    except (FileNotFoundError, ValueError):
        return None
    value = doc.get("input_path") if isinstance(doc, dict) else None
    return value if isinstance(value, str) and value else None
