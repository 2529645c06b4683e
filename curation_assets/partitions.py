"""The `videos` partitions: one dynamic partition per video under ``input_path``.

Assets, sensors, schedules and the CLI all import this module; the key encoding lives in
``core.keys`` so it stays testable without Dagster.
"""

from __future__ import annotations

import dagster as dg

from .core import storage
from .core.keys import key_from_rel_path, rel_path_from_key

VIDEOS_PARTITION_NAME = "videos"

videos_partitions = dg.DynamicPartitionsDefinition(name=VIDEOS_PARTITION_NAME)


def source_url_for_key(input_path: str, key: str) -> str:
    """The video a partition key addresses; refuses keys that would leave ``input_path``."""
    return storage.resolve_under(input_path, rel_path_from_key(key))


def key_for_source_url(input_path: str, url: str) -> str:
    return key_from_rel_path(storage.relative_to(input_path, url))


def discover_video_keys(input_path: str) -> list[str]:
    """Partition keys of every video file under ``input_path``, sorted."""
    return [key_from_rel_path(rel) for rel in storage.list_videos(input_path)]
