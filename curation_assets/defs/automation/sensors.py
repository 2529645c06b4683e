"""The upload sensor: new and replaced videos under ``input_path`` become partitions and batched runs.

Each tick hands the decision to the watcher core (``core.uploads.watch_tick``: what is new,
replaced, still being written, deleted) with the settings of the ``settings`` resource, and turns
it into Dagster requests:

- new videos are added as partitions; the requested videos go into runs of ``VIDEOS_PER_RUN``
  consecutive partitions (a partition range: new keys added together are consecutive in the
  instance's key order; a replaced video's key is where it was, so it runs with its neighbours
  or alone), tagged with why (``new``, ``replaced``) and keyed by each video's content, so a
  replaced video's run is not dropped as a duplicate of its first one;
- deleted source videos are logged and recorded as an observation on their ``processed_videos``
  partition; with ``watch_remove_deleted`` a ``remove_deleted_videos`` run removes their files
  (the writer's own verified list, never anything outside the output) and then their partition.

The watcher's table of what was requested lives in Dagster's key-value storage (the cursor names
it), so a tick over an unchanged input lists it and writes nothing.
"""


from typing import Any

import dagster as dg

from ...core import backfill
from ...core.backfill import batched, contiguous_batches, reason_tag, run_key
from ...core.options import VIDEOS_PER_RUN, PipelineOptions
from ...core.upload_state import KeyValueStateStore
from ...core.uploads import WatchSettings, WatchTick, watch_tick
from ...partitions import VIDEOS_PARTITION_NAME, bind_dataset, source_url_for_key, videos_partitions
from ..shared.resources import CurationSettings
from ..shared.tags import RANGE_END_TAG, RANGE_START_TAG, REASON_TAG, REMOVE_OP_NAME, REQUESTED_BY_TAG, VIDEOS_TAG

UPLOAD_SENSOR_NAME = "new_videos_sensor"
DELETED = "deleted"
# Videos per removal run.
REMOVE_PER_RUN = 100
# Names listed in a tick's log line at most.
LOGGED_NAMES = 10


def range_request(job_name: str, batch: list[str], key: str, tags: dict[str, str]) -> dg.RunRequest:
    """One run over ``batch`` (consecutive partitions): a partition range, or one partition."""
    tags = {**tags, VIDEOS_TAG: str(len(batch))}
    if len(batch) == 1:
        return dg.RunRequest(run_key=key, job_name=job_name, partition_key=batch[0], tags=tags)
    return dg.RunRequest(run_key=key, job_name=job_name,
                         tags={**tags, RANGE_START_TAG: batch[0], RANGE_END_TAG: batch[-1]})


def watch_settings(options: PipelineOptions) -> WatchSettings:
    return WatchSettings(extensions=options.video_extensions, max_per_tick=options.watch_max_per_tick,
                         settle_age_s=options.watch_settle_age_s,
                         list_pages_per_tick=options.watch_list_pages_per_tick or None)


def _names(items: list[str]) -> str:
    shown = ", ".join(items[:LOGGED_NAMES])
    return shown + (f" and {len(items) - LOGGED_NAMES} more" if len(items) > LOGGED_NAMES else "")


def _log(context: dg.SensorEvaluationContext, tick: WatchTick) -> None:
    context.log.info(tick.summary())
    if tick.reset:
        context.log.info(f"the watcher started over ({tick.reset}); {tick.adopted} video(s) with a partition already "
                         "taken as requested")
    for warning in tick.warnings:
        context.log.warning(warning)
    if tick.unreadable:
        context.log.warning(f"could not read (what was known under them is kept): {_names(tick.unreadable)}")
    if tick.skipped:
        context.log.info(f"skipped: {_names([f'{rel} ({why})' for rel, why in tick.skipped])}")
    if tick.settling:
        context.log.info(f"still being written (requested once unchanged): {_names(tick.settling)}")
    if tick.deleted:
        context.log.warning(f"source video(s) deleted: {_names(tick.deleted)}")


def upload_tick(context: dg.SensorEvaluationContext, settings: CurationSettings, *, curate_job_name: str,
                remove_job_name: str, sensor_name: str = UPLOAD_SENSOR_NAME) -> dg.SensorResult:
    """One tick of the upload sensor (the body of :func:`build_upload_sensor`'s sensor)."""
    options = settings.options()
    instance = context.instance
    bind_dataset(instance, options.input_path)  # another input folder on this instance: the tick fails saying so
    store = KeyValueStateStore(instance.daemon_cursor_storage.get_cursor_values,
                               instance.daemon_cursor_storage.set_cursor_values)
    tick = watch_tick(options.input_path, context.cursor, watch_settings(options), store=store, store_key=sensor_name,
                      known_keys=lambda: instance.get_dynamic_partitions(VIDEOS_PARTITION_NAME),
                      exclude=[options.output_path, options.work_url])
    _log(context, tick)
    if not tick.requested and not tick.deleted:
        return dg.SensorResult(skip_reason=tick.summary(), cursor=tick.cursor)

    order = list(instance.get_dynamic_partitions(VIDEOS_PARTITION_NAME))
    known = set(order)
    uploads = {u.key: u for u in tick.requested}
    new_keys = [u.key for u in tick.requested if u.key not in known]
    # the previous cursor names this tick: a lost tick evaluated again gives the same run keys,
    # a later upload of the same content (after a removal) other ones
    after = f"after:{context.cursor or ''}"
    requests = []
    for batch in contiguous_batches(order + new_keys, uploads, VIDEOS_PER_RUN):
        reasons = [backfill.REPLACED if uploads[k].replaced else backfill.NEW for k in batch]
        key = run_key("upload", [after, *(f"{k}@{uploads[k].content_id}" for k in batch)])
        requests.append(range_request(curate_job_name, batch, key, {REQUESTED_BY_TAG: sensor_name,
                                                                     REASON_TAG: reason_tag(reasons)}))

    gone = [k for k in tick.deleted_keys if k in known]
    removing = options.watch_remove_deleted and bool(gone)
    events = [dg.AssetObservation(asset_key="processed_videos", partition=k, metadata={
        "source_deleted": True, "source": dg.MetadataValue.path(source_url_for_key(options.input_path, k)),
        "outputs": "removal requested (watch_remove_deleted)" if removing else "kept (watch_remove_deleted is off)"})
        for k in gone]
    if removing:
        for batch in batched(gone, REMOVE_PER_RUN):
            requests.append(dg.RunRequest(
                run_key=run_key("remove", [after, *batch]), job_name=remove_job_name,
                run_config={"ops": {REMOVE_OP_NAME: {"config": {"keys": batch}}}},
                tags={REQUESTED_BY_TAG: sensor_name, REASON_TAG: DELETED, VIDEOS_TAG: str(len(batch))}))
    adds = [videos_partitions.build_add_request(new_keys)] if new_keys else []
    return dg.SensorResult(run_requests=requests, dynamic_partitions_requests=adds, asset_events=events,
                           cursor=tick.cursor)


def build_upload_sensor(curate_job: Any, remove_job: Any,
                        interval_s: int) -> dg.SensorDefinition:
    """The upload sensor (stopped until turned on), ticking every ``interval_s`` seconds."""

    @dg.sensor(
        name=UPLOAD_SENSOR_NAME,
        minimum_interval_seconds=interval_s,
        default_status=dg.DefaultSensorStatus.STOPPED,
        jobs=[curate_job, remove_job],
        description="Adds a `videos` partition for each new video under input_path once it is fully uploaded, "
                    "and requests batched runs of new and replaced videos; reports deleted ones.",
    )
    def new_videos_sensor(context: dg.SensorEvaluationContext, settings: CurationSettings) -> dg.SensorResult:
        return upload_tick(context, settings, curate_job_name=curate_job.name, remove_job_name=remove_job.name)

    return new_videos_sensor


__all__ = ["UPLOAD_SENSOR_NAME", "build_upload_sensor", "range_request", "upload_tick", "watch_settings"]
