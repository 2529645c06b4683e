"""The code location's public face: its definitions (``defs``, what ``dagster dev -m
curation_assets.definitions``, ``workspace.yaml`` and ``dg`` load), the Python API
(:func:`build_definitions`), and the names a launcher of its runs needs (the CLI): the job
names, the partition-range run tags, how keys are cut into runs, and the resources it binds
(the CLI imports nothing else of the Dagster layer).

``defs`` is Dagster's project layout: the ``defs/`` folder autoloaded (``[tool.dg]`` in
pyproject.toml names it). Installed from a wheel (``deploy/Dockerfile``) there is no
pyproject.toml beside the package to name it, and ``defs`` is the same location built directly.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from .core.backfill import batched
from .defs.location import build_definitions
from .defs.shared.resources import (
    AestheticModel,
    CaptionService,
    CurationSettings,
    EmbeddingModel,
    PackagingSettings,
    caption_service_from_env,
)
from .defs.shared.run_control import RunControl
from .defs.shared.tags import CURATE_JOB_NAME, RANGE_END_TAG, RANGE_START_TAG, REMOVE_JOB_NAME

__all__ = ["CURATE_JOB_NAME", "RANGE_END_TAG", "RANGE_START_TAG", "REMOVE_JOB_NAME", "AestheticModel", "CaptionService",
           "CurationSettings", "EmbeddingModel", "PackagingSettings", "RunControl", "batched", "build_definitions",
           "caption_service_from_env", "defs"]  # noqa: F822 - defs is built on first access (__getattr__)

_PROJECT = Path(__file__).resolve().parent.parent


def _load() -> dg.Definitions:
    if (_PROJECT / "pyproject.toml").is_file() and (_PROJECT / "curation_assets" / "defs").is_dir():
        return dg.load_from_defs_folder(path_within_project=_PROJECT)
    return build_definitions()


_built: dict[str, dg.Definitions] = {}


def __getattr__(name: str) -> dg.Definitions:
    """``defs`` is built when first asked for (``dagster dev``, ``dg``, ``workspace.yaml``): the CLI
    imports this module for the names above and builds its own definitions, so loading the
    ``defs/`` folder at import cost every CLI run about 0.15 CPU s for nothing."""
    if name == "defs":
        if "defs" not in _built:
            _built["defs"] = _load()
        return _built["defs"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | {"defs"})
