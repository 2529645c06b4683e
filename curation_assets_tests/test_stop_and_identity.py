"""Issue 18: a stop is not a failure (never retried, honoured while waiting for a lock), one held
lock does not stop a batch, no lock file outlives its run, one source has one identity (a
symlinked spelling of input_path), and object-store keys are names taken exactly as listed."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import pytest

from curation_assets.cli import run_pipeline
from curation_assets.core import cancel, layout, locks, sources, storage, temp_files
from curation_assets.core.options import PipelineOptions
from curation_assets.core.upload_scan import scan_object_store
from curation_assets.core.work import WorkArea
from curation_assets.definitions import CURATE_JOB_NAME, build_definitions
from curation_assets.defs.shared.resources import CurationSettings
from curation_assets.defs.shared.run_control import RunControl
from curation_assets.partitions import VIDEOS_PARTITION_NAME

from .layout_checks import all_files, check_layout
from .test_hardening import _cli, _log, _wait_for_transcoding
from .video_factory import make_video


def _options(videos, out, **kw) -> PipelineOptions:
    base = dict(input_path=str(videos), output_path=str(out), fixed_stride_split_duration=1.0,
                fixed_stride_min_clip_length_s=0.5, generate_embeddings="off", generate_previews=False)
    return PipelineOptions(**{**base, **kw})


def _lock_files(out: Path) -> list[Path]:
    return sorted(p for p in (out / "_work").rglob("*") if p.name.endswith(".lock"))


# ---------------------------------------------------------------------------------------------
# the lock itself


def _count_under_lock(lock_url: str, counter: str, times: int) -> None:
    for _ in range(times):
        with locks.held(lock_url, timeout_s=60, poll_s=0.001) as held:
            assert held
            n = int(Path(counter).read_text())
            time.sleep(0.0005)  # a reader-writer race shows as a lost count
            Path(counter).write_text(str(n + 1))


def test_the_writer_lock_is_exclusive_across_processes_and_leaves_no_file(tmp_path):
    """Holders remove the lock file on release; a waiter that locked the removed file must not
    think it holds the lock (four processes, each counting 40 times under it)."""
    lock_url, counter = str(tmp_path / "v" / "writer.lock"), tmp_path / "count"
    counter.write_text("0")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_count_under_lock, args=(lock_url, str(counter), 40)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert counter.read_text() == "160"
    assert not Path(lock_url).exists()


def test_a_waiter_never_holds_a_lock_file_its_holder_removed(tmp_path, monkeypatch):
    """The race the removal opens, made to happen: the waiter opens the lock file, the holder
    then releases it (removing the file), and only then does the waiter lock what it opened. It
    must lock the file now at the path instead, or a third process would hold it too."""
    url = str(tmp_path / "writer.lock")
    entered, release = threading.Event(), threading.Event()

    def holder() -> None:
        with locks.held(url, timeout_s=5):
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=holder, daemon=True)
    thread.start()
    assert entered.wait(5)
    real_open, opened = os.open, []

    def open_then_let_the_holder_go(path, *args, **kwargs):
        fd = real_open(path, *args, **kwargs)
        if not opened:
            opened.append(path)
            release.set()
            thread.join(5)  # the file is gone and unlocked before this waiter's flock
            assert not os.path.exists(url)
        return fd

    monkeypatch.setattr(locks.os, "open", open_then_let_the_holder_go)
    with locks.held(url, timeout_s=5) as held:
        assert held and opened
        assert os.path.exists(url)  # what it holds is the file at the path ...
        assert not locks.is_free(url)  # ... so nobody else gets it
    assert not os.path.exists(url)


def test_a_stop_is_honoured_while_waiting_for_a_lock(tmp_path):
    lock_url = str(tmp_path / "writer.lock")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({lock_url!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "print('held', flush=True)\n"
        "time.sleep(120)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert locks.is_free(lock_url) is False
        stop = threading.Event()  # what the CLI's signal handler sets, asked through this thread's stop check
        timer = threading.Timer(0.5, stop.set)
        timer.start()
        started = time.monotonic()
        with pytest.raises(cancel.Interrupted, match="stopped on request"):
            with cancel.stop_check(stop.is_set), locks.held(lock_url, timeout_s=600):
                pass
        assert time.monotonic() - started < 2.0
    finally:
        holder.kill()
        holder.wait()
    with locks.held(lock_url, timeout_s=5) as held:  # the holder is gone: free at once
        assert held
    assert not os.path.exists(lock_url)


# ---------------------------------------------------------------------------------------------
# a stop through the Dagster layer


class _Stopped(RunControl):
    """A run_control resource whose stop was requested before the run started."""

    def stop_requested(self) -> bool:
        return True


def test_a_stop_is_not_retried(tmp_path):
    """A stop in a step is an interrupt: no STEP_UP_FOR_RETRY, the run ends at once (with
    Dagster's RetryPolicy it idled 5 + 10 + 20 s retrying the stop)."""
    videos, out = tmp_path / "in", tmp_path / "out"
    videos.mkdir()
    make_video(videos / "a.mp4", seconds=2, fps=10, width=64, height=64)
    defs = build_definitions(CurationSettings.from_options(_options(videos, out)), run_control=_Stopped())
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(VIDEOS_PARTITION_NAME, ["a.mp4"])
        started = time.monotonic()
        result = defs.resolve_job_def(CURATE_JOB_NAME).execute_in_process(
            instance=instance, partition_key="a.mp4", raise_on_error=False)
        events = [e.event_type_value for e in result.all_events]
        assert "STEP_UP_FOR_RETRY" not in events, events
        assert not result.success and time.monotonic() - started < 4.0
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        assert failure.step_key == "video_clips" and "Interrupted" in failure.step_failure_data.error.cls_name
    assert not (out / "processed_videos").exists()


def test_no_step_carries_a_retry_policy_that_would_retry_a_stop():
    """Dagster's RetryPolicy retries interrupts too (a UI *Terminate* of a daemon-launched run as
    much as the CLI's Ctrl-C): every step of every job requests its retries itself instead."""
    from curation_assets.core.options import PipelineOptions as Options
    from curation_assets.defs.shared import policies as retries

    defs = build_definitions(CurationSettings.from_options(Options(generate_embeddings="off")))
    for job in defs.resolve_all_job_defs():
        assert job.op_retry_policy is None, job.name
        for node in job.nodes:
            assert node.definition.retry_policy is None, (job.name, node.name)
            assert node.retry_policy is None, (job.name, node.name)  # one given where the op is used
    # what the steps raise instead, for an exception (a storage error) and for what is not retried
    request = retries.retry_for(OSError("bucket unreachable"), None)
    assert isinstance(request, dg.RetryRequested) and request.max_retries == 3 and request.seconds_to_wait == 5
    final = dg.Failure("broken video", allow_retries=False)
    assert retries.retry_for(final, None) is final


# ---------------------------------------------------------------------------------------------
# locks in whole runs


def test_a_finished_run_leaves_no_lock_file(tmp_path):
    """Nothing of the run's own stays under ``_work/``: no lock, no spilled bytes, no folder the
    moved clips and previews left empty; only the stored step values (one json per step)."""
    videos, out = tmp_path / "in", tmp_path / "out"
    videos.mkdir()
    for name in ("a.mp4", "b.mp4"):
        make_video(videos / name, seconds=2, fps=10, width=64, height=64)
    options = _options(videos, out, generate_previews=True)
    assert run_pipeline(options, home=str(tmp_path / "home"), stream=io.StringIO()) == 0
    check_layout(out, videos, ["a.mp4", "b.mp4"])
    assert any((out / "previews").rglob("*.webp"))  # previews were spilled, then moved out
    assert (out / "_work").is_dir() and _lock_files(out) == []
    left = [p.relative_to(out / "_work") for p in (out / "_work").rglob("*")]
    folders = [p for p in left if (out / "_work" / p).is_dir()]
    assert sorted(map(str, folders)) == ["videos"] + sorted(f"videos/{p.parts[1]}" for p in folders if len(p.parts) == 2)
    assert all(p.suffix == ".json" and len(p.parts) == 3 for p in left if p not in folders), left
    assert not (tmp_path / "home" / ".curation-instance.lock").exists()


def test_a_held_lock_on_one_video_does_not_stop_the_others(tmp_path):
    """Another process is writing v0: v1 and v2 are written meanwhile; v0 waits alone, after them,
    and is written once the lock is released."""
    videos, out = tmp_path / "in", tmp_path / "out"
    videos.mkdir()
    names = ["v0.mp4", "v1.mp4", "v2.mp4"]
    for name in names:
        make_video(videos / name, seconds=2, fps=10, width=64, height=64)
    lock_url = WorkArea(str(out / "_work"), str(out)).lock_url(str(videos / "v0.mp4"))
    seen: dict[str, bool] = {}

    def release_once_the_others_are_written(release: threading.Event) -> None:
        deadline = time.monotonic() + 120
        docs = [out / layout.video_file(n) for n in names[1:]]
        while time.monotonic() < deadline and not all(d.exists() for d in docs):
            time.sleep(0.05)
        seen["others_written_while_held"] = all(d.exists() for d in docs)
        seen["held_video_waited"] = not (out / layout.video_file("v0.mp4")).exists()
        release.set()

    release = threading.Event()
    with storage.lock(lock_url) as held:  # another process's write, as flock sees it (its own descriptor)
        assert held
        watcher = threading.Thread(target=release_once_the_others_are_written, args=(release,), daemon=True)
        watcher.start()
        box: dict[str, int] = {}
        runner = threading.Thread(target=lambda: box.setdefault("rc", run_pipeline(
            _options(videos, out), home=str(tmp_path / "home"), stream=io.StringIO())), daemon=True)
        runner.start()
        release.wait(180)
    runner.join(180)
    assert seen == {"others_written_while_held": True, "held_video_waited": True}
    assert box.get("rc") == 0
    check_layout(out, videos, names)
    assert _lock_files(out) == []


# ---------------------------------------------------------------------------------------------
# one source, one identity


def test_a_symlinked_spelling_of_the_input_is_the_same_dataset(tmp_path):
    videos, out, home = tmp_path / "in", tmp_path / "out", tmp_path / "home"
    videos.mkdir()
    make_video(videos / "a.mp4", seconds=3, fps=10, width=64, height=64)
    link = tmp_path / "inlink"
    link.symlink_to(videos, target_is_directory=True)
    assert sources.canonical_input(str(link)) == str(videos)
    assert run_pipeline(_options(videos, out), home=str(home), stream=io.StringIO()) == 0
    first = all_files(out)
    report = io.StringIO()
    assert run_pipeline(_options(link, out), home=str(home), stream=report) == 0
    assert all_files(out) == first, sorted(all_files(out) ^ first)  # one set of clips, not two
    assert len([f for f in first if f.startswith("clips/")]) == 3
    doc = json.loads((out / layout.video_file("a.mp4")).read_text())
    assert doc["video"] == str(videos / "a.mp4")
    assert f"under {videos} ->" in report.getvalue()
    assert not (home / "datasets").exists()  # the same instance: the same dataset

    # through the Dagster layer (a code location's CURATION_INPUT_PATH, the launchpad) the
    # symlinked spelling is refused, naming the real path
    defs = build_definitions(CurationSettings.from_options(_options(link, out)))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(VIDEOS_PARTITION_NAME, ["a.mp4"])
        result = defs.resolve_job_def(CURATE_JOB_NAME).execute_in_process(
            instance=instance, partition_key="a.mp4", raise_on_error=False)
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        assert "symbolic link" in failure.step_failure_data.error.message
        assert str(videos) in failure.step_failure_data.error.message
        assert "STEP_UP_FOR_RETRY" not in [e.event_type_value for e in result.all_events]
    assert all_files(out) == first


# ---------------------------------------------------------------------------------------------
# object-store keys are names


def test_object_keys_are_taken_as_listed_and_unusable_ones_skipped_with_a_reason(tmp_path, s3_server, s3_bucket):
    bucket = s3_bucket.removeprefix("s3://")
    video = make_video(tmp_path / "src.mp4", seconds=2, fps=10, width=64, height=64)
    client = s3_server.client()
    keys = ["in/a.mp4", "in/./b.mp4", "in//c.mp4", "in/../d.mp4", "in/sub/e.mp4"]
    for key in keys:
        client.put_object(Bucket=bucket, Key=key, Body=video.read_bytes())
    input_url = f"{s3_bucket}/in"

    scan = sources.scan_videos(input_url)
    assert scan.videos == ["a.mp4", "sub/e.mp4"]
    reasons = dict(scan.skipped)
    assert set(reasons) == {"./b.mp4", "/c.mp4", "../d.mp4"}
    assert "'..' segment" in reasons["../d.mp4"] and "'.' segment" in reasons["./b.mp4"]
    watched = scan_object_store(input_url, (".mp4",))  # the upload watcher's listing: the same rule
    assert sorted(watched.files) == ["a.mp4", "sub/e.mp4"] and dict(watched.skipped) == reasons

    out = tmp_path / "out"
    report = io.StringIO()
    assert run_pipeline(_options(input_url, out), home=str(tmp_path / "home"), stream=report) == 0, report.getvalue()
    text = report.getvalue()
    for rel in ("./b.mp4", "/c.mp4", "../d.mp4"):
        assert f"skipped {rel}: {reasons[rel]}" in text, text
    assert "no such video" not in text
    check_layout(out, None, ["a.mp4", "sub/e.mp4"], input_url=input_url)
    docs = sorted(p.relative_to(out / "processed_videos").as_posix() for p in (out / "processed_videos").rglob("*.json"))
    assert docs == ["a.mp4.json", "sub/e.mp4.json"]
    assert json.loads((out / layout.video_file("a.mp4")).read_text())["video"] == f"{input_url}/a.mp4"


# ---------------------------------------------------------------------------------------------
# SIGTERM on a real CLI process (slow)


def _run_events(home: Path) -> list[str]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return [r.dagster_event.event_type_value for run in instance.get_runs()
                for r in instance.all_logs(run.run_id) if r.dagster_event is not None]


def _sigterm(p, tmp_path: Path, name: str, *, once=None, within_s: float = 180.0) -> tuple[int, float, str]:
    """SIGTERM to the CLI's process group (once ``once()`` holds, and a second more to settle
    there): its exit code, the seconds it took to exit, and its log."""
    if once is not None:
        deadline = time.monotonic() + within_s
        while not once():
            assert time.monotonic() < deadline and p.poll() is None, _log(tmp_path, name)
            time.sleep(0.05)
        time.sleep(1.0)
    os.killpg(p.pid, signal.SIGTERM)
    started = time.monotonic()
    rc = p.wait(timeout=60)
    return rc, time.monotonic() - started, _log(tmp_path, name)


@pytest.mark.slow
def test_sigterm_mid_clip_exits_130_quickly_without_a_retry(tmp_path):
    videos, out, home = tmp_path / "in", tmp_path / "out", tmp_path / "home"
    videos.mkdir()
    for i in range(2):
        make_video(videos / f"v{i}.mp4", seconds=20, fps=25, width=640, height=360)
    p = _cli(tmp_path, videos, out, home, "term")
    _wait_for_transcoding(p, out, tmp_path, "term")
    rc, elapsed, text = _sigterm(p, tmp_path, "term")
    assert rc == 130 and elapsed < 15, (rc, elapsed, text)
    assert "stopping after the current clip" in text and text.count("not processed: the run was stopped") == 2, text
    events = _run_events(home)
    assert "STEP_UP_FOR_RETRY" not in events and "STEP_RESTARTED" not in events, events
    assert "STEP_FAILURE" in events
    # a stop is recorded as a canceled run in the instance, not a failed one
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert {run.status for run in instance.get_runs()} == {dg.DagsterRunStatus.CANCELED}
    assert not [f for f in all_files(out) if temp_files.is_temp_file_name(f)]
    assert not (out / "processed_videos").exists() and not (out / "clips").exists()  # whole videos only


@pytest.mark.slow
def test_sigterm_while_waiting_for_a_held_lock_exits_quickly(tmp_path):
    videos, out, home = tmp_path / "in", tmp_path / "out", tmp_path / "home"
    videos.mkdir()
    for i in range(2):
        make_video(videos / f"v{i}.mp4", seconds=2, fps=10, width=64, height=64)
    lock_url = WorkArea(str(out / "_work"), str(out)).lock_url(str(videos / "v0.mp4"))
    with storage.lock(lock_url) as held:  # another process is writing v0
        assert held
        p = _cli(tmp_path, videos, out, home, "locked", "--fixed-stride-min-clip-length-s", "1")
        # once v1 is written, the run waits for v0
        rc, elapsed, text = _sigterm(p, tmp_path, "locked", once=(out / layout.video_file("v1.mp4")).exists)
    assert rc == 130 and elapsed < 15, (rc, elapsed, text)
    assert not (out / layout.video_file("v0.mp4")).exists()
    assert "STEP_UP_FOR_RETRY" not in _run_events(home)


@pytest.mark.slow
def test_sigterm_while_another_cli_sets_up_the_instance_exits_quickly(tmp_path):
    """The instance setup lock (another CLI creating the same instance) is waited for the same way."""
    videos, out, home = tmp_path / "in", tmp_path / "out", tmp_path / "home"
    videos.mkdir()
    make_video(videos / "a.mp4", seconds=2, fps=10, width=64, height=64)
    home.mkdir()
    with storage.lock(str(home / ".curation-instance.lock")) as held:
        assert held
        p = _cli(tmp_path, videos, out, home, "setup", "--fixed-stride-min-clip-length-s", "1")
        # "videos under" is printed just before the instance is opened
        rc, elapsed, text = _sigterm(p, tmp_path, "setup", once=lambda: "videos under" in _log(tmp_path, "setup"),
                                     within_s=120)
    assert rc == 130 and elapsed < 15, (rc, elapsed, text)
    assert "not processed: the run was stopped" in text and "Traceback" not in text, text
    assert not out.exists() or not (out / "processed_videos").exists()


@pytest.mark.slow
@pytest.mark.parametrize("positions", [1, 2])
def test_dagsters_own_interrupt_is_not_retried_either(tmp_path, positions):
    """What a run worker gets when the UI terminates a daemon-launched run: SIGINT, raised by
    Dagster as ``DagsterExecutionInterruptedError`` inside the step (no ``core.cancel`` involved).
    The step ends interrupted; it is not retried (with a RetryPolicy it was: dagster #15026).
    With two decode positions too: the interrupt, at whatever the step's thread is doing, ends
    every thread of the transcode (it could leave the step waiting for ever: test_transcode_abort.py)."""
    from dagster._utils.interrupts import capture_interrupts

    videos, out = tmp_path / "in", tmp_path / "out"
    videos.mkdir()
    make_video(videos / "a.mp4", seconds=30, fps=25, width=640, height=360)
    defs = build_definitions(CurationSettings.from_options(_options(videos, out, fixed_stride_split_duration=2.0,
                                                                         transcode_decode_positions=positions)))

    def interrupt_once_transcoding() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list((out / "_work").rglob("*.mp4")):
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(VIDEOS_PARTITION_NAME, ["a.mp4"])
        threading.Thread(target=interrupt_once_transcoding, daemon=True).start()
        started = time.monotonic()
        with capture_interrupts():
            result = defs.resolve_job_def(CURATE_JOB_NAME).execute_in_process(
                instance=instance, partition_key="a.mp4", raise_on_error=False)
        elapsed = time.monotonic() - started
        events = [e.event_type_value for e in result.all_events]
        assert "STEP_UP_FOR_RETRY" not in events, events
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        assert failure.step_key == "video_clips"
        assert failure.step_failure_data.error.cls_name == "DagsterExecutionInterruptedError"
        assert elapsed < 30, elapsed  # not 5 + 15 + 35 s of retries
    assert not (out / "processed_videos").exists()
    assert not [t.name for t in threading.enumerate() if t.name.startswith(("decode-position-2", "clip-encoder-"))]
