"""`curation-assets run`'s work: check the settings, register the videos as partitions of the
instance under ``DAGSTER_HOME``, materialise every asset in batched runs (partition ranges, paying
Dagster's per-run overhead once per batch) and print the summary."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from ..core import cancel, locks, sources, storage
from ..core.keys import key_from_rel_path
from ..core.options import VIDEOS_PER_RUN as VIDEOS_PER_RUN_DEFAULT
from ..core.options import PipelineOptions
from . import startup_gc
from .arguments import UsageError
from .display import ProgressPrinter, VideoRow, collect_rows, print_summary
from .stop import StopOnSignal

# How long a CLI waits for another one that is creating or setting up the same instance.
INSTANCE_LOCK_WAIT_S = 300.0

PROJECT_DAGSTER_YAML = Path(__file__).resolve().parents[2] / ".dagster_home" / "dagster.yaml"


def dagster_home(explicit: str | None, input_path: str) -> Path:
    """The instance folder for ``input_path``'s videos; created with the project's dagster.yaml.

    An instance holds one input folder's partitions (``partitions.bind_dataset``): when the
    default instance belongs to another folder, this folder gets its own under
    ``<home>/datasets/``; an explicit ``--dagster-home`` of another folder is refused."""
    from ..core.dataset import bound_dataset

    home = Path(explicit or os.environ.get("DAGSTER_HOME") or ".dagster_home").resolve()
    bound = bound_dataset(str(home))
    if bound is not None and bound != input_path:
        if explicit:
            raise UsageError(f"the Dagster instance {home} holds the videos of {storage.redact(bound)}, not of "
                             f"{storage.redact(input_path)}: give each input folder its own --dagster-home")
        from ..core.work import video_id

        home = home / "datasets" / f"{Path(input_path.rstrip('/')).name or 'videos'}-{video_id(input_path)[:8]}"
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists() and PROJECT_DAGSTER_YAML.exists():
        shutil.copyfile(PROJECT_DAGSTER_YAML, target)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def run_pipeline(options: PipelineOptions, *, video_limit: int | None = None, videos_per_run: int | None = None,
                 home: str | None = None, stream=None, caption_service=None, report: list | None = None) -> int:
    """Check the settings, register the videos as partitions, materialise every asset in batched
    runs, print a summary; 1 when a video failed. ``video_limit``: at most this many videos (None: all);
    ``report``: a list that gets the summary's rows."""
    # resolved at call time (not as a default argument) so redirected/captured stdout is honoured
    stream = stream if stream is not None else sys.stdout
    # one source, one identity: the input folder by its real path, before anything names a video
    options = options.replace(input_path=sources.canonical_input(options.input_path))
    from .. import preflight
    from ..core.caption_settings import CaptionSection, caption_env_values
    from ..models.owners import AestheticSection, CaptionServiceSection, EmbedderSection, caption_models

    _refuse(preflight.cli_problems(video_limit=video_limit, videos_per_run=videos_per_run))
    # Dagster-free up to the first video's head start: the checks build the model owners from the
    # sections the run's resources subclass, so the transcode begins before Dagster is imported
    caption: CaptionSection = caption_service or CaptionServiceSection(**caption_env_values())
    found = preflight.problems(options, embedder=EmbedderSection().embedder(options),
                               scorer=AestheticSection().scorer(options),
                               caption_client=caption_models(caption, options) if options.generate_captions else None)
    _refuse(found)
    scan = sources.scan_videos(options.input_path, options.video_extensions)
    rel_paths = scan.videos
    for rel, why in scan.skipped:
        stream.write(f"skipped {rel}: {why}\n")
    if not rel_paths:
        raise UsageError(f"no videos found under {options.input_path}")
    if video_limit is not None:
        rel_paths = rel_paths[:video_limit]
    keys = [key_from_rel_path(rel) for rel in rel_paths]
    home_dir = dagster_home(home, options.input_path)
    stream.write(f"{len(keys)} videos under {options.input_path} -> {options.output_path} "
                 f"(Dagster instance: {home_dir})\n")
    printer = ProgressPrinter(len(keys))
    stop = StopOnSignal()
    rows = {key: VideoRow(rel) for key, rel in zip(keys, rel_paths, strict=True)}
    level = "DEBUG" if options.verbose else "CRITICAL"  # the summary below reports failures
    run_config = {"loggers": {"console": {"config": {"log_level": level}}}}
    started = time.perf_counter()
    head = None
    notices: list[str] = []
    try:
        # a stop is honoured from here on: while the first video begins, Dagster is imported, the
        # definitions are built and this thread waits for another CLI's instance setup
        with stop, cancel.stop_check(lambda: stop.requested):
            head = _head_start(options, keys[0], printer, lambda: stop.requested)
            from ..definitions import CURATE_JOB_NAME, CaptionService, CurationSettings, batched, build_definitions
            from .control import CliRunControl  # imports the code location: only when a run is made

            # the steps report to this printer and ask this handler whether to stop (the run_control resource)
            control = CliRunControl.wired(printer, lambda: stop.requested)
            notices = control.notices
            service = caption if isinstance(caption, CaptionService) else CaptionService(**caption.model_dump())
            defs = build_definitions(CurationSettings.from_options(options), caption_service=service,
                                     run_control=control.as_resource())
            resolved_job = defs.resolve_job_def(CURATE_JOB_NAME)
            with _open_instance(options.input_path, keys) as instance:
                startup_gc.resume()  # start-up is over: the console script's paused collector runs again
                for batch in batched(keys, videos_per_run or VIDEOS_PER_RUN_DEFAULT):
                    if stop.requested:
                        break
                    for result in stop.run(functools.partial(_execute_range, resolved_job, instance, batch,
                                                             run_config)):
                        collect_rows(result, batch, rows)
                        if stop.requested and not result.success:
                            _record_stop(instance, result.dagster_run)
    except cancel.Interrupted:  # stopped while waiting for another CLI's instance setup: nothing ran
        pass
    finally:
        if head is not None:  # not claimed when the run stopped or failed before its first video
            head.discard()
        printer.close()
    for row in rows.values():
        v = printer.videos.get(row.video)
        row.wall_s = (v.finished - v.started) if v and v.finished else None
        row.clip_errors = v.clip_errors if v else {}
        if stop.requested and not row.written:
            row.errors = {"stopped": "not processed: the run was stopped (Ctrl-C or SIGTERM) before this video "
                                     "was written"}
    print_summary(list(rows.values()), time.perf_counter() - started, stream)
    if report is not None:  # the caller's copy of the table (pipeline.run's result)
        report.extend(rows.values())
    for message in notices:
        stream.write(f"note: {message}\n")
    if stop.requested:
        return 130
    return 1 if any(r.errors for r in rows.values()) else 0


def _head_start(options: PipelineOptions, key: str, printer: ProgressPrinter, stop) -> Any:
    """Begin the first video's transcode step now (``core.head_start``), for the run's
    ``video_clips`` step to take over: it would otherwise wait for the definitions, the instance and
    the run to be set up. None when the key names no video under ``input_path`` (the step reports it)."""
    from ..core import head_start
    from ..core.dataset import video_of_key
    from ..models.video import MODEL_PARTS

    video = video_of_key(options.input_path, key)
    if video is None:
        return None
    source, rel = video
    head = head_start.begin(source, rel, options, stop=stop, models=MODEL_PARTS)
    printer.begin(rel, head.started_at)
    return head


def _record_stop(instance: Any, run: Any) -> None:
    """A run the user stopped is canceled in the instance, not failed: the UI, run-status sensors and
    a retry of failed runs then see a stop for what it is (the step that was interrupted still shows
    where it stopped)."""
    instance.report_run_canceled(run, message="stopped from the CLI (Ctrl-C or SIGTERM); run it again "
                                              "to process the videos it did not write")


def _refuse(found: list[str]) -> None:
    """Settings that cannot work: one line each, nothing processed (the CLI exits with status 2)."""
    if len(found) == 1:
        raise UsageError(f"settings that cannot work (nothing was processed): {found[0]}")
    if found:
        raise UsageError("settings that cannot work (nothing was processed):\n" + "\n".join(f"  - {p}" for p in found))


def _execute_range(job, instance, batch: list[str], run_config: dict) -> list[Any]:
    """Execute the batch: one run over a partition range when the keys are contiguous in the
    instance's key order (they are when added together), else one run per key."""
    from ..definitions import RANGE_END_TAG, RANGE_START_TAG
    from ..partitions import VIDEOS_PARTITION_NAME

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


@contextlib.contextmanager
def _open_instance(input_path: str, keys: list[str]):
    """The instance under ``DAGSTER_HOME``, bound to ``input_path`` with ``keys`` added as
    partitions; closed when the caller is done.

    The setup runs one process at a time, under a lock file in ``DAGSTER_HOME``: a new SQLite
    instance creates its tables when first opened, so two CLIs started at once on a fresh instance
    would both create them and one would fail ("table runs already exists"); adding the same keys at
    once would race the same way. The runs themselves do not hold the lock."""
    import dagster as dg

    from ..partitions import VIDEOS_PARTITION_NAME, bind_dataset

    home = os.environ["DAGSTER_HOME"]
    # core.locks: a stop is honoured while waiting, and the lock file goes with its holder
    with locks.held(os.path.join(home, ".curation-instance.lock"), timeout_s=INSTANCE_LOCK_WAIT_S) as held:
        if not held:
            raise UsageError(f"another curation-assets process has held the instance at {home} for "
                             f"{INSTANCE_LOCK_WAIT_S:.0f} s; try again once it has started its runs")
        instance = dg.DagsterInstance.get()
        try:
            bind_dataset(instance, input_path)
            known = set(instance.get_dynamic_partitions(VIDEOS_PARTITION_NAME))
            new = [k for k in keys if k not in known]
            if new:
                instance.add_dynamic_partitions(VIDEOS_PARTITION_NAME, new)
        except BaseException:
            instance.dispose()
            raise
    with instance:
        yield instance
