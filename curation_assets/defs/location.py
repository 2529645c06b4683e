"""The code location, assembled from its domains (curation, packaging, automation) and what they
share (resources, executor). ``dg`` autoloads the ``defs/`` folder: :func:`location` is what it
finds here, built from the environment; :func:`build_definitions` is the same with settings given
(the Python API, the tests and the CLI). Nothing else lives here.

The other modules of ``defs/`` hold no module-level Dagster object that this one does not also
use (the step assets and the jobs are the same objects; the writer, the packaging assets, the
sensors and the schedule are built here, with the code location's settings), so the autoloaded
folder and :func:`build_definitions` give the same definitions.
"""

from __future__ import annotations

import dagster as dg

from ..core.options import PipelineOptions, options_from_env
from .automation.eager import build_automation_sensor
from .automation.schedules import build_backfill_schedule
from .automation.sensors import build_upload_sensor
from .curation.assets import aesthetic_scores, build_clip_writer, clip_captions, clip_embeddings, video_clips
from .curation.io_managers import ClipLayoutIOManager, WorkIOManager
from .curation.jobs import CURATION_SELECTION, curate_videos, remove_deleted_videos
from .packaging.assets import (
    ManifestIOManager,
    PackagingSettings,
    packaging_assets,
    packaging_jobs,
    packaging_settings_from_env,
)
from .packaging.datacard import datacard_assets
from .packaging.gallery import gallery_assets
from .packaging.snapshot import snapshot_assets
from .shared.executors import executor_from_env
from .shared.resources import AestheticModel, CaptionService, CurationSettings, EmbeddingModel, caption_service_from_env
from .shared.run_control import RunControl


def build_definitions(settings: CurationSettings | None = None, caption_service: CaptionService | None = None,
                      executor: dg.ExecutorDefinition | None = None, packaging: PackagingSettings | None = None,
                      blocking_checks: bool | None = None, run_control: RunControl | None = None) -> dg.Definitions:
    """Definitions with the given settings (default: ``CURATION_*`` / ``CURATION_PACKAGE_*``
    environment variables) and executor (default: the one ``CURATION_EXECUTOR`` names, in-process
    when unset). The code location's own settings (``Setting.location``: sensor interval, backfill
    cron, blocking checks) shape the definitions here; ``blocking_checks`` overrides
    ``checks_block_downstream``; ``run_control``: the steps' progress and stop (default: logs,
    never stops; the CLI binds its own)."""
    settings = settings or CurationSettings.from_options(options_from_env())
    options = settings.options()
    blocking = options.checks_block_downstream if blocking_checks is None else blocking_checks
    bound = _bound_by_key(settings)
    return dg.Definitions.merge(
        dg.Definitions(  # curation
            assets=[video_clips, aesthetic_scores, clip_embeddings, clip_captions, build_clip_writer(blocking)],
            jobs=[curate_videos, remove_deleted_videos],
            resources={"layout_io_manager": ClipLayoutIOManager(settings=bound),
                       "work_io_manager": WorkIOManager(settings=bound)}),
        dg.Definitions(  # packaging
            assets=[*packaging_assets(blocking), *datacard_assets(), *gallery_assets(), *snapshot_assets()],
            jobs=packaging_jobs(),
            resources={"manifest_io_manager": ManifestIOManager(settings=bound),
                       "packaging_settings": packaging or packaging_settings_from_env()}),
        dg.Definitions(  # automation
            sensors=[build_upload_sensor(curate_videos, remove_deleted_videos, options.watch_interval_s),
                     build_automation_sensor(CURATION_SELECTION)],
            schedules=[build_backfill_schedule(curate_videos, options.backfill_cron)]),
        dg.Definitions(  # shared
            executor=executor or executor_from_env(),
            resources={"settings": bound, "embedding_model": EmbeddingModel(), "aesthetic_model": AestheticModel(),
                       "caption_service": caption_service or caption_service_from_env(),
                       "run_control": run_control or RunControl()}),
    )


def _bound_by_key(settings: CurationSettings) -> dg.PartialResource:
    """The settings as one resource the IO managers depend on by its key, with these values as its
    defaults: a run's ``settings`` config (launchpad, a run config file) then reaches the IO
    managers too. A nested resource *instance* would keep the code location's values there, and on
    workers with other working folders or environments the steps would store and look for values
    in different work areas (test_deploy_celery)."""
    values = {name: getattr(settings, name) for name in PipelineOptions.field_names()}
    return CurationSettings.configure_at_launch(**values)


@dg.definitions
def location() -> dg.Definitions:
    """The code location from the environment: what ``dg`` and ``dagster dev`` load."""
    return build_definitions()
