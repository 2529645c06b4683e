"""A batch's per-video outcomes (``core.outcomes``) as Dagster sees them: events on the failed
videos' partitions, and one failure of the step naming them.

Every per-video step (the writer, ``clip_manifest``, the removal op) ends the same way: the
videos that went well are materialised or observed, and the step then fails once, listing each
failed video and why, with their partition keys in the ``failed_partitions`` metadata (what the
UI shows and the backfill schedule requests again). That failure carries ``allow_retries=False``
unless the step says otherwise: trying the whole batch again would not change a broken video.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import dagster as dg

from ...core.outcomes import VideoOutcome, failed_reasons


def observe_failure(context: dg.OpExecutionContext | dg.AssetExecutionContext, outcome: VideoOutcome,
                    asset_keys: Iterable[Sequence[str]], **metadata: Any) -> None:
    """An observation on each asset's partition of a failed video: the error, and ``metadata``."""
    for key in asset_keys:
        context.log_event(dg.AssetObservation(asset_key=list(key), partition=outcome.key, metadata={
            "failed": True, "error": f"{outcome.error}: {outcome.message}", **metadata}))


def batch_failure(outcomes: Iterable[VideoOutcome], what: str, *, also: Mapping[str, str] | None = None,
                  also_what: str = "", metadata: Mapping[str, Any] | None = None,
                  allow_retries: bool = False) -> dg.Failure | None:
    """The step's one failure when any video failed (``what``: what befell them, after
    ``"N video(s) "``), or ``None``. ``also``: videos that went through but fail another way (the
    writer's blocking layout checks), listed after them as ``"M video(s) <also_what>"``."""
    failed = failed_reasons(outcomes)
    also = dict(also or {})
    if not failed and not also:
        return None
    lines = [f"{len(failed)} video(s) {what}"] if failed else []
    if also:
        lines.append(f"{len(also)} video(s) {also_what}")
    listed = "\n".join(f"- {key}: {why}" for key, why in {**failed, **also}.items())
    return dg.Failure(description=";\n".join(lines) + ":\n" + listed,
                      metadata={"failed_partitions": dg.MetadataValue.json(failed), **(metadata or {})},
                      allow_retries=allow_retries)


def report_written(context: dg.AssetExecutionContext, asset: str, written: Mapping[str, Mapping[str, Any]],
                   failure: dg.Failure | None) -> None:
    """Each written video's metadata on its partition. When others failed (``failure``), each
    written video gets its own materialisation first and then the step fails naming the others:
    the written ones are not lost with the failed step."""
    if failure is not None:
        for key, md in written.items():
            context.log_event(dg.AssetMaterialization(asset_key=asset, partition=key, metadata=dict(md)))
        raise failure
    for key, md in written.items():
        context.add_asset_metadata(dict(md), partition_key=key)


def raise_for(failure: dg.Failure | None) -> None:
    if failure is not None:
        raise failure
