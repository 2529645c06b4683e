"""The CLI's first video begins before its run (``core.head_start``): the run's ``video_clips``
step takes that work over with the same bytes, its progress in order on the step's own thread, a
stop before the claim is still a stop, and work no step claims is stopped, not left running."""

from __future__ import annotations

import hashlib
import io
import logging
import shutil
import threading
import time
from pathlib import Path

import dagster as dg
import pytest

from curation_assets.cli import run_pipeline
from curation_assets.core import cancel, head_start
from curation_assets.core.options import PipelineOptions, step_digest
from curation_assets.core.pipeline import Progress
from curation_assets.core.work import WorkArea
from curation_assets.definitions import CURATE_JOB_NAME, build_definitions
from curation_assets.defs.shared.resources import CurationSettings
from curation_assets.partitions import VIDEOS_PARTITION_NAME

from .layout_checks import all_files
from .video_factory import make_video


def _options(videos: Path, out: Path, **kw) -> PipelineOptions:
    base = dict(input_path=str(videos), output_path=str(out), fixed_stride_split_duration=1.0,
                fixed_stride_min_clip_length_s=0.5, generate_embeddings="off", generate_previews=True,
                motion_filter="score-only")
    return PipelineOptions(**{**base, **kw})


def _videos(tmp_path: Path, n: int = 2, seconds: int = 4) -> Path:
    videos = tmp_path / "in"
    videos.mkdir()
    for i in range(n):
        make_video(videos / f"v{i}.mp4", seconds=seconds, fps=25, width=192, height=128)
    return videos


def _clips_metadata(home: Path) -> dict[str, dict]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = instance.fetch_materializations(dg.AssetKey("video_clips"), limit=100).records
        out: dict[str, dict] = {}
        for r in records:  # newest first
            out.setdefault(r.partition_key, {k: v.value for k, v in r.asset_materialization.metadata.items()})
        return out


def _digests(out: Path) -> dict[str, str]:
    return {f: hashlib.sha256((out / f).read_bytes()).hexdigest() for f in all_files(out)
            if not f.startswith("_work/")}


@pytest.mark.slow
def test_the_cli_run_takes_over_its_first_video_with_the_same_bytes(tmp_path):
    videos = _videos(tmp_path)
    out, home = tmp_path / "out", tmp_path / "home"
    # the same videos made by the job alone (no head start: nothing is begun outside a CLI run),
    # into the same output path (the documents name it), which is then removed
    defs = build_definitions(CurationSettings.from_options(_options(videos, out)))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(VIDEOS_PARTITION_NAME, ["v0.mp4", "v1.mp4"])
        for key in ("v0.mp4", "v1.mp4"):
            assert defs.resolve_job_def(CURATE_JOB_NAME).execute_in_process(instance=instance, partition_key=key).success
    theirs = _digests(out)
    shutil.rmtree(out)

    report = io.StringIO()
    assert run_pipeline(_options(videos, out), home=str(home), stream=report, videos_per_run=1) == 0, report.getvalue()
    md = _clips_metadata(home)
    assert md["v0.mp4"]["began_before_run"] is True and md["v0.mp4"]["reused"] is False
    assert md["v1.mp4"]["began_before_run"] is False
    assert md["v0.mp4"]["num_clips_transcoded"] == 4
    assert not [t for t in threading.enumerate() if t.name == "curation-head-start"]
    mine = _digests(out)
    assert len(mine) > 10 and mine.keys() == theirs.keys()
    assert mine == theirs  # the same ids, the same clip and preview bytes, the same documents

    # run again: the head start finds the stored result and the step reports it as reused
    assert run_pipeline(_options(videos, out), home=str(home), stream=io.StringIO()) == 0
    md = _clips_metadata(home)
    assert md["v0.mp4"]["began_before_run"] is True and md["v0.mp4"]["reused"] is True


@pytest.mark.parametrize("settings", [
    dict(fixed_stride_split_duration=1.3, fixed_stride_min_clip_length_s=0.7),
    dict(generate_previews=False, motion_filter="enable", motion_global_mean_threshold=0.0),
    dict(transcode_encoder_threads=2, transcode_preset="veryfast", preview_target_height=96),
    dict(video_extensions=(".mp4", ".mov"), limit_clips=3),
])
def test_the_run_claims_the_head_start_whatever_the_settings(tmp_path, settings):
    """The step's options come from the CLI's through the ``settings`` resource: a setting that does
    not survive that round trip exactly would make every CLI run transcode its first video twice."""
    videos = _videos(tmp_path, n=1, seconds=2)
    out, home = tmp_path / "out", tmp_path / "home"
    options = _options(videos, out, **settings)
    assert run_pipeline(options, home=str(home), stream=io.StringIO()) == 0
    assert _clips_metadata(home)["v0.mp4"]["began_before_run"] is True


def test_progress_reaches_the_taker_in_order_on_its_thread(tmp_path):
    videos = _videos(tmp_path, n=1)
    options = _options(videos, tmp_path / "out")
    source = str(videos / "v0.mp4")
    head = head_start.begin(source, "v0.mp4", options, stop=lambda: False)
    time.sleep(0.5)  # some clips are done before the step takes it over
    assert head_start.claim(source, "v0.mp4", options) is head
    assert head_start.claim(source, "v0.mp4", options) is None  # taken once
    seen: list[tuple[int, bool, str]] = []
    result, reused = head.take(lambda p: seen.append((p.clips_done, p.finished, threading.current_thread().name)))
    assert not reused and len(result.clips) == 4 and all(c.encoded for c in result.clips)
    assert [s[:2] for s in seen] == [(0, False), (1, False), (2, False), (3, False), (4, False), (4, True)]
    assert {s[2] for s in seen} == {threading.current_thread().name}


def test_a_head_start_with_other_settings_is_not_taken_and_is_stopped(tmp_path, caplog):
    videos = _videos(tmp_path, n=1, seconds=20)
    options = _options(videos, tmp_path / "out")
    source = str(videos / "v0.mp4")
    head = head_start.begin(source, "v0.mp4", options, stop=lambda: False)
    other = options.replace(fixed_stride_split_duration=2.0, generate_previews=False)
    with caplog.at_level(logging.WARNING, logger="curation_assets.core.head_start"):
        assert head_start.claim(source, "v0.mp4", other) is None
    assert "settings differ (fixed_stride_split_duration, generate_previews)" in caplog.text
    assert not head._thread.is_alive()  # stopped at its next clip, not left transcoding 20 clips
    with pytest.raises(cancel.Interrupted):
        head.take()
    assert WorkArea.for_options(options).load(source, "video_clips", step_digest(options, "video_clips")) is None


def test_a_stop_before_the_claim_is_a_stop(tmp_path):
    videos = _videos(tmp_path, n=1, seconds=20)
    options = _options(videos, tmp_path / "out")
    source = str(videos / "v0.mp4")
    asked = threading.Event()
    head = head_start.begin(source, "v0.mp4", options, stop=lambda: asked.is_set())
    time.sleep(0.3)
    asked.set()
    ticks: list[Progress] = []
    with pytest.raises(cancel.Interrupted):
        head_start.claim(source, "v0.mp4", options).take(ticks.append)
    assert len(ticks) < 20 and not any(t.finished for t in ticks)


def test_an_unclaimed_head_start_is_stopped_by_the_cli(tmp_path, monkeypatch):
    """A run that fails before its first video (here: the instance cannot be opened) leaves no
    transcode running behind the CLI's back."""
    from curation_assets.cli import runner

    videos = _videos(tmp_path, n=1, seconds=20)
    begun: list[head_start.HeadStart] = []
    real_begin = head_start.begin

    def begin(*args, **kw):
        begun.append(real_begin(*args, **kw))
        return begun[-1]

    def no_instance(*_args, **_kw):
        time.sleep(0.5)
        raise OSError("the instance is on a disk that went away")

    monkeypatch.setattr(head_start, "begin", begin)
    monkeypatch.setattr(runner, "_open_instance", no_instance)
    with pytest.raises(OSError, match="went away"):
        run_pipeline(_options(videos, tmp_path / "out"), home=str(tmp_path / "home"), stream=io.StringIO())
    assert len(begun) == 1 and not begun[0]._thread.is_alive()
    assert not [t for t in threading.enumerate() if t.name in ("curation-head-start", "decode-position-2")]


HEAD_BEFORE_DAGSTER = """
import sys
from curation_assets.core import head_start
from curation_assets import cli

begin = head_start.begin
seen = []

def recording(*args, **kwargs):
    seen.append("dagster" in sys.modules)
    return begin(*args, **kwargs)

head_start.begin = recording
status = cli.main(sys.argv[1:])
print("DAGSTER AT HEAD START:", seen)
sys.exit(status)
"""


def test_the_first_video_begins_before_dagster_is_imported(tmp_path):
    """The head start's point is to begin before the CLI's Dagster work (imports, definitions,
    instance, run): importing Dagster alone takes over half a second of a core. A module on the
    way there that imports Dagster again (the preflight's model owners, the caption section, the
    instance's dataset file) moves the first frame back behind all of it."""
    import subprocess
    import sys

    videos = _videos(tmp_path, n=1, seconds=2)
    proc = subprocess.run([sys.executable, "-c", HEAD_BEFORE_DAGSTER, "run", "--video-dir", str(videos),
                           "--output-path", str(tmp_path / "out"), "--dagster-home", str(tmp_path / "home"),
                           "--no-generate-embeddings", "--fixed-stride-split-duration", "1",
                           "--fixed-stride-min-clip-length-s", "0.5"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "DAGSTER AT HEAD START: [False]" in proc.stdout, proc.stdout[-2000:]
