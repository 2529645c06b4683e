"""The backfill schedule: every video partition that is missing, failed or stale, in batched runs.

Dagster's own backfills do not reach this scale (one backfill over 10,000 partitions submitted a
run every ~10 s, see README), and ``build_schedule_from_partitioned_job`` does not take dynamic
partitions, so the schedule computes what to request itself, from three things the instance
answers without reading any output file:

- the partition keys, in the instance's order (ranges are contiguous in it);
- each partition's status on ``processed_videos``, the last file a video's write produces
  (``get_status_by_partition``: the same cached statuses the UI's partition bar shows);
- the data version each video's last ``processed_videos`` materialisation carries: the writer
  tags it with the ``pipeline`` record's version and settings hash (``core.backfill.data_version``),
  read for every partition in one query (``get_latest_tags_by_partition``).

``core.backfill.plan_backfill`` decides; runs of ``VIDEOS_PER_RUN`` consecutive keys follow, with
run keys naming the tick, so the next night can request the same videos again if they failed again.
"""


from typing import Any

import dagster as dg
from dagster._core.definitions.data_version import DATA_VERSION_TAG

from ...core import backfill
from ...core.backfill import contiguous_batches, plan_backfill, reason_tag, run_key
from ...core.options import VIDEOS_PER_RUN
from ...partitions import VIDEOS_PARTITION_NAME, videos_partitions
from ..shared.resources import CurationSettings
from .sensors import REASON_TAG, REQUESTED_BY_TAG, range_request

BACKFILL_SCHEDULE_NAME = "backfill_videos_schedule"
# The asset whose status and data version stand for a video's (written last, after every other file).
STATUS_ASSET = dg.AssetKey("processed_videos")
_STATUS = {dg.AssetPartitionStatus.MATERIALIZED: backfill.MATERIALIZED, dg.AssetPartitionStatus.FAILED: backfill.FAILED,
           dg.AssetPartitionStatus.IN_PROGRESS: backfill.IN_PROGRESS}
LOGGED_KEYS = 10


def partition_states(instance: dg.DagsterInstance, keys: list[str]) -> tuple[dict[str, str | None], dict[str, str]]:
    """``(status, data version)`` of each video partition, from the instance."""
    raw = instance.get_status_by_partition(STATUS_ASSET, keys, videos_partitions) or {}
    status = {k: _STATUS.get(v) for k, v in raw.items() if v is not None}
    tags = instance.event_log_storage.get_latest_tags_by_partition(
        STATUS_ASSET, dg.DagsterEventType.ASSET_MATERIALIZATION, [DATA_VERSION_TAG])
    versions = {k: t[DATA_VERSION_TAG] for k, t in tags.items() if DATA_VERSION_TAG in t}
    return status, versions


def backfill_tick(context: dg.ScheduleEvaluationContext, settings: CurationSettings, *, curate_job_name: str,
                  schedule_name: str = BACKFILL_SCHEDULE_NAME) -> list[dg.RunRequest] | dg.SkipReason:
    """One tick of the backfill schedule (the body of :func:`build_backfill_schedule`'s schedule)."""
    options = settings.options()
    keys = list(context.instance.get_dynamic_partitions(VIDEOS_PARTITION_NAME))
    if not keys:
        return dg.SkipReason("no video partitions yet (turn on the upload sensor, or run the CLI)")
    status, versions = partition_states(context.instance, keys)
    current = backfill.data_version(options.record())
    wanted = plan_backfill(keys, status, versions, current)
    if not wanted:
        return dg.SkipReason(f"all {len(keys)} videos are current ({current}), none missing or failed")
    by_key = {w.key: w for w in wanted}
    counts = {r: sum(1 for w in wanted if w.reason == r) for r in (backfill.MISSING, backfill.FAILED, backfill.STALE)}
    busy = sum(1 for s in status.values() if s == backfill.IN_PROGRESS)
    context.log.info(f"{len(keys)} videos: requesting {counts[backfill.MISSING]} missing, {counts[backfill.FAILED]} "
                     f"failed, {counts[backfill.STALE]} stale (current: {current}); {busy} in progress left alone")
    for reason, n in counts.items():
        if n:
            examples = [f"{w.key} ({w.detail})" for w in wanted if w.reason == reason][:LOGGED_KEYS]
            context.log.info(f"{reason}: {', '.join(examples)}{' ...' if n > LOGGED_KEYS else ''}")
    when = context.scheduled_execution_time.isoformat() if context.scheduled_execution_time else "now"
    return [range_request(curate_job_name, batch, run_key("backfill", [f"tick:{when}", *batch]),
                          {REQUESTED_BY_TAG: schedule_name, REASON_TAG: reason_tag(by_key[k].reason for k in batch)})
            for batch in contiguous_batches(keys, by_key, VIDEOS_PER_RUN)]


def build_backfill_schedule(curate_job: Any, cron: str) -> dg.ScheduleDefinition:
    """The backfill schedule (stopped until turned on) at ``cron`` (UTC)."""

    @dg.schedule(
        name=BACKFILL_SCHEDULE_NAME,
        cron_schedule=cron,
        execution_timezone="UTC",
        job=curate_job,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Requests every video partition that is missing, whose last materialisation failed, or that "
                    "was written by other settings or another version, in batched runs.",
    )
    def backfill_videos_schedule(context: dg.ScheduleEvaluationContext, settings: CurationSettings):
        return backfill_tick(context, settings, curate_job_name=curate_job.name)

    return backfill_videos_schedule


__all__ = ["BACKFILL_SCHEDULE_NAME", "backfill_tick", "build_backfill_schedule", "partition_states"]
