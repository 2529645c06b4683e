"""Which video partitions unattended curation requests, and how the requests become runs.

Plain Python: the schedule and the sensor (``defs/``) read from the Dagster instance what it
knows (the partition keys in its order, each partition's status, the data version its last
``processed_videos`` materialisation carries) and decide here.

- :func:`plan_backfill`: every partition that is missing, whose last attempt failed, or that is
  stale (written by other settings or another version of the code); current ones are left alone,
  and so are partitions a run is working on.
- :func:`contiguous_batches`: a run covers a *range* of partitions, which means every key between
  its two ends in the instance's key order, so a batch is a run of consecutive keys in that order,
  at most ``size`` long.
- :func:`data_version`: the ``pipeline`` record of a ``processed_videos`` document
  (``PipelineOptions.record``) as one string, what the writer tags each video's materialisation
  with, so staleness is read from the instance in one query instead of from every document.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# A partition's status as the instance reports it (Dagster's AssetPartitionStatus, by value).
MATERIALIZED = "materialized"
FAILED = "failed"
IN_PROGRESS = "in_progress"

# Why a partition is requested (tag values of the runs).
MISSING = "missing"
STALE = "stale"
NEW = "new"
REPLACED = "replaced"


@dataclass(frozen=True)
class Wanted:
    """A partition to request and why (``reason``: missing, failed or stale; ``detail`` for logs)."""

    key: str
    reason: str
    detail: str = ""


def data_version(record: Mapping[str, Any]) -> str:
    """``<version>:<settings_hash>`` of a pipeline record (what shaped a video's files)."""
    return f"{record['version']}:{record['settings_hash']}"


def plan_backfill(keys: Sequence[str], status: Mapping[str, str | None], versions: Mapping[str, str | None],
                  current: str) -> list[Wanted]:
    """The partitions of ``keys`` (in that order) a backfill should request.

    ``status``: key -> MATERIALIZED / FAILED / IN_PROGRESS, absent or None when never attempted;
    ``versions``: key -> the data version of its last materialisation (absent: none recorded, as
    for output written before versions were recorded: taken as stale); ``current``: the data version
    the current settings and code give."""
    wanted: list[Wanted] = []
    for key in keys:
        state = status.get(key)
        if state == IN_PROGRESS:
            continue
        if state == FAILED:
            wanted.append(Wanted(key, FAILED, "its last materialisation failed"))
        elif state != MATERIALIZED:
            wanted.append(Wanted(key, MISSING, "never materialised"))
        else:
            version = versions.get(key)
            if version != current:
                detail = f"written as {version}, current is {current}" if version else "no recorded pipeline version"
                wanted.append(Wanted(key, STALE, detail))
    return wanted


def batched(keys: Sequence[str], size: int) -> list[list[str]]:
    """``keys`` in runs of at most ``size``, in their order."""
    return [list(keys[i : i + size]) for i in range(0, len(keys), size)]


def contiguous_batches(order: Sequence[str], keys: Iterable[str], size: int) -> list[list[str]]:
    """``keys`` grouped into runs of consecutive keys of ``order`` (the instance's key order), each at
    most ``size`` long; each group is one partition-range run. Keys not in ``order`` are refused."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    position = {k: i for i, k in enumerate(order)}
    wanted = set(keys)
    unknown = [k for k in wanted if k not in position]
    if unknown:
        raise ValueError(f"{len(unknown)} key(s) are not partitions, e.g. {sorted(unknown)[0]!r}")
    batches: list[list[str]] = []
    last = -2
    for p in sorted(position[k] for k in wanted):
        if not batches or p != last + 1 or len(batches[-1]) == size:
            batches.append([])
        batches[-1].append(order[p])
        last = p
    return batches


def run_key(prefix: str, items: Iterable[str]) -> str:
    """A run key naming exactly ``items`` (e.g. ``key@content`` pairs): Dagster launches one run per
    run key and drops a request whose key it has seen, so equal items must give equal keys and any
    change (another video, a replaced video's new content) another key."""
    digest = hashlib.sha256("\0".join(sorted(items)).encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return f"{prefix}:{digest}"


def reason_tag(reasons: Iterable[str]) -> str:
    """One tag value for a batch's reasons: the reason, or several joined with ``+`` in a fixed order."""
    present = set(reasons)
    ordered = [r for r in (NEW, REPLACED, MISSING, FAILED, STALE) if r in present]
    return "+".join(ordered + sorted(present - set(ordered)))


__all__ = [
    "FAILED",
    "IN_PROGRESS",
    "MATERIALIZED",
    "MISSING",
    "NEW",
    "REPLACED",
    "STALE",
    "Wanted",
    "contiguous_batches",
    "data_version",
    "plan_backfill",
    "reason_tag",
    "run_key",
]
