"""The code location: assets, IO managers, resources and sensors, assembled. Nothing else lives here."""

from __future__ import annotations

import dagster as dg

from .core.options import PipelineOptions, options_from_env
from .defs.executors import executor_from_env
from .defs.assets import aesthetic_scores, clip_captions, clip_embeddings, clip_writer, video_clips
from .defs.io_managers import ClipLayoutIOManager, WorkIOManager
from .defs.packaging import (CURATION_SELECTION, ManifestIOManager, PackagingSettings, blocking_from_env,
                             packaging_assets, packaging_jobs, packaging_settings_from_env)
from .defs.resources import AestheticModel, CaptionService, CurationSettings, EmbeddingModel, caption_service_from_env
from .defs.sensors import new_videos_sensor

CURATE_JOB_NAME = "curate_videos"
curate_videos = dg.define_asset_job(
    CURATE_JOB_NAME, selection=CURATION_SELECTION, description="Every curation asset of the selected videos."
)


def build_definitions(settings: CurationSettings | None = None, caption_service: CaptionService | None = None,
                      executor: dg.ExecutorDefinition | None = None, packaging: PackagingSettings | None = None,
                      blocking_checks: bool | None = None) -> dg.Definitions:
    """Definitions with the given settings (default: ``CURATION_*`` / ``CURATION_PACKAGE_*``
    environment variables) and executor (default: Dagster's multiprocess executor; ``defs`` takes
    ``CURATION_EXECUTOR``); ``blocking_checks``: failing package checks stop what is downstream."""
    settings = _bound_by_key(settings or CurationSettings.from_options(options_from_env()))
    blocking = blocking_from_env() if blocking_checks is None else blocking_checks
    return dg.Definitions(
        assets=[video_clips, aesthetic_scores, clip_embeddings, clip_captions, clip_writer, *packaging_assets(blocking)],
        jobs=[curate_videos, *packaging_jobs()],
        sensors=[new_videos_sensor],
        executor=executor,
        resources={
            "settings": settings,
            "layout_io_manager": ClipLayoutIOManager(settings=settings),
            "work_io_manager": WorkIOManager(settings=settings),
            "manifest_io_manager": ManifestIOManager(settings=settings),
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
    return CurationSettings.configure_at_launch(**{name: getattr(settings, name) for name in PipelineOptions.field_names()})


defs = build_definitions(executor=executor_from_env())
