"""The backfill schedule on a real instance with real runs: missing, failed and stale partitions are
requested in batched ranges, current and in-progress ones are not, and a video once re-run with
the current settings is current."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from curation_assets.core import backfill
from curation_assets.core.options import PipelineOptions
from curation_assets.definitions import CURATE_JOB_NAME, build_definitions
from curation_assets.defs.shared.resources import CurationSettings
from curation_assets.defs.automation.schedules import BACKFILL_SCHEDULE_NAME, partition_states
from curation_assets.defs.shared.tags import RANGE_END_TAG, RANGE_START_TAG, REASON_TAG, REQUESTED_BY_TAG
from curation_assets.partitions import VIDEOS_PARTITION_NAME

from .video_factory import make_video

RANGE = (RANGE_START_TAG, RANGE_END_TAG)


def _options(videos, out, **kw) -> PipelineOptions:
    return PipelineOptions(input_path=str(videos), output_path=str(out), fixed_stride_split_duration=1.0,
                           fixed_stride_min_clip_length_s=0.5, generate_embeddings="off", generate_previews=False, **kw)


def _tick(defs: dg.Definitions, instance, when: dt.datetime):
    schedule = defs.resolve_schedule_def(BACKFILL_SCHEDULE_NAME)
    with dg.build_schedule_context(instance=instance, resources=defs.resources, scheduled_execution_time=when,
                                   repository_def=defs.get_repository_def()) as context:
        return schedule.evaluate_tick(context)


def _keys(instance, request: dg.RunRequest) -> list[str]:
    if request.partition_key:
        return [request.partition_key]
    order = instance.get_dynamic_partitions(VIDEOS_PARTITION_NAME)
    return list(order[order.index(request.tags[RANGE_START_TAG]): order.index(request.tags[RANGE_END_TAG]) + 1])


def _run(defs, instance, keys):
    job = defs.resolve_job_def(CURATE_JOB_NAME)
    tags = {"dagster/partition": keys[0]} if len(keys) == 1 else dict(zip(RANGE, (keys[0], keys[-1])))
    return job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)


@pytest.mark.slow  # three real runs (about 25 s on 2 cores); the planning rules alone: test_backfill_core.py
def test_missing_failed_and_stale_are_requested_current_ones_are_not(tmp_path):
    videos, out = tmp_path / "in", tmp_path / "out"
    videos.mkdir()
    for name in ("current.mp4", "stale.mp4"):
        make_video(videos / name, seconds=1, fps=10, width=64, height=64)
    (videos / "broken.mp4").write_bytes(b"\x00" * 100)
    now = _options(videos, out)
    other = now.replace(fixed_stride_split_duration=0.5)  # another settings hash
    defs, old_defs = (build_definitions(CurationSettings.from_options(o)) for o in (now, other))
    missing = [f"later/m{i:02d}.mp4" for i in range(20)]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(VIDEOS_PARTITION_NAME, ["current.mp4", "broken.mp4", "stale.mp4", *missing,
                                                                "busy.mp4"])
        assert not _run(defs, instance, ["current.mp4", "broken.mp4"]).success  # broken.mp4 fails alone
        assert _run(old_defs, instance, ["stale.mp4"]).success
        # a run of busy.mp4 created, not started yet: its partition is in progress
        job = defs.resolve_job_def(CURATE_JOB_NAME)
        instance.create_run_for_job(job, tags={"dagster/partition": "busy.mp4"}, status=dg.DagsterRunStatus.NOT_STARTED)

        status, versions = partition_states(instance, instance.get_dynamic_partitions(VIDEOS_PARTITION_NAME))
        assert status == {"current.mp4": backfill.MATERIALIZED, "stale.mp4": backfill.MATERIALIZED,
                          "broken.mp4": backfill.FAILED, "busy.mp4": backfill.IN_PROGRESS}
        assert versions["current.mp4"] == backfill.data_version(now.record())
        assert versions["stale.mp4"] == backfill.data_version(other.record())

        night = dt.datetime(2030, 1, 1, 3, 0, tzinfo=dt.timezone.utc)
        result = _tick(defs, instance, night)
        requests = result.run_requests
        covered = [_keys(instance, r) for r in requests]
        assert [k for batch in covered for k in batch] == ["broken.mp4", "stale.mp4", *missing]
        assert [len(b) for b in covered] == [16, 6]  # ranges of consecutive keys, at most 16 each
        assert requests[0].tags[REASON_TAG] == "missing+failed+stale" and requests[1].tags[REASON_TAG] == "missing"
        assert all(r.tags[REQUESTED_BY_TAG] == BACKFILL_SCHEDULE_NAME and r.job_name == CURATE_JOB_NAME
                   for r in requests)
        # the same tick gives the same run keys (Dagster drops repeats); the next night others
        assert [r.run_key for r in _tick(defs, instance, night).run_requests] == [r.run_key for r in requests]
        tomorrow = [r.run_key for r in _tick(defs, instance, night + dt.timedelta(days=1)).run_requests]
        assert not set(tomorrow) & {r.run_key for r in requests}

        # re-running the stale video with the current settings makes it current
        assert _run(defs, instance, ["stale.mp4"]).success
        again = [k for r in _tick(defs, instance, night).run_requests for k in _keys(instance, r)]
        assert again == ["broken.mp4", *missing]


def test_nothing_to_do_is_a_skip_with_the_reason(tmp_path):
    videos, out = tmp_path / "in", tmp_path / "out"
    videos.mkdir()
    make_video(videos / "a.mp4", seconds=1, fps=10, width=64, height=64)
    defs = build_definitions(CurationSettings.from_options(_options(videos, out)))
    when = dt.datetime(2030, 1, 1, 3, 0, tzinfo=dt.timezone.utc)
    with dg.instance_for_test() as instance:
        assert "no video partitions" in _tick(defs, instance, when).skip_message
        instance.add_dynamic_partitions(VIDEOS_PARTITION_NAME, ["a.mp4"])
        assert _run(defs, instance, ["a.mp4"]).success
        result = _tick(defs, instance, when)
        assert not result.run_requests and "all 1 videos are current" in result.skip_message


def test_the_cron_comes_from_the_settings_and_the_schedule_starts_stopped(tmp_path):
    options = _options(tmp_path / "in", tmp_path / "out").replace(backfill_cron="15 1 * * 6")
    defs = build_definitions(CurationSettings.from_options(options))
    schedule = defs.resolve_schedule_def(BACKFILL_SCHEDULE_NAME)
    assert schedule.cron_schedule == "15 1 * * 6" and schedule.execution_timezone == "UTC"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert build_definitions(CurationSettings.from_options(_options(tmp_path, tmp_path / "o"))).resolve_schedule_def(
        BACKFILL_SCHEDULE_NAME).cron_schedule == "0 3 * * *"
