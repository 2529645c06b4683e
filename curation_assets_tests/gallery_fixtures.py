"""Synthetic manifests for the gallery's paging test and its 100k-clip benchmark: rows made from
the manifest's own schema (``packaging.manifest.SCHEMA``) and written by its own writer
(``write_fragment``), with seeded scores, captions on some clips and filtered ones among them. No
clip files exist behind them (the cards show placeholders): what is measured is the gallery."""

from __future__ import annotations

import random
import uuid
from typing import Any

import pyarrow as pa

from curation_assets.core.layout_read import VideoLayout
from curation_assets.packaging import manifest


def synthetic_rows(rel: str, clips: int, rng: random.Random) -> list[dict[str, Any]]:
    rows = []
    for i in range(clips):
        passed = rng.random() > 0.2
        thing, place = rng.choice(["dog", "cat", "car", "bike"]), rng.choice(["park", "street"])
        caption = f"clip {i} of {rel}: a {thing} in the {place}"
        row = {name: None for name in manifest.SCHEMA.names}
        row.update(clip_uuid=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{rel}#{i}")), source_video=f"/data/raw/{rel}",
                   rel_path=rel, chunk_index=0, span_start_s=2.0 * i, span_end_s=2.0 * i + rng.uniform(1, 2),
                   snapped=False, source_width=1280, source_height=720, source_framerate=30.0, width=1280, height=720,
                   framerate=30.0, num_frames=60, video_codec="h264", num_bytes=100_000,
                   motion_global_mean=rng.uniform(0, 10), motion_per_patch_min_256=rng.uniform(0, 1),
                   aesthetic_score=rng.uniform(3, 7), valid=True, passed=passed,
                   filtered_by=None if passed else rng.choice(["motion", "aesthetic"]), errors=[],
                   windows=[{"start_frame": 0, "end_frame": 59, "captions": [{"model": "qwen", "text": caption}]
                             if passed else [], "enhanced_captions": [], "preview_url": None}],
                   caption=caption if passed else None, clip_url=f"/data/out/clips/{i}.mp4",
                   meta_url=f"/data/out/metas/v0/{i}.json", settings_hash="synthetic")
        row["duration_s"] = row["span_end_s"] - row["span_start_s"]
        rows.append(row)
    return rows


def write_synthetic_video(output_path: str, rel: str, clips: int, seed: int = 0) -> str | None:
    """One video's fragment, through the manifest's writer; returns its URL."""
    table = pa.Table.from_pylist(synthetic_rows(rel, clips, random.Random(f"{seed}:{rel}")), schema=manifest.SCHEMA)
    video = VideoLayout(output_path=output_path, rel_path=rel, exists=True, video_url="")
    return manifest.write_fragment(output_path, video, table)


def synthetic_rel(i: int) -> str:
    return f"synthetic/video_{i:05d}.mp4"
