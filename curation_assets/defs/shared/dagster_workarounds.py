"""The one place where this project leans on Dagster's internals, for speed only.

Dagster 1.13.27 has no public API to cache a pythonic resource's config schema. The workaround is
confined to this module, changes what is computed never what a run does, and falls back to
Dagster's own behaviour when its internals move. ``test_dagster_workarounds.py`` checks the
Dagster behaviour it relies on, and that it still has its effect, so a Dagster upgrade that
changes it shows up as a failing test rather than as a silent slowdown.

- :func:`memoise_resource_schemas`: Dagster copies every pythonic resource several times when a
  run initialises it, and each copy re-derives the config schema from the pydantic fields
  (``CurationSettings`` has one field per pipeline setting). The schema depends only on the
  class and the omitted (nested-resource) fields and Dagster never mutates it, so it is computed
  once per class, for this package's classes only.
"""

from __future__ import annotations

import functools
from typing import Any

_PACKAGE = __name__.split(".")[0] + "."

# what the memoised schema function did: computed (a miss) or answered from the cache (a hit)
schema_stats = {"computed": 0, "reused": 0}


def memoise_resource_schemas() -> bool:
    """Memoise Dagster's config-schema inference for this package's resource classes.

    Patches ``dagster._config.pythonic_config.resource.infer_schema_from_config_class`` (the name
    Dagster's resource copies call); idempotent. False when Dagster no longer has that function
    there (runs are then merely slower)."""
    try:
        from dagster._config.pythonic_config import resource as pythonic_resource
    except ImportError:  # pragma: no cover - a Dagster without this module
        return False
    original = getattr(pythonic_resource, "infer_schema_from_config_class", None)
    if original is None:
        return False
    if getattr(original, "curation_memoised", False):
        return True
    cache: dict[tuple, Any] = {}

    @functools.wraps(original)
    def infer_schema(model_cls, description=None, fields_to_omit=None, default=None):
        if description is not None or default is not None or not model_cls.__module__.startswith(_PACKAGE):
            return original(model_cls, description, fields_to_omit, default)
        key = (model_cls, frozenset(fields_to_omit or ()))
        if key in cache:
            schema_stats["reused"] += 1
        else:
            schema_stats["computed"] += 1
            cache[key] = original(model_cls, fields_to_omit=fields_to_omit)
        return cache[key]

    infer_schema.curation_memoised = True  # type: ignore[attr-defined]
    infer_schema.curation_original = original  # type: ignore[attr-defined]
    pythonic_resource.infer_schema_from_config_class = infer_schema
    return True
