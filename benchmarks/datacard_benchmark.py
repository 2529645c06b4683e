"""The data card of a large dataset: time to build and write it, against the issue's target.

Prints figures; not a test. A synthetic output of ``--clips`` clips over ``--videos`` videos is
written first (not timed): each video's manifest fragment by the manifest's own writer
(``manifest.write_fragment``, rows in its ``SCHEMA``: scores with some nulls, passed and filtered
clips, windows captioned by two models and one enhancement model) and its ``processed_videos``
document with a real pipeline record. Then ``reports.datacard.write_datacard`` reads the manifest
and every video's document, draws the histograms and writes the card (timed, best of
``--repeat``).

    python benchmarks/datacard_benchmark.py [--clips 100000] [--videos 10000]

Target (issue 21): under 30 s for 100k clips on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import DEFAULT_RESULTS, append_record, cpu_self, git_commit, peak_rss_mb  # noqa: E402

TARGET_S = 30.0


def synthetic_output(out: Path, clips: int, videos: int, seed: int = 0) -> None:
    """Fragments and video documents of ``videos`` videos holding ``clips`` clips in all."""
    import numpy as np
    import pyarrow as pa

    from curation_assets.core import layout
    from curation_assets.core.layout_read import VideoLayout
    from curation_assets.core.options import PipelineOptions
    from curation_assets.packaging import manifest

    rng = np.random.default_rng(seed)
    record = PipelineOptions(input_path="/data/raw", output_path=str(out), generate_captions=True,
                             enhance_captions=True, caption_models=["qwen", "nemotron"],
                             enhanced_caption_models=["qwen_lm"], aesthetic_threshold=4.5).record()
    per_video = np.bincount(rng.integers(0, videos, clips), minlength=videos)
    video_of = np.repeat(np.arange(videos), per_video)
    rels = [f"cam{v % 7}/day{v % 31}/video_{v:06d}.mp4" for v in range(videos)]
    duration = rng.uniform(2.0, 10.0, clips)
    start = np.zeros(clips)
    passed = rng.random(clips) < 0.7
    reason = np.where(rng.random(clips) < 0.6, "motion", "aesthetic")
    res = rng.choice([(1920, 1080), (1280, 720), (3840, 2160), (640, 480)], clips)
    motion = np.where(rng.random(clips) < 0.03, np.nan, rng.gamma(2.0, 0.01, clips))
    aesthetic = np.where(rng.random(clips) < 0.05, np.nan, rng.normal(5.0, 0.8, clips))
    windows = [[{"start_frame": 0, "end_frame": 255,
                 "captions": ([{"model": "qwen", "text": f"clip {i} caption"}]
                              + ([{"model": "nemotron", "text": f"clip {i} other"}] if i % 3 else [])) if ok else [],
                 "enhanced_captions": [{"model": "qwen_lm", "text": f"clip {i} enhanced"}] if ok else [],
                 "preview_url": None}] for i, ok in enumerate(passed)]

    def nullable(a):
        return [None if np.isnan(x) else float(x) for x in a]

    source = [f"/data/raw/{rels[v]}" for v in video_of]
    columns = {
        "clip_uuid": [f"{i:08x}-0000-4000-8000-000000000000" for i in range(clips)],
        "source_video": source, "rel_path": [rels[v] for v in video_of], "chunk_index": [0] * clips,
        "span_start_s": start, "span_end_s": start + duration, "duration_s": duration, "snapped": [False] * clips,
        "source_width": res[:, 0], "source_height": res[:, 1], "source_framerate": [30.0] * clips,
        "width": res[:, 0], "height": res[:, 1], "framerate": rng.choice([24.0, 25.0, 29.97, 30.0], clips),
        "num_frames": (duration * 30).astype(int), "video_codec": ["h264"] * clips,
        "num_bytes": rng.integers(10**5, 10**7, clips), "motion_global_mean": nullable(motion),
        "motion_per_patch_min_256": nullable(motion / 2), "aesthetic_score": nullable(aesthetic),
        "valid": [True] * clips,
        "passed": passed, "filtered_by": [None if p else r for p, r in zip(passed, reason, strict=True)],
        "errors": [[] for _ in range(clips)], "windows": windows,
        "caption": [w[0]["captions"][0]["text"] if w[0]["captions"] else None for w in windows],
        "clip_url": [None] * clips, "meta_url": [None] * clips, "embedding_url": [None] * clips,
        "embedding": [None] * clips, "settings_hash": [record["settings_hash"]] * clips,
    }
    table = pa.Table.from_arrays([pa.array(columns[f.name], f.type) for f in manifest.SCHEMA], schema=manifest.SCHEMA)
    offsets = np.concatenate([[0], np.cumsum(per_video)])
    for v, rel in enumerate(rels):
        n = int(per_video[v])
        doc = {"video": f"/data/raw/{rel}", "height": 1080, "width": 1920, "framerate": 30.0, "num_frames": 9000,
               "duration": float(duration[offsets[v]:offsets[v + 1]].sum()) + 5.0, "video_codec": "h264",
               "pixel_format": "yuv420p", "audio_format": None, "num_total_clips": n,
               "num_clip_chunks": 1 if n else 0, "pipeline": record}
        path = out / layout.video_file(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc))
        if n:
            manifest.write_fragment(str(out), VideoLayout(str(out), rel, True, str(path)),
                                    table.slice(int(offsets[v]), n))


def parts(out: str) -> None:
    """Where the card's time goes: each part once, wall and CPU seconds."""
    from curation_assets.reports import datacard

    c0, t0 = cpu_self(), time.perf_counter()
    table = datacard.read_card_table(out)
    c1, t1 = cpu_self(), time.perf_counter()
    pairs = table.group_by(["rel_path", "source_video"]).aggregate([])
    datacard.read_video_docs(out, dict(zip(pairs.column("rel_path").to_pylist(),
                                           pairs.column("source_video").to_pylist(), strict=True)))
    c2, t2 = cpu_self(), time.perf_counter()
    datacard.write_datacard(out, table)
    c3, t3 = cpu_self(), time.perf_counter()
    print(f"parts (wall / CPU s): manifest scan {t1 - t0:.2f} / {c1 - c0:.2f}; video documents {t2 - t1:.2f} / "
          f"{c2 - c1:.2f}; card from the scanned rows (documents again, numbers, images, files) {t3 - t2:.2f} / "
          f"{c3 - c2:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=100_000)
    parser.add_argument("--videos", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--results", default=str(DEFAULT_RESULTS))
    parser.add_argument("--keep", metavar="DIR", help="write the synthetic output here and keep it; reused when "
                                                       "it is there (the setup takes minutes at 100k clips)")
    args = parser.parse_args()
    from curation_assets.reports import datacard

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="datacard-bench-"))
    try:
        out = root / "out"
        t0 = time.perf_counter()
        if not (out / "manifest").exists():
            synthetic_output(out, args.clips, args.videos)
        print(f"synthetic output: {args.clips} clips, {args.videos} videos in {time.perf_counter() - t0:.1f} s (setup)")
        parts(str(out))
        times, cpus = [], []
        for _ in range(args.repeat):
            c0, t0 = cpu_self(), time.perf_counter()
            card = datacard.write_datacard(str(out))
            times.append(time.perf_counter() - t0)
            cpus.append(cpu_self() - c0)
        best = min(times)
        n = card.numbers
        assert n["clips_in"] == args.clips and n["videos"] <= args.videos
        print(f"data card: {n['clips_in']} clips ({n['clips_passed']} passed), {n['videos']} videos, "
              f"{n['hours_in']:.1f} source hours")
        print(f"card time: best {best:.2f} s of {args.repeat} ({', '.join(f'{t:.2f}' for t in times)}), "
              f"CPU {min(cpus):.2f} s, peak RSS {peak_rss_mb():.0f} MB")
        print(f"target: < {TARGET_S:.0f} s -> {best / TARGET_S:.2f} of the target "
              f"({'met' if best < TARGET_S else 'MISSED'}); load {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        append_record(args.results, {"benchmark": "datacard", "commit": git_commit(), "clips": args.clips,
                                     "videos": args.videos, "seconds": best, "cpu_s": min(cpus),
                                     "peak_rss_mb": peak_rss_mb(), "target_s": TARGET_S})
        return 0 if best < TARGET_S else 1
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
