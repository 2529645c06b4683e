"""``manifest_snapshot``: each materialisation writes a snapshot of the clip manifest
(``reports.snapshot``) and records what changed since the previous one (``reports.diff``), so two
materialisations of one output can be compared in the UI and with ``curation-assets diff``.
Thin: the work is in ``reports/``."""


import shlex
from typing import Any

import dagster as dg

from ...core import storage
from ...reports import diff, diff_text, snapshot
from ..shared.resources import CurationSettings
from .assets import PACKAGING_GROUP

#: The markdown diff is cut here (Dagster keeps metadata in its event log).
DIFF_CHARS = 20_000


def _diff_command(old: str, new: str) -> str:
    return f"curation-assets diff {shlex.quote(old)} {shlex.quote(new)}"


def snapshot_assets() -> list[Any]:
    """The snapshot asset (unpartitioned, after every ``clip_manifest`` partition)."""

    @dg.asset(group_name=PACKAGING_GROUP, deps=["clip_manifest"], kinds={"parquet"})
    def manifest_snapshot(context: dg.AssetExecutionContext, settings: CurationSettings) -> dg.MaterializeResult:
        """A snapshot of the manifest under ``<output>/snapshots/``, with the diff against the
        previous snapshot (counts as numeric metadata, the text as markdown) and the command that
        compares any two."""
        output_path = settings.options().output_path
        earlier = snapshot.list_snapshots(output_path)
        try:
            current = snapshot.snapshot_of(output_path)
        except snapshot.NoManifestError as exc:
            raise dg.Failure(str(exc)) from None
        url = snapshot.write_snapshot(output_path, current)
        passed = current.table.column("passed").to_pylist()
        md: dict[str, Any] = {
            "snapshot": dg.MetadataValue.path(url),
            "num_videos": len(set(current.table.column("rel_path").to_pylist())),
            "num_clips": current.table.num_rows,
            "num_passed": sum(1 for p in passed if p),
            "num_settings_records": len(current.settings),
        }
        previous = next((u for u in reversed(earlier) if u != url), None)
        if previous is None:
            md["note"] = "the first snapshot of this output: nothing to compare with yet"
            md["diff_command"] = dg.MetadataValue.text(_diff_command("<old snapshot or output>", url))
        else:
            try:
                result = diff.diff_snapshots(snapshot.read_snapshot(previous), current)
            except (ValueError, storage.StorageError) as exc:  # a damaged earlier snapshot: say so, keep this one
                context.log.warning(f"{previous}: not compared ({exc})")
                md["note"] = f"the previous snapshot could not be read: {storage.redact(exc)}"
            else:
                md.update(result.summary())
                md["identical"] = result.identical
                md["settings_changed"] = dg.MetadataValue.json(sorted(result.settings))
                text = diff_text.render(result)
                # an indented code block: no fence a file name could close
                md["diff"] = dg.MetadataValue.md("\n".join(f"    {line}" for line in text[:DIFF_CHARS].splitlines()))
            md["previous_snapshot"] = dg.MetadataValue.path(previous)
            md["diff_command"] = dg.MetadataValue.text(_diff_command(previous, url))
        for problem in current.problems:
            context.log.warning(problem)
        context.log.info(f"snapshot written: {url}")
        return dg.MaterializeResult(metadata=md)

    return [manifest_snapshot]


__all__ = ["snapshot_assets"]
