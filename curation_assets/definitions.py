"""The code location: assets, IO managers, resources and sensors, assembled. Nothing else lives here."""

from __future__ import annotations

import dagster as dg

from .core.options import options_from_env
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
                      packaging: PackagingSettings | None = None, blocking_checks: bool | None = None) -> dg.Definitions:
    """Definitions with the given settings (default: ``CURATION_*`` / ``CURATION_PACKAGE_*``
    environment variables); ``blocking_checks``: failing package checks stop what is downstream."""
    settings = settings or CurationSettings.from_options(options_from_env())
    blocking = blocking_from_env() if blocking_checks is None else blocking_checks
    return dg.Definitions(
        assets=[video_clips, aesthetic_scores, clip_embeddings, clip_captions, clip_writer, *packaging_assets(blocking)],
        jobs=[curate_videos, *packaging_jobs()],
        sensors=[new_videos_sensor],
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


defs = build_definitions()
