"""Asset checks of the layout, per video partition, evaluated right after each video is written.

The rules live in ``core.layout_checks`` (which file breaks which rule and why); here each rule
becomes a check of the asset that owns its directory (``metas_match_spec`` on ``metas/v0``,
``clip_files_decode`` on ``clips``, ...), partitioned by video.

Why the writer step evaluates them: the layout assets are recorded per video by the writer
itself and are never returned as step outputs (a ranged run would otherwise materialise every
partition, see ``io_managers``), so a separate check step would be skipped as having no inputs.
In a run over a range of videos Dagster 1.13 plans one check execution per partition of a
partitioned check; the writer emits each video's evaluations with that video's partition (an
``AssetCheckResult`` cannot name one), pointing at the materialisation it just recorded.

Blocking (``checks_block_downstream``, chosen when the definitions are built): a failing check
fails the writer step, so nothing downstream of the layout runs in that run, and declarative
automation that waits for blocking checks (``AutomationCondition.all_deps_blocking_checks_passed``)
holds back that video's downstream partitions. Off, a failing check is reported and nothing waits.
"""

from __future__ import annotations

import warnings
from typing import Any

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from ...core import layout_checks
from ...core.layout_checks import CheckOutcome
from ...partitions import videos_partitions

# How many failing files a check's metadata lists (the description names the first).
MAX_LISTED = 50


#: check name -> the key of the layout asset it is a check of (``core.layout_checks.CHECKS``).
CHECK_ASSETS: dict[str, dg.AssetKey] = {name: dg.AssetKey(asset.key) for name, asset in layout_checks.CHECKS.items()}


def layout_check_specs(blocking: bool) -> list[dg.AssetCheckSpec]:
    """One partitioned check per rule, on the asset owning its directory."""
    with warnings.catch_warnings():  # partitioned checks are a preview feature of Dagster 1.13
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return [dg.AssetCheckSpec(name, asset=asset, blocking=blocking, partitions_def=videos_partitions,
                                  description=layout_checks.DESCRIPTIONS[name])
                for name, asset in CHECK_ASSETS.items()]


def _target(instance: dg.DagsterInstance, asset: dg.AssetKey,
            key: str) -> AssetCheckEvaluationTargetMaterializationData | None:
    """The materialisation the check evaluated: the latest of ``asset`` for the video (just written)."""
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=asset, asset_partitions=[key]),
                                              limit=1).records
    if not records:
        return None
    record = records[0]
    return AssetCheckEvaluationTargetMaterializationData(run_id=record.event_log_entry.run_id,
                                                         storage_id=record.storage_id, timestamp=record.timestamp)


def _metadata(outcome: CheckOutcome) -> dict[str, Any]:
    md: dict[str, Any] = {"files_checked": outcome.checked, "num_failures": len(outcome.findings)}
    if outcome.findings:
        md["first_failure"] = str(outcome.findings[0])
        md["failures"] = _table(outcome.findings)
    if outcome.explained:
        md["explained_by_clip_errors"] = _table(outcome.explained)
    if outcome.note:
        md["note"] = outcome.note
    return md


def _table(findings: list[layout_checks.Finding]) -> dg.TableMetadataValue:
    rows = [dg.TableRecord({"file": f.file, "why": f.why}) for f in findings[:MAX_LISTED]]
    schema = dg.TableSchema(columns=[dg.TableColumn("file", "string"), dg.TableColumn("why", "string")])
    return dg.MetadataValue.table(records=rows, schema=schema)


def evaluations(instance: dg.DagsterInstance, key: str, outcomes: dict[str, CheckOutcome],
                blocking: bool) -> list[dg.AssetCheckEvaluation]:
    """One evaluation per check of video partition ``key``."""
    out = []
    for name, outcome in outcomes.items():
        asset = CHECK_ASSETS[name]
        out.append(dg.AssetCheckEvaluation(
            asset_key=asset, check_name=name, passed=outcome.passed, partition=key, blocking=blocking,
            severity=dg.AssetCheckSeverity.ERROR, description=outcome.summary(), metadata=_metadata(outcome),
            target_materialization_data=_target(instance, asset, key)))
    return out


def check_written_video(output_path: str, rel_path: str, source: str) -> dict[str, CheckOutcome]:
    """Every layout check of one written video; an error while checking fails each check with it
    (a check that cannot read the files has not passed), never the run."""
    try:
        return layout_checks.check_video(output_path, rel_path, source)
    except Exception as exc:  # noqa: BLE001 - this video's checks fail with the reason
        from ...core import layout, storage

        why = f"could not be checked: {type(exc).__name__}: {storage.redact(exc)}"
        outcomes = {name: CheckOutcome(name) for name in layout_checks.CHECKS}
        for outcome in outcomes.values():
            outcome.fail(layout.video_file(rel_path), why)
        return outcomes


__all__ = ["CHECK_ASSETS", "check_written_video", "evaluations", "layout_check_specs"]
