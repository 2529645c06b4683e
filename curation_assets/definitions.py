"""The code location: assets, checks, jobs, IO managers, resources, sensors and schedules, assembled.
Nothing else lives here."""

from __future__ import annotations

import dagster as dg

from .core.options import options_from_env
from .defs.assets import aesthetic_scores, build_clip_writer, clip_captions, clip_embeddings, video_clips
from .defs.automation import build_automation_sensor, eager_downstream
from .defs.io_managers import ClipLayoutIOManager, WorkIOManager
from .defs.jobs import CURATE_JOB_NAME, curate_videos, remove_deleted_videos
from .defs.resources import AestheticModel, CaptionService, CurationSettings, EmbeddingModel, caption_service_from_env
from .defs.schedules import build_backfill_schedule
from .defs.sensors import build_upload_sensor

__all__ = ["CURATE_JOB_NAME", "build_definitions", "defs"]


def build_definitions(settings: CurationSettings | None = None,
                      caption_service: CaptionService | None = None) -> dg.Definitions:
    """Definitions with the given settings (default: ``CURATION_*`` environment variables). The
    code location's own settings (``Setting.location``: sensor interval, backfill cron, blocking
    checks) shape the definitions here."""
    settings = settings or CurationSettings.from_options(options_from_env())
    options = settings.options()
    assets = eager_downstream([video_clips, aesthetic_scores, clip_embeddings, clip_captions,
                               build_clip_writer(options.checks_block_downstream)], roots={video_clips.key})
    return dg.Definitions(
        assets=assets,
        jobs=[curate_videos, remove_deleted_videos],
        sensors=[build_upload_sensor(curate_videos, remove_deleted_videos, options.watch_interval_s),
                 build_automation_sensor(dg.AssetSelection.all())],
        schedules=[build_backfill_schedule(curate_videos, options.backfill_cron)],
        executor=dg.in_process_executor,
        resources={
            "settings": settings,
            "layout_io_manager": ClipLayoutIOManager(settings=settings),
            "work_io_manager": WorkIOManager(settings=settings),
            "embedding_model": EmbeddingModel(),
            "aesthetic_model": AestheticModel(),
            "caption_service": caption_service or caption_service_from_env(),
        },
    )


defs = build_definitions()
