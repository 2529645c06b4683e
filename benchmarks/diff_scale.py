"""The run diff at scale: a snapshot of a manifest of ``--clips`` clips, and the diff of two.

Prints figures; not a test (the issue sets no target for the diff; docs/diff.md records them).
Two manifests are written as ``clip_manifest`` writes them (one Parquet fragment per video, the
manifest's schema) with one ``processed_videos`` document per side carrying the settings record:
the second side has 1% of the videos re-split (other spans, hence other ids) and the aesthetic
score of 1% of the clips changed. Measured: the live snapshot (manifest scan + settings record),
writing and reading the snapshot file, the diff of the two, its text and JSON, peak RSS.

    python benchmarks/diff_scale.py [--clips 100000] [--clips-per-video 10]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import DEFAULT_RESULTS, append_record, cpu_self, git_commit, peak_rss_mb  # noqa: E402


def write_side(out: Path, videos: int, per_video: int, stride: float, resplit_every: int, rescore_every: int) -> None:
    """A manifest of ``videos`` x ``per_video`` clips and one video document with its settings."""
    import pyarrow as pa

    from curation_assets.core import layout
    from curation_assets.core.options import PipelineOptions
    from curation_assets.packaging import manifest

    options = PipelineOptions(input_path=str(out.parent / "in"), output_path=str(out),
                              fixed_stride_split_duration=stride)
    record = options.record()
    first = "v000000.mp4"
    doc = {"video": str(out.parent / "in" / first), "num_clip_chunks": 0, "num_total_clips": 0, "pipeline": record}
    (out / layout.video_file(first)).parent.mkdir(parents=True, exist_ok=True)
    (out / layout.video_file(first)).write_text(json.dumps(doc))
    folder = out / manifest.MANIFEST_DIR
    folder.mkdir(parents=True)
    clip = 0
    for v in range(videos):
        rel = f"v{v:06d}.mp4"
        span = stride * (1.5 if v % resplit_every == resplit_every - 1 else 1.0)
        rows = []
        for k in range(per_video):
            start, end = k * span, (k + 1) * span
            clip += 1
            rows.append({
                "clip_uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{rel}_{start}_{end}")), "rel_path": rel,
                "source_video": rel, "span_start_s": start, "span_end_s": end, "duration_s": span,
                "width": 256, "height": 256, "passed": k % 7 != 0, "filtered_by": None if k % 7 else "motion",
                "motion_global_mean": 0.001 * (k + 1), "motion_per_patch_min_256": 0.0001 * (k + 1),
                "aesthetic_score": 4.0 + (0.5 if clip % rescore_every == 0 else 0.0) + k / 100,
                "windows": [{"start_frame": 0, "end_frame": 10, "captions": [{"model": "qwen", "text": "a clip"}],
                             "enhanced_captions": [], "preview_url": None}],
                "settings_hash": record["settings_hash"], "valid": True,
            })
        table = pa.Table.from_pylist(rows, schema=manifest.SCHEMA)
        import pyarrow.parquet as pq

        pq.write_table(table, folder / f"{manifest.fragment_name(rel)}.parquet", compression="zstd")


def timed(label: str, fn, results: dict):
    t0, c0 = time.perf_counter(), cpu_self()
    value = fn()
    results[label] = {"wall_s": round(time.perf_counter() - t0, 3), "cpu_s": round(cpu_self() - c0, 3)}
    print(f"{label:<28} {results[label]['wall_s']:8.3f} s wall {results[label]['cpu_s']:8.3f} s CPU")
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=100_000)
    parser.add_argument("--clips-per-video", type=int, default=10)
    parser.add_argument("--results", default=str(DEFAULT_RESULTS))
    args = parser.parse_args()
    from curation_assets.reports import diff, diff_text, snapshot

    videos = max(1, args.clips // args.clips_per_video)
    with tempfile.TemporaryDirectory(prefix="diff-scale-") as tmp:
        root = Path(tmp)
        results: dict = {}
        t0 = time.perf_counter()
        write_side(root / "old", videos, args.clips_per_video, 2.0, resplit_every=10**9, rescore_every=10**9)
        write_side(root / "new", videos, args.clips_per_video, 2.0, resplit_every=100, rescore_every=100)
        print(f"two manifests of {videos * args.clips_per_video} clips ({videos} videos) written in "
              f"{time.perf_counter() - t0:.1f} s")
        old = timed("snapshot (live manifest)", lambda: snapshot.snapshot_of(str(root / "old")), results)
        url = timed("write snapshot", lambda: snapshot.write_snapshot(str(root / "old"), old), results)
        timed("read snapshot", lambda: snapshot.read_snapshot(url), results)
        new = snapshot.snapshot_of(str(root / "new"))
        d = timed("diff", lambda: diff.diff_snapshots(old, new), results)
        timed("text", lambda: diff_text.render(d), results)
        timed("json", lambda: json.dumps(d.to_json()), results)
        size = Path(url).stat().st_size
        summary = d.summary()
        print(f"snapshot file {size / 1e6:.2f} MB ({size / old.table.num_rows:.0f} B/clip); diff: {summary}")
        print(f"peak RSS {peak_rss_mb():.0f} MB")
        append_record(args.results, {"benchmark": "diff_scale", "commit": git_commit(), "clips": old.table.num_rows,
                                     "videos": videos, "steps": results, "snapshot_bytes": size,
                                     "summary": summary, "peak_rss_mb": round(peak_rss_mb())})
    return 0


if __name__ == "__main__":
    sys.exit(main())
