"""The jobs the sensor, the schedule and the CLI launch.

``curate_videos`` runs every curation step of the selected videos; with the code location's
default executor (``defs.executors``: in-process) in **one process**: a daemon-launched run
otherwise starts a process per step, seconds each, which is more than the per-video work of a
batch of short videos. Steps in the ``gpu`` pool still take a pool
slot (the executor claims instance concurrency slots), so two runs never embed at once.

``remove_deleted_videos`` removes the outputs and the partition of videos whose source was
deleted (requested by the upload sensor when ``watch_remove_deleted`` is on).
"""



import functools

import dagster as dg

from ...core import layout, removal, storage
from ...core.outcomes import VideoFailed, VideoOutcome, one_video
from ...core.work import WorkArea
from ...partitions import VIDEOS_PARTITION_NAME, DatasetMismatch, bind_dataset, source_url_for_key
from ..shared.outcomes import batch_failure, raise_for
from ..shared.policies import retried
from ..shared.resources import CurationSettings
from ..shared.tags import CURATE_JOB_NAME, REMOVE_JOB_NAME, REMOVE_OP_NAME
from .assets import LAYOUT_GROUP, STEPS_GROUP

#: The assets of one video's curation (the steps and the layout): what a curation run selects.
CURATION_SELECTION = dg.AssetSelection.groups(STEPS_GROUP, LAYOUT_GROUP)
# The layout assets whose partitions record a removal (an observation each).
REMOVAL_OBSERVED = (layout.LAYOUT_BY_NAME["processed_videos"].key, layout.LAYOUT_BY_NAME["clips"].key)

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
    outcomes: list[VideoOutcome] = []
    removed: list[str] = []
    for key in config.keys:
        if not context.instance.has_dynamic_partition(VIDEOS_PARTITION_NAME, key):
            continue  # removed already (a retry of this run), or by hand
        report, outcome = one_video(key, functools.partial(_remove_one, context, options.input_path,
                                                           options.output_path, key, area))
        outcomes.append(outcome)
        if not outcome.ok:
            if outcome.error != "refused":
                context.log.error(f"{key}: outputs not removed: {outcome.reason}")
            continue
        if report is None:
            continue  # the source is back
        for asset in REMOVAL_OBSERVED:
            context.log_event(dg.AssetObservation(asset_key=list(asset), partition=key, metadata={
                "source_deleted": True, "outputs_removed": True, "files_removed": report.total}))
        removed.append(key)
    for key in removed:
        context.instance.delete_dynamic_partition(VIDEOS_PARTITION_NAME, key)
    # retried (policies.retried: a storage error may pass); what was removed is not touched again
    raise_for(batch_failure(outcomes, "not removed", allow_retries=True))


def _remove_one(context: dg.OpExecutionContext, input_path: str, output_path: str, key: str,
                area: WorkArea) -> removal.RemovalReport | None:
    """Remove one deleted video's outputs (``None``: its source is back, nothing is removed)."""
    try:
        source = source_url_for_key(input_path, key)
    except ValueError as exc:
        raise VideoFailed("refused", str(exc), reason=f"refused: {exc}") from None
    rel = storage.relative_to(input_path, source)
    if storage.file_info(source) is not None:
        context.log.warning(f"{rel}: the source is back under input_path; its outputs and partition are kept")
        return None
    report = removal.remove_video_outputs(output_path, rel, source, area)
    context.log.info(f"{rel}: source deleted; removed {report.total} files "
                     f"({', '.join(f'{d} {n}' for d, n in sorted(report.removed.items())) or 'none'})"
                     + (f"; refused: {'; '.join(report.problems)}" if report.problems else ""))
    return report


@dg.job(name=REMOVE_JOB_NAME, executor_def=dg.in_process_executor,
        description="Remove the outputs and partitions of videos whose source was deleted.")
def remove_deleted_videos() -> None:
    remove_deleted_video_outputs()


__all__ = ["CURATE_JOB_NAME", "CURATION_SELECTION", "REMOVE_JOB_NAME", "REMOVE_OP_NAME", "curate_videos",
           "remove_deleted_videos"]
