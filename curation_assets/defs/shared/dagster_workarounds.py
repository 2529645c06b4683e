"""The two places where this project leans on Dagster's internals, for speed only.

Dagster 1.13.27 has no public API for either: no hook to cache a pythonic resource's config
schema, and no way to hand ``execute_in_process`` the partition keys a caller already knows.
Both workarounds are confined to this module, change what is computed never what a run does,
and fall back to Dagster's own behaviour when its internals move. ``test_dagster_workarounds.py``
checks the Dagster behaviour each one relies on, and that each still has its effect, so a
Dagster upgrade that changes either shows up as a failing test rather than as a silent slowdown.

- :func:`memoise_resource_schemas`: Dagster copies every pythonic resource several times when a
  run initialises it, and each copy re-derives the config schema from the pydantic fields
  (``CurationSettings`` has one field per pipeline setting). The schema depends only on the
  class and the omitted (nested-resource) fields and Dagster never mutates it, so it is computed
  once per class, for this package's classes only.
- :func:`known_partitions`: during a run Dagster asks the instance whether each of the run's
  dynamic partition keys exists many times (partition ranges, per-asset metadata, input subsets),
  one storage query each. The CLI registered the keys itself just before its runs, so, while
  they execute, the instance answers from that set; other keys and partition sets still go to
  the instance's storage (a key that was never added is still refused).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import dagster as dg

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


@contextlib.contextmanager
def known_partitions(instance: dg.DagsterInstance, partitions_def_name: str, keys: set[str]) -> Iterator[None]:
    """Answer ``instance.has_dynamic_partition`` for ``partitions_def_name`` from ``keys`` while
    the caller's own runs execute in this process (``execute_in_process``); every other question
    goes to the instance. The instance answers as before afterwards (its class's method, or
    what was patched onto it before)."""
    real = instance.has_dynamic_partition
    name = partitions_def_name
    patched_before = vars(instance).get("has_dynamic_partition")  # someone else's patch, kept

    def has_dynamic_partition(partitions_def_name: str, partition_key: str) -> bool:
        if partitions_def_name == name and partition_key in keys:
            return True
        return real(partitions_def_name=partitions_def_name, partition_key=partition_key)

    instance.has_dynamic_partition = has_dynamic_partition  # type: ignore[method-assign]
    try:
        yield
    finally:
        if patched_before is None:
            del instance.has_dynamic_partition  # back to the class's method
        else:
            instance.has_dynamic_partition = patched_before  # type: ignore[method-assign]
