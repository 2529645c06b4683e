"""The code location: assets, checks, jobs, IO managers, resources, sensors and schedules, assembled.
Nothing else lives here."""

from __future__ import annotations

import dagster as dg

from .core.options import PipelineOptions, options_from_env
from .defs.automation.eager import build_automation_sensor, eager_downstream
from .defs.automation.schedules import build_backfill_schedule
from .defs.automation.sensors import build_upload_sensor
from .defs.curation.assets import aesthetic_scores, build_clip_writer, clip_captions, clip_embeddings, video_clips
from .defs.curation.io_managers import ClipLayoutIOManager, WorkIOManager
from .defs.curation.jobs import CURATE_JOB_NAME, curate_videos, remove_deleted_videos
from .defs.packaging.assets import (
    CURATION_SELECTION,
    ManifestIOManager,
    PackagingSettings,
    packaging_assets,
    packaging_jobs,
    packaging_settings_from_env,
)
from .defs.shared.executors import executor_from_env
from .defs.shared.resources import (
    AestheticModel,
    CaptionService,
    CurationSettings,
    EmbeddingModel,
    caption_service_from_env,
)

__all__ = ["CURATE_JOB_NAME", "build_definitions", "defs"]


def build_definitions(settings: CurationSettings | None = None, caption_service: CaptionService | None = None,
                      executor: dg.ExecutorDefinition | None = None, packaging: PackagingSettings | None = None,
                      blocking_checks: bool | None = None) -> dg.Definitions:
    """Definitions with the given settings (default: ``CURATION_*`` / ``CURATION_PACKAGE_*``
    environment variables) and executor (default: the one ``CURATION_EXECUTOR`` names, in-process
    when unset). The code location's own settings (``Setting.location``: sensor interval, backfill
    cron, blocking checks) shape the definitions here; ``blocking_checks`` overrides
    ``checks_block_downstream``."""
    settings = settings or CurationSettings.from_options(options_from_env())
    options = settings.options()
    blocking = options.checks_block_downstream if blocking_checks is None else blocking_checks
    bound = _bound_by_key(settings)
    assets = eager_downstream([video_clips, aesthetic_scores, clip_embeddings, clip_captions,
                               build_clip_writer(blocking)], roots={video_clips.key})
    return dg.Definitions(
        assets=[*assets, *packaging_assets(blocking)],
        jobs=[curate_videos, remove_deleted_videos, *packaging_jobs()],
        sensors=[build_upload_sensor(curate_videos, remove_deleted_videos, options.watch_interval_s),
                 build_automation_sensor(CURATION_SELECTION)],
        schedules=[build_backfill_schedule(curate_videos, options.backfill_cron)],
        executor=executor or executor_from_env(),
        resources={
            "settings": bound,
            "layout_io_manager": ClipLayoutIOManager(settings=bound),
            "work_io_manager": WorkIOManager(settings=bound),
            "manifest_io_manager": ManifestIOManager(settings=bound),
            "packaging_settings": packaging or packaging_settings_from_env(),
            "embedding_model": EmbeddingModel(),
            "aesthetic_model": AestheticModel(),
            "caption_service": caption_service or caption_service_from_env(),
        },
    )


def _bound_by_key(settings: CurationSettings) -> dg.PartialResource:
    """The settings as one resource the IO managers depend on by its key, with these values as its
    defaults: a run's ``settings`` config (launchpad, a run config file) then reaches the IO
    managers too. A nested resource *instance* would keep the code location's values there, and on
    workers with other working folders or environments the steps would store and look for values
    in different work areas (test_deploy_celery)."""
    return CurationSettings.configure_at_launch(**{name: getattr(settings, name)
                                                   for name in PipelineOptions.field_names()})


defs = build_definitions()
