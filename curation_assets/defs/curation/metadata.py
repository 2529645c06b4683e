"""What a person reads on a video's partition pages: each layout asset's metadata (files and
bytes written, where, counts), and on ``clips`` a table of its clips.

Dagster renders a ``MetadataValue.table`` inline on the asset's partition view (a markdown value
only as a link), so each video's ``clips`` materialisation carries one row per clip: its id, span,
motion and aesthetic scores, whether it passed or which filter removed it, its errors and the
start of its first caption.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import dagster as dg

from ...core import layout, storage, writer
from ...core.model import Clip, VideoResult

# A preview shown inline on the previews partition when smaller than this (bytes).
MAX_INLINE_PREVIEW = 400_000
# Rows per table: enough for a two-hour video in 10 s clips; longer videos say how many are shown.
MAX_CLIP_ROWS = 1000
CAPTION_EXCERPT_CHARS = 80

CLIP_TABLE_SCHEMA = dg.TableSchema(columns=[
    dg.TableColumn("clip", "string", description="clip uuid (the file names in clips/, metas/v0/, ...)"),
    dg.TableColumn("start_s", "float"),
    dg.TableColumn("end_s", "float"),
    dg.TableColumn("status", "string", description="passed, or filtered and by which filter"),
    dg.TableColumn("motion", "float", description="motion_score.global_mean (empty: not scored)"),
    dg.TableColumn("aesthetic", "float", description="aesthetic_score (empty: not scored)"),
    dg.TableColumn("errors", "string", description="the clip's error keys"),
    dg.TableColumn("caption", "string", description="the first window's caption, shortened"),
])


def _caption(clip: Clip, models: Sequence[str]) -> str:
    for window in clip.windows:
        for model in models:
            text = window.captions.get(model)
            if text:
                text = " ".join(text.split())
                return text if len(text) <= CAPTION_EXCERPT_CHARS else text[: CAPTION_EXCERPT_CHARS - 1] + "…"
    return ""


def clip_row(clip: Clip, caption_models: Sequence[str]) -> dict[str, str | float | None]:
    return {
        "clip": str(clip.uuid),
        "start_s": round(clip.span.start_s, 3),
        "end_s": round(clip.span.end_s, 3),
        "status": "passed" if clip.passed else f"filtered: {clip.filtered_by}",
        "motion": round(clip.motion.global_mean, 6) if clip.motion is not None else None,
        "aesthetic": round(clip.aesthetic_score, 4) if clip.aesthetic_score is not None else None,
        "errors": ", ".join(clip.errors),
        "caption": _caption(clip, caption_models),
    }


def clip_table(result: VideoResult, caption_models: Sequence[str]) -> dict[str, dg.MetadataValue]:
    """``clip_table`` (and ``clip_table_note`` when the video has more clips than shown)."""
    rows = [dg.TableRecord(clip_row(c, caption_models)) for c in result.clips[:MAX_CLIP_ROWS]]
    md: dict[str, dg.MetadataValue] = {"clip_table": dg.MetadataValue.table(records=rows, schema=CLIP_TABLE_SCHEMA)}
    if len(result.clips) > MAX_CLIP_ROWS:
        md["clip_table_note"] = dg.MetadataValue.text(f"the first {MAX_CLIP_ROWS} of {len(result.clips)} clips")
    return md


__all__ = ["CLIP_TABLE_SCHEMA", "MAX_CLIP_ROWS", "clip_row", "clip_table"]


def layout_metadata(asset: layout.LayoutAsset, result: VideoResult, report: writer.WriteReport, output_path: str,
                    embeddings_note: str | None, captions: Sequence[str] = ()) -> dict[str, Any]:
    """The metadata of one layout asset's materialisation for one written video."""
    directories = asset.directories
    md: dict[str, Any] = {
        "files_written": sum(report.files.get(d, 0) for d in directories),
        "bytes_written": sum(report.bytes.get(d, 0) for d in directories),
        "stale_files_removed": sum(report.removed.get(d, 0) for d in directories),
        "location": dg.MetadataValue.path(storage.join(output_path, directories[0])),
    }
    if layout.CLIPS in directories:
        md.update({k: v for k, v in writer.clip_stats(result).items() if k != "num_clips_with_webp"})
        md["num_clips_filtered"] = sum(1 for c in result.clips if not c.passed)
        md.update(clip_table(result, captions))
        md["filtered_location"] = dg.MetadataValue.path(storage.join(output_path, layout.FILTERED_CLIPS))
    elif layout.PREVIEWS in directories:
        md["num_previews"] = md["files_written"]
        first = next((w.preview for c in result.clips if c.passed for w in c.windows if w.preview), None)
        if first is not None and len(first) < MAX_INLINE_PREVIEW:
            data = first.read() if hasattr(first, "read") else first
            md["preview"] = dg.MetadataValue.md(f"![preview](data:image/webp;base64,{base64.b64encode(data).decode()})")
    elif layout.CE1_EMBD in directories or layout.CE1_EMBD_PARQUET in directories:
        md["num_clips_with_embeddings"] = sum(1 for c in result.clips if c.passed and c.embedding is not None)
        if not md["num_clips_with_embeddings"]:
            md["note"] = embeddings_note or "no embeddings were computed for this video"
    elif layout.METAS in directories:
        md["num_metas"] = md["files_written"]
        md["num_clips_with_errors"] = sum(1 for c in result.clips if c.errors)
    elif layout.PROCESSED_VIDEOS in directories:
        md["errors"] = dg.MetadataValue.json(result.errors)
        md["num_total_clips"] = len(result.clips)
        md["video_duration_s"] = round(result.metadata.duration or 0.0, 3) if result.metadata else 0.0
    if report.problems:
        md["problems"] = dg.MetadataValue.json(report.problems)
    return md
