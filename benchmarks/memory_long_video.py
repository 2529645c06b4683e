"""Peak memory (RSS) of the pipeline on a long low-resolution video against a short one.

It must not grow with the video's length: clips are encoded one span at a time, and each clip's
bytes are spilled to a file as soon as it is finished instead of being held until the video is
done (see ``core/pipeline.py``). This script makes the videos (ffmpeg's ``testsrc2`` with a sine
tone, about 100x real time; PyAV when the CLI is missing), then measures, each in a fresh child
process:

- ``core``: ``core.pipeline.process_video`` alone (probe, split, transcode, previews, motion);
- ``dagster``: ``cli.run_pipeline`` on a folder holding only that video (every asset, written
  to a temporary output; embeddings off: no weights needed).

The peak is ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` read in the child at the end, next to
the RSS after the imports (the baseline). It prints a table and the long/short ratio per mode,
and appends one JSON line to ``--results`` (default ``benchmarks/results.jsonl``).

    python benchmarks/memory_long_video.py                       # 10 and 40 minutes, 256x256
    python benchmarks/memory_long_video.py --minutes 2 8 --size 320x180 --modes core
    python benchmarks/memory_long_video.py --minutes 1 4 --size 1280x720 --modes core --tap   # with the model frame tap

256x256 is the smallest size with motion scores (a side under 256 px gets a motion error
instead, which would leave the motion stage out of the measurement).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from measure import DEFAULT_RESULTS, append_record, git_commit, peak_rss_mb  # noqa: E402


class RssTrace:
    """Current RSS sampled every 0.25 s on a thread, so a peak that grows with the video's length
    (a leak) can be told from one reached early and only touched again (encoder overlap)."""

    def __init__(self) -> None:
        import threading

        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._page_mb = os.sysconf("SC_PAGE_SIZE") / 2**20

    def _run(self) -> None:
        t0 = time.perf_counter()
        while not self._stop.wait(0.25):
            with open("/proc/self/statm") as fh:
                self.samples.append((time.perf_counter() - t0, int(fh.read().split()[1]) * self._page_mb))

    def __enter__(self) -> "RssTrace":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def by_tenth(self) -> list[float]:
        """The highest RSS (MB) in each tenth of the run."""
        if not self.samples:
            return []
        end = self.samples[-1][0] or 1.0
        tenths = [0.0] * 10
        for t, mb in self.samples:
            i = min(9, int(10 * t / end))
            tenths[i] = max(tenths[i], mb)
        return [round(x, 1) for x in tenths]


def make_long_video(path: Path, seconds: float, width: int, height: int, fps: int) -> Path:
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".writing.mp4")
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg:
        subprocess.run([ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}",
                        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(seconds),
                        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", str(2 * fps),
                        "-c:a", "aac", "-b:a", "32k", "-shortest", str(tmp)], check=True)
    else:
        sys.path.insert(0, str(HERE.parent))
        from curation_assets_tests.video_factory import make_video

        make_video(tmp, seconds=seconds, fps=fps, width=width, height=height, audio=True,
                   options={"preset": "ultrafast", "g": str(2 * fps)})
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------------------------
# children


def child_core(video: str, stride: float, tap: bool = False) -> dict:
    from curation_assets.core import storage, work
    from curation_assets.core.options import PipelineOptions
    from curation_assets.models.video import process_video
    import curation_assets.core.motion, curation_assets.core.previews, curation_assets.core.transcode  # noqa: E401,F401

    baseline = peak_rss_mb()
    started = time.perf_counter()
    models = dict(generate_embeddings="on", aesthetic_threshold=0.0, generate_captions=True) if tap else {}
    # BENCH_DECODE_POSITIONS=1: one decode position (the default, 0, takes two on two or more cores)
    options = PipelineOptions(fixed_stride_split_duration=stride, generate_previews=True, motion_filter="score-only",
                              transcode_decode_positions=int(os.environ.get("BENCH_DECODE_POSITIONS", "0")), **models)
    with tempfile.TemporaryDirectory(prefix="memory_bench_spill_") as spill, RssTrace() as trace:
        # the spill the video_clips asset passes; --no-spill measures bytes held in memory
        target = work.VideoSpill(work.WorkArea(spill, os.path.join(spill, "out")), video, os.path.join(spill, "out"))
        result = process_video(video, Path(video).name, lambda: storage.open_input(video), options,
                               spill=None if os.environ.get("BENCH_NO_SPILL") else target)
    wall = time.perf_counter() - started
    held = sum(len(c.encoded) for c in result.clips if isinstance(c.encoded, (bytes, bytearray)))
    return {"baseline_mb": round(baseline, 1), "peak_rss_mb": round(peak_rss_mb(), 1), "wall_s": round(wall, 1),
            "clips": len(result.clips), "clips_with_bytes": sum(1 for c in result.clips if c.encoded),
            "clip_bytes_in_memory_mb": round(held / 2**20, 1), "rss_by_tenth_mb": trace.by_tenth(),
            "clips_with_model_frames": sum(1 for c in result.clips if c.model_frames),
            "errors": dict(result.errors), "clip_errors": sorted({k for c in result.clips for k in c.errors})}


def child_dagster(video: str, stride: float) -> dict:
    import io

    from curation_assets.cli import run_pipeline
    from curation_assets.core.options import PipelineOptions
    import curation_assets.definitions  # noqa: F401 - the imports belong to the baseline

    baseline = peak_rss_mb()
    with tempfile.TemporaryDirectory(prefix="memory_bench_") as tmp:
        tmp = Path(tmp)
        (tmp / "in").mkdir()
        os.symlink(video, tmp / "in" / Path(video).name)
        options = PipelineOptions(input_path=str(tmp / "in"), output_path=str(tmp / "out"),
                                  fixed_stride_split_duration=stride, generate_previews=True,
                                  generate_embeddings="off")
        started = time.perf_counter()
        report = io.StringIO()
        with RssTrace() as trace:
            rc = run_pipeline(options, home=str(tmp / "home"), stream=report)
        wall = time.perf_counter() - started
        clips = sum(1 for _ in (tmp / "out" / "clips").iterdir()) if (tmp / "out" / "clips").exists() else 0
        out_mb = sum(p.stat().st_size for p in (tmp / "out").rglob("*") if p.is_file()) / 2**20
    return {"baseline_mb": round(baseline, 1), "peak_rss_mb": round(peak_rss_mb(), 1), "wall_s": round(wall, 1),
            "rc": rc, "clips": clips, "rss_by_tenth_mb": trace.by_tenth(), "output_mb": round(out_mb, 1), "report_tail": report.getvalue()[-300:] if rc else ""}


# ---------------------------------------------------------------------------------------------


def run_child(mode: str, video: Path, stride: float, tap: bool = False) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--stride", str(stride), str(video)]
    cmd += ["--tap"] if tap else []
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} on {video.name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, nargs="+", default=[10, 40])
    p.add_argument("--size", default="256x256", help="WIDTHxHEIGHT of the generated videos")
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--stride", type=float, default=10.0, help="fixed-stride clip length in seconds")
    p.add_argument("--modes", nargs="+", default=["core", "dagster"], choices=["core", "dagster"])
    p.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "curation_assets_long_videos"),
                   help="folder for the generated videos (kept between runs)")
    p.add_argument("--results", default=str(DEFAULT_RESULTS), help="JSON lines file the figures are appended to")
    p.add_argument("--tap", action="store_true", help="core mode with every model step on: the decode pass keeps "
                   "and spills their frames (model_frames=source)")
    p.add_argument("--child", choices=["core", "dagster"], help=argparse.SUPPRESS)
    p.add_argument("video", nargs="?", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child:
        out = child_core(args.video, args.stride, args.tap) if args.child == "core" else \
            child_dagster(args.video, args.stride)
        print(json.dumps(out))
        return 0

    width, height = (int(x) for x in args.size.lower().split("x"))
    rows = []
    for minutes in args.minutes:
        video = make_long_video(Path(args.cache) / f"long_{minutes:g}min_{width}x{height}_{args.fps}fps.mp4",
                                minutes * 60, width, height, args.fps)
        for mode in args.modes:
            row = {"minutes": minutes, "mode": mode, "video_mb": round(video.stat().st_size / 2**20, 1),
                   **run_child(mode, video, args.stride, args.tap and mode == "core")}
            rows.append(row)
            print(f"{minutes:6g} min  {mode:8s} peak RSS {row['peak_rss_mb']:8.1f} MB  (after imports "
                  f"{row['baseline_mb']:.1f} MB)  {row['clips']:4d} clips  {row['wall_s']:7.1f} s\n"
                  f"        highest RSS per tenth of the run (MB): {row.get('rss_by_tenth_mb')}", flush=True)
    ratios = {}
    short, long_ = min(args.minutes), max(args.minutes)
    for mode in args.modes:
        a = next(r for r in rows if r["mode"] == mode and r["minutes"] == short)
        b = next(r for r in rows if r["mode"] == mode and r["minutes"] == long_)
        ratios[mode] = {
            "peak_ratio": round(b["peak_rss_mb"] / a["peak_rss_mb"], 3),
            "above_baseline_ratio": round((b["peak_rss_mb"] - b["baseline_mb"]) /
                                          max(1e-6, a["peak_rss_mb"] - a["baseline_mb"]), 3),
        }
        print(f"{mode}: peak RSS {long_:g} min / {short:g} min = {ratios[mode]['peak_ratio']:.3f} "
              f"(above the import baseline: {ratios[mode]['above_baseline_ratio']:.3f})")
    record = {
        "benchmark": "memory_long_video", "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(), "cpus": os.cpu_count(), "size": f"{width}x{height}", "fps": args.fps,
        "stride_s": args.stride, "tap": args.tap, "rows": rows, "ratios": ratios,
    }
    append_record(args.results, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
