"""IO managers that handle a *range* of `videos` partitions per run.

Dagster's stock ``UPathIOManager`` refuses more than one partition per output. Ours take and
return ``{partition_key: value}`` for every key a run covers:

- ``WorkIOManager`` keeps the intermediate steps' values, one JSON document per (step, video) in
  the work area (``core.work``), on storage every worker reaches.
- ``ClipLayoutIOManager`` reads the clip-writer layout back for downstream assets: per video
  partition, that video's documents and file URLs (``core.layout_read.VideoLayout``), found from
  its own documents without listing any directory. Writing is the ``clip_writer`` step's: it
  writes each video through ``core.writer`` and records a materialisation per written video, so
  one video's failure fails only its own partitions (Dagster materialises an output for every
  partition of a ranged run, dagster #17836, so the layout outputs are not returned as values).
"""

# No `from __future__ import annotations`: Dagster reads the ResourceDependency annotations below
# as types when the classes are created.
from typing import Any

import dagster as dg

from ...core import layout, storage, work
from ...core.layout_read import VideoLayout, read_video_layout
from ...core.model import ClipAnnotations, VideoResult
from ...core.options import STEPS, step_digest
from ...partitions import io_partition_keys, source_url_for_key
from ..shared.policies import retried
from ..shared.resources import CurationSettings

ASSET_DIRECTORIES = {asset.name: asset.directories for asset in layout.LAYOUT}  # h3 removes (use layout.LAYOUT)


def asset_name(asset_key: dg.AssetKey) -> str:
    return "/".join(asset_key.path)


def source_for_key(input_path: str, key: str) -> str:
    """The source URL of a key, or a stand-in naming the key when it is refused (its values are
    still stored, so the failure travels to the writer like any other)."""
    try:
        return source_url_for_key(input_path, key)
    except ValueError:
        return f"refused-key:{key}"


class WorkIOManager(dg.ConfigurableIOManager):
    """The intermediate values (``VideoResult`` / ``ClipAnnotations`` per video) in the work area."""

    # a dependency on the `settings` resource (bound by key in definitions.py), so a run's own
    # settings config reaches the IO manager, as it reaches the steps
    settings: dg.ResourceDependency[CurationSettings]

    @retried  # the work area unreachable: the step is retried, as its compute is (defs.shared.policies)
    def handle_output(self, context: dg.OutputContext, obj: dict[str, Any]) -> None:
        if obj is None:
            return
        options = self.settings.options()
        area, step = work.WorkArea.for_options(options), asset_name(context.asset_key)
        for key in io_partition_keys(context):
            if key in obj:
                save_value(area, source_for_key(options.input_path, key), step, step_digest(options, step), obj[key])

    @retried
    def load_input(self, context: dg.InputContext) -> dict[str, Any]:
        options = self.settings.options()
        area, step = work.WorkArea.for_options(options), asset_name(context.asset_key)
        out: dict[str, Any] = {}
        for key in io_partition_keys(context):
            source = source_for_key(options.input_path, key)
            value = load_value(area, source, step, step_digest(options, step))
            if value is None:
                missing = next((s for s in STEPS if area.load(source, s, step_digest(options, s)) is None), step)
                raise dg.Failure(
                    f"No stored value of {step} for video partition {key!r} with these settings: materialize "
                    f"{missing} for this video first (or the whole curate_videos job; steps in order: "
                    f"{', '.join(STEPS)})",
                    allow_retries=False,  # a retry finds no value either
                )
            out[key] = value
        return out


def save_value(area: work.WorkArea, source: str, step: str, digest: str, value: Any) -> None:
    if isinstance(value, VideoResult):
        area.save(source, step, digest, {"kind": "clips", "value": work.result_doc(value)})
    else:
        area.save(source, step, digest, {"kind": "annotations", "value": work.annotations_doc(value)})


def load_value(area: work.WorkArea, source: str, step: str, digest: str) -> VideoResult | ClipAnnotations | None:
    doc = area.load(source, step, digest)
    if doc is None:
        return None
    try:
        return work.result_value(doc["value"]) if doc.get("kind") == "clips" else work.annotations_value(doc["value"])
    except (KeyError, TypeError, ValueError):
        return None  # a document of another shape: as if missing


class ClipLayoutIOManager(dg.ConfigurableIOManager):
    """The clip-writer layout under ``settings.output_path``, read per video partition."""

    settings: dg.ResourceDependency[CurationSettings]

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is not None:  # the layout assets record their materialisations themselves (module docstring)
            raise dg.DagsterInvariantViolationError(
                f"{asset_name(context.asset_key)} is written by the clip_writer step, not returned as a value")

    def load_input(self, context: dg.InputContext) -> dict[str, VideoLayout]:
        """``{partition_key: VideoLayout}``: each video's documents and file URLs (no listing); a
        refused key gets a layout that does not exist, with the reason in its ``problems``."""
        options = self.settings.options()
        out: dict[str, VideoLayout] = {}
        for key in io_partition_keys(context):
            try:
                source = source_url_for_key(options.input_path, key)
            except ValueError as exc:  # that key's problem: the other videos of the run are still read
                out[key] = VideoLayout(options.output_path, "", exists=False, video_url="",
                                       problems=(f"partition key {key!r} refused: {exc}",))
                continue
            rel = storage.relative_to(options.input_path, source)
            out[key] = read_video_layout(options.output_path, rel, source)
        return out
