"""The place where this project leans on Dagster's internals, for speed only.

Dagster 1.13.27 has no public way to hand ``execute_in_process`` the partition keys a caller
already knows. The workaround is confined to this module, changes what is computed never what a
run does, and falls back to Dagster's own behaviour when its internals move.
``test_dagster_workarounds.py`` checks the Dagster behaviour it relies on, and that it still has
its effect, so a Dagster upgrade that changes either shows up as a failing test rather than as a
silent slowdown. (The settings resources' config schemas are no longer memoised by patching
Dagster: ``benchmarks/resource_copy.py`` measures what their copies cost without it.)

- :func:`known_partitions`: during a run Dagster asks the instance whether each of the run's
  dynamic partition keys exists many times (partition ranges, per-asset metadata, input subsets),
  one storage query each. The CLI registered the keys itself just before its runs, so, while
  they execute, the instance answers from that set; other keys and partition sets still go to
  the instance's storage (a key that was never added is still refused).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import dagster as dg


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
