"""CPU cost of the transcode step per encoder setting: what sizes the CPU workers (docs/deployment.md).

Prints figures; not a test. Each encoder setting (``libx264``, the default; ``libvpx-vp9``;
``copy``) runs the product's CPU path (``core.pipeline.process_video`` plus the layout writing,
as ``pipeline_throughput.py`` runs it: fixed stride 10 s, previews, motion scores) over the same
720p footage from ``benchmarks/footage.py``, one after the other in this process. CPU seconds are
the figure that carries to other machines (wall time swings with other processes' load): seconds of
video per CPU second is the rate of one core kept busy, and a worker of N cores kept busy with
N encoder threads runs about N times that. Ratios are against libx264 measured in the same run.

    python benchmarks/worker_rates.py                    # one 60 s video per setting
    python benchmarks/worker_rates.py --seconds 20 --encoders libx264 copy
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import footage  # noqa: E402
import pipeline_throughput  # noqa: E402
from measure import DEFAULT_RESULTS, append_record, git_commit, peak_rss_mb  # noqa: E402

ENCODERS = ("libx264", "libvpx-vp9", "copy")
BASELINE = "libx264"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the footage video")
    ap.add_argument("--encoders", nargs="+", default=list(ENCODERS), choices=ENCODERS)
    ap.add_argument("--cache", default=str(footage.DEFAULT_CACHE))
    ap.add_argument("--results", default=str(DEFAULT_RESULTS))
    args = ap.parse_args(argv)
    encoders = [BASELINE] + [e for e in args.encoders if e != BASELINE]
    (video,) = footage.build_720p(1, args.seconds, Path(args.cache))
    load = pipeline_throughput.load()
    print(f"{video.name}: {args.seconds:.0f} s of 1280x720 footage; {os.cpu_count()} CPUs, load {load:.1f}")
    rows: dict[str, dict] = {}
    work = Path(tempfile.mkdtemp(prefix="worker_rates_"))
    try:
        for encoder in encoders:
            out = work / encoder
            options = pipeline_throughput.core_options(video.parent, out, encoder=encoder)
            started = time.perf_counter()
            row = pipeline_throughput.run_core_video(video, options, out)
            row["elapsed_s"] = time.perf_counter() - started
            row["video_s_per_cpu_s"] = row["seconds"] / row["cpu_s"]
            rows[encoder] = row
            print(f"  {encoder:11s} {row['clips']:3d} clips  {row['cpu_s']:7.1f} CPU s  {row['wall_s']:6.1f} s wall  "
                  f"{row['video_s_per_cpu_s']:6.3f} s of video per CPU second  "
                  f"(x{row['video_s_per_cpu_s'] / rows[BASELINE]['video_s_per_cpu_s']:.1f} of {BASELINE})",
                  flush=True)
            shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("  per core kept busy, 1-minute 720p videos per hour: "
          + ", ".join(f"{e} {3600 * r['video_s_per_cpu_s'] / 60:.0f}" for e, r in rows.items()))
    append_record(args.results, {
        "benchmark": "worker_rates", "commit": git_commit(), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus": os.cpu_count(), "load": load, "footage_seconds": args.seconds, "peak_rss_mb": peak_rss_mb(),
        "rows": {e: {k: r[k] for k in ("seconds", "clips", "cpu_s", "wall_s", "video_s_per_cpu_s")} for e, r in rows.items()},
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
