"""The jobs the sensor, the schedule and the CLI launch.

``curate_videos`` runs every curation step of the selected videos; with the code location's
default executor (``defs.executors``: in-process) in **one process**: a daemon-launched run
otherwise starts a process per step, seconds each, which is more than the per-video work of a
batch of short videos. Steps in the ``gpu`` pool still take a pool
slot (the executor claims instance concurrency slots), so two runs never embed at once.

``remove_deleted_videos`` removes the outputs and the partition of videos whose source was
deleted (requested by the upload sensor when ``watch_remove_deleted`` is on).
"""


import dagster as dg

from ...core import removal, storage
from ...core.work import WorkArea
from ...partitions import VIDEOS_PARTITION_NAME, DatasetMismatch, bind_dataset, source_url_for_key
from ..packaging.assets import CURATION_SELECTION
from ..shared.resources import CurationSettings
from ..shared.retries import retried

CURATE_JOB_NAME = "curate_videos"
REMOVE_JOB_NAME = "remove_deleted_videos"
REMOVE_OP_NAME = "remove_deleted_video_outputs"
# The layout assets whose partitions record a removal (an observation each).
REMOVAL_OBSERVED = ("processed_videos", "clips")

curate_videos = dg.define_asset_job(
    CURATE_JOB_NAME, selection=CURATION_SELECTION,
    description="Every curation asset of the selected videos (one process per run unless CURATION_EXECUTOR says "
                "otherwise).",
)


class RemovalConfig(dg.Config):
    """The partition keys of the deleted videos."""

    keys: list[str]


@dg.op(name=REMOVE_OP_NAME)
@retried
def remove_deleted_video_outputs(context: dg.OpExecutionContext, config: RemovalConfig,
                                 settings: CurationSettings) -> None:
    """Remove each video's layout files and work-area values, then its partition, unless its source
    is back. One video's failure is kept to it; the op fails at the end naming them."""
    options = settings.options()
    try:
        bind_dataset(context.instance, options.input_path)
    except DatasetMismatch as exc:
        raise dg.Failure(str(exc), allow_retries=False) from None
    area = WorkArea.for_options(options)
    failed: dict[str, str] = {}
    removed: list[str] = []
    for key in config.keys:
        if not context.instance.has_dynamic_partition(VIDEOS_PARTITION_NAME, key):
            continue  # removed already (a retry of this run), or by hand
        try:
            source = source_url_for_key(options.input_path, key)
        except ValueError as exc:
            failed[key] = f"refused: {exc}"
            continue
        rel = storage.relative_to(options.input_path, source)
        try:
            if storage.file_info(source) is not None:
                context.log.warning(f"{rel}: the source is back under input_path; its outputs and partition are kept")
                continue
            report = removal.remove_video_outputs(options.output_path, rel, source, area)
        except Exception as exc:  # noqa: BLE001 - this video's failure
            failed[key] = storage.redact(f"{type(exc).__name__}: {exc}")
            context.log.error(f"{rel}: outputs not removed: {failed[key]}")
            continue
        context.log.info(f"{rel}: source deleted; removed {report.total} files "
                         f"({', '.join(f'{d} {n}' for d, n in sorted(report.removed.items())) or 'none'})"
                         + (f"; refused: {'; '.join(report.problems)}" if report.problems else ""))
        for asset in REMOVAL_OBSERVED:
            context.log_event(dg.AssetObservation(asset_key=asset, partition=key, metadata={
                "source_deleted": True, "outputs_removed": True, "files_removed": report.total}))
        removed.append(key)
    for key in removed:
        context.instance.delete_dynamic_partition(VIDEOS_PARTITION_NAME, key)
    if failed:
        # retried (@retried, defs.retries: a storage error may pass); what was removed is not touched again
        raise dg.Failure(f"{len(failed)} video(s) not removed:\n"
                         + "\n".join(f"- {k}: {why}" for k, why in failed.items()),
                         metadata={"failed_partitions": dg.MetadataValue.json(failed)})


@dg.job(name=REMOVE_JOB_NAME, executor_def=dg.in_process_executor,
        description="Remove the outputs and partitions of videos whose source was deleted.")
def remove_deleted_videos() -> None:
    remove_deleted_video_outputs()


__all__ = ["CURATE_JOB_NAME", "REMOVE_JOB_NAME", "REMOVE_OP_NAME", "curate_videos", "remove_deleted_videos"]
