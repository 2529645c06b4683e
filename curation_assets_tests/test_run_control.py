"""A run's progress and stop go through its ``run_control`` resource and the current context's
stop check, never through a module global: the CLI's control gets its own runs' ticks, another
run in the same process (the default control) reaches nobody's printer and never stops."""

from __future__ import annotations

import threading

import dagster as dg
import pytest

from curation_assets.cli.control import CliRunControl
from curation_assets.core import cancel
from curation_assets.core.options import PipelineOptions
from curation_assets.definitions import CURATE_JOB_NAME, build_definitions
from curation_assets.defs.shared.resources import CurationSettings
from curation_assets.defs.shared.run_control import RunControl
from curation_assets.partitions import VIDEOS_PARTITION_NAME

from .video_factory import make_video


def _settings(videos, out) -> CurationSettings:
    return CurationSettings.from_options(PipelineOptions(
        input_path=str(videos), output_path=str(out), fixed_stride_split_duration=1.0,
        fixed_stride_min_clip_length_s=0.5, generate_embeddings="off", generate_previews=False))


def test_a_stop_check_belongs_to_its_context():
    assert not cancel.requested()
    cancel.checkpoint()  # no check set: nothing stops
    seen: dict[str, object] = {}

    def stopped() -> None:
        with cancel.stop_check(lambda: True):
            try:
                cancel.checkpoint()
            except cancel.Interrupted as exc:
                seen["stopped"] = exc

    def other() -> None:
        seen["other"] = cancel.requested()

    for target in (stopped, other):
        thread = threading.Thread(target=target)
        thread.start()
        thread.join()
    assert isinstance(seen["stopped"], cancel.Interrupted) and seen["other"] is False
    with pytest.raises(cancel.Interrupted, match="stopped on request"):
        with cancel.stop_check(lambda: True):
            cancel.checkpoint()
    assert not cancel.requested()  # the block's check went with the block


def test_the_default_run_control_never_stops():
    control = RunControl()
    assert not control.stop_requested()
    control.checkpoint()
    with control.watching():
        assert not cancel.requested()


def test_the_cli_control_gets_its_runs_progress_and_another_run_reaches_nobody(tmp_path):
    videos, out = tmp_path / "in", tmp_path / "out"
    videos.mkdir()
    make_video(videos / "a.mp4", seconds=2, fps=10, width=64, height=64)
    ticks: list = []
    asked: list[bool] = []

    def stop() -> bool:
        asked.append(True)
        return False

    control = CliRunControl.wired(ticks.append, stop)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(VIDEOS_PARTITION_NAME, ["a.mp4"])
        mine = build_definitions(_settings(videos, out), run_control=control.as_resource())
        result = mine.resolve_job_def(CURATE_JOB_NAME).execute_in_process(instance=instance, partition_key="a.mp4")
        assert result.success
        finished = [t for t in ticks if t.finished]
        assert [t.rel_path for t in finished] == ["a.mp4"] and finished[0].clips_total == 2, ticks
        assert asked  # the steps asked this control whether to stop
        seen = len(ticks)
        other = build_definitions(_settings(videos, tmp_path / "out2"))  # the default control
        assert other.resolve_job_def(CURATE_JOB_NAME).execute_in_process(
            instance=instance, partition_key="a.mp4").success
    assert len(ticks) == seen and control.notices == []


def test_the_cli_control_keeps_each_notice_once():
    control = CliRunControl.wired(lambda tick: None, lambda: False)
    for message in ("embeddings skipped: no weights", "embeddings skipped: no weights", "other"):
        control.notice(message)
    assert control.notices == ["embeddings skipped: no weights", "other"]
