"""The `videos` partitions: one dynamic partition per video under ``input_path``.

Assets, sensors, schedules and the CLI all import this module; the key encoding lives in
``core.keys`` so it stays testable without Dagster.

A partition key is a path relative to ``input_path``, so it only means something for one input
folder: a Dagster instance holds the partitions of **one dataset**. The first run, sensor tick or
CLI call that adds videos binds the instance to its ``input_path`` (recorded in the instance's own
storage, so every Celery worker or Kubernetes pod of a PostgreSQL instance sees it, and in
``$DAGSTER_HOME/curation_assets_dataset.json`` for the CLI's choice of instance folder); anything
later that works on another input folder with that instance is refused with a message saying so
(the CLI then picks an instance of that folder's own, see ``cli/runner.py``). Two folders holding
an ``x.mp4`` never share a partition.
A local input folder is bound by its real path (``sources.canonical_input``): a spelling through a
symbolic link is refused here, with the real path to give (the CLI resolves it before anything).
"""

from __future__ import annotations

import json
import os

import dagster as dg

from .core import sources, storage
from .core.dataset import DATASET_FILE, bound_dataset, source_url_for_key, video_of_key
from .core.keys import key_from_rel_path

__all__ = ["DATASET_FILE", "DATASET_KEY", "VIDEOS_PARTITION_NAME", "DatasetMismatch", "bind_dataset", "bound_dataset",
           "discover_video_keys", "io_partition_keys", "run_partition_keys", "source_url_for_key", "video_of_key",
           "videos_partitions"]

VIDEOS_PARTITION_NAME = "videos"
DATASET_KEY = "curation_assets/dataset_input_path"  # in the instance's key-value storage

videos_partitions = dg.DynamicPartitionsDefinition(name=VIDEOS_PARTITION_NAME)


class DatasetMismatch(ValueError):
    """The instance's video partitions belong to another input folder."""


def io_partition_keys(context: dg.OutputContext | dg.InputContext) -> list[str]:
    """The video keys an IO manager call stores or loads (none for an unpartitioned call): the
    one rule every IO manager of the ``videos`` partitions reads its keys by."""
    return list(context.asset_partition_keys) if context.has_asset_partitions else []


def run_partition_keys(context: dg.AssetExecutionContext) -> list[str]:
    """The video keys an asset's run covers: one key, a range of a batched run, or none."""
    return list(context.partition_keys) if context.has_partition_key_range or context.has_partition_key else []


def discover_video_keys(input_path: str, extensions: tuple[str, ...] | None = None) -> list[str]:
    """Partition keys of every video file under ``input_path``, sorted."""
    return [key_from_rel_path(rel) for rel in sources.list_videos(input_path, extensions)]


def bind_dataset(instance: dg.DagsterInstance, input_path: str) -> None:
    """Bind the instance to ``input_path`` (first use), or refuse another input folder.

    The instance's storage decides: a worker's instance folder is its own local disk (a Kubernetes
    pod's is new for every step), so the file there only mirrors it."""
    root = instance.root_directory
    input_path = storage.normalize_url(input_path)
    canonical = sources.canonical_input(input_path)
    if canonical != input_path:  # one source, one identity: the same files under a second name are refused
        raise DatasetMismatch(
            f"input_path {storage.redact(input_path)} goes through a symbolic link to {storage.redact(canonical)}: "
            "give the real path (CURATION_INPUT_PATH, or input_path in the launchpad; the CLI resolves it itself), "
            "so that each video has one source URL, one set of clip ids and one partition")
    stored = instance.run_storage.get_cursor_values({DATASET_KEY}).get(DATASET_KEY) or None
    in_file = bound_dataset(root)
    bound = stored or in_file
    if bound is None or bound == input_path:
        if stored is None:
            instance.run_storage.set_cursor_values({DATASET_KEY: input_path})
        if in_file is None:
            try:
                storage.write_text_atomic(os.path.join(root, DATASET_FILE), json.dumps({"input_path": input_path}))
            except OSError:  # a worker that cannot write its instance folder: the storage holds the binding
                pass
    else:
        raise DatasetMismatch(
            f"this Dagster instance ({root}) holds the video partitions of {storage.redact(bound)}; "
            f"input_path is {storage.redact(input_path)}. Use another instance (DAGSTER_HOME, or the CLI's "
            "--dagster-home) for each input folder, so that a partition key names one video"
        )
