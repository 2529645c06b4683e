"""What unattended runs do beyond curating: removing a deleted video's outputs (only its own,
verified files, never another video's), step retries for a transient failure (the work area's
bucket appears after the first attempt), the code location's settings refused in a run's config,
and eager automation of the steps after ``video_clips``."""

from __future__ import annotations

import json
import threading
import time

import dagster as dg
import pytest

from curation_assets.cli import build_parser
from curation_assets.core import layout, removal
from curation_assets.core.options import PipelineOptions, location_settings
from curation_assets.core.work import WorkArea
from curation_assets.defs.curation.jobs import CURATION_SELECTION
from curation_assets.defs.packaging.assets import DATASET_ASSETS
from curation_assets.definitions import CURATE_JOB_NAME, build_definitions
from curation_assets.defs.shared.tags import REMOVE_JOB_NAME, REMOVE_OP_NAME
from curation_assets.defs.shared.resources import CurationSettings
from curation_assets.defs.automation.sensors import UPLOAD_SENSOR_NAME
from curation_assets.partitions import VIDEOS_PARTITION_NAME

from .layout_checks import all_files, check_layout
from .video_factory import make_video

RANGE = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


def _options(videos, out, **kw) -> PipelineOptions:
    return PipelineOptions(input_path=str(videos), output_path=str(out), fixed_stride_split_duration=1.0,
                           fixed_stride_min_clip_length_s=0.5, generate_embeddings="off", **kw)


def _curate(defs, instance, keys, **kw):
    tags = {"dagster/partition": keys[0]} if len(keys) == 1 else dict(zip(RANGE, (keys[0], keys[-1])))
    return defs.resolve_job_def(CURATE_JOB_NAME).execute_in_process(instance=instance, tags=tags,
                                                                   raise_on_error=False, **kw)


def _own(out, files: set[str], uids: list[str]) -> set[str]:
    return {f for f in files if any(u in f for u in uids)}


def test_removal_takes_only_the_videos_own_verified_files(tmp_path):
    videos, out = tmp_path / "in", tmp_path / "out"
    videos.mkdir()
    make_video(videos / "keep.mp4", seconds=2, fps=10, width=64, height=64)
    make_video(videos / "gone.mp4", seconds=2, fps=10, width=64, height=64)
    options = _options(videos, out)
    defs = build_definitions(CurationSettings.from_options(options.replace(watch_remove_deleted=True)))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(VIDEOS_PARTITION_NAME, ["keep.mp4", "gone.mp4"])
        assert _curate(defs, instance, ["keep.mp4", "gone.mp4"]).success
        before = all_files(out)
        keep_chunk = json.loads((out / layout.chunk_file("keep.mp4", 0)).read_text())
        # a tampered document of the deleted video names the other video's clip: never removed
        gone_chunk_path = out / layout.chunk_file("gone.mp4", 0)
        gone_chunk = json.loads(gone_chunk_path.read_text())
        gone_ids = gone_chunk["clips"] + gone_chunk["filtered_clips"]
        gone_chunk["clips"].append(keep_chunk["clips"][0])
        gone_chunk_path.write_text(json.dumps(gone_chunk, indent=4))

        # the sensor sees both videos (two ticks: new files settle), then one is deleted; its
        # removal request runs as the daemon would run it
        sensor = defs.resolve_sensor_def(UPLOAD_SENSOR_NAME)
        cursor = None
        for step in range(3):
            if step == 2:
                (videos / "gone.mp4").unlink()
            with dg.build_sensor_context(instance=instance, cursor=cursor, resources=defs.resources,
                                         repository_def=defs.get_repository_def(), instance_ref=instance.get_ref()) as ctx:
                tick = sensor.evaluate_tick(ctx)
            cursor = tick.cursor
        (request,) = [r for r in tick.run_requests if r.job_name == REMOVE_JOB_NAME]
        result = defs.resolve_job_def(REMOVE_JOB_NAME).execute_in_process(instance=instance, run_config=request.run_config)
        assert result.success
        assert instance.get_dynamic_partitions(VIDEOS_PARTITION_NAME) == ["keep.mp4"]
        (obs,) = [r.asset_observation for r in instance.fetch_observations(dg.AssetKey("processed_videos"), limit=10).records
                  if r.asset_observation.metadata.get("outputs_removed")]
        assert obs.partition == "gone.mp4" and obs.metadata["files_removed"].value > 0
    after = all_files(out)
    gone_files = {layout.video_file("gone.mp4"), layout.chunk_file("gone.mp4", 0)} | _own(out, before, gone_ids)
    assert after == before - gone_files
    assert not any("gone" in f for f in after) and not _own(out, after, gone_ids)
    check_layout(out, videos, ["keep.mp4"])
    assert not (out / "_work" / "videos" / WorkArea.for_options(options).video_dir(str(videos / "gone.mp4")).rsplit("/", 1)[1]
                / "video_clips.json").exists()


def test_removal_refuses_paths_outside_the_output(tmp_path):
    with pytest.raises(ValueError, match=r"path key '\.\./\.\./etc/passwd' has a '\.\.' segment"):
        removal.remove_video_outputs(str(tmp_path / "out"), "../../etc/passwd", "/etc/passwd", WorkArea(str(tmp_path / "w"), str(tmp_path / "out")))


def test_a_video_whose_source_is_back_is_not_removed(tmp_path):
    videos, out = tmp_path / "in", tmp_path / "out"
    videos.mkdir()
    make_video(videos / "a.mp4", seconds=1, fps=10, width=64, height=64)
    defs = build_definitions(CurationSettings.from_options(_options(videos, out)))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(VIDEOS_PARTITION_NAME, ["a.mp4"])
        assert _curate(defs, instance, ["a.mp4"]).success
        files = all_files(out)
        config = {"ops": {REMOVE_OP_NAME: {"config": {"keys": ["a.mp4"]}}}}
        assert defs.resolve_job_def(REMOVE_JOB_NAME).execute_in_process(instance=instance, run_config=config).success
        assert instance.get_dynamic_partitions(VIDEOS_PARTITION_NAME) == ["a.mp4"]
    assert all_files(out) == files


@pytest.mark.slow
def test_a_transient_failure_of_a_step_is_retried_with_backoff(tmp_path, s3_server, s3_bucket):
    """The work area lives in a bucket that does not exist yet: the first attempt of video_clips
    cannot store its value and fails as a whole; the bucket appears; the retry (5 s later) works."""
    videos, out = tmp_path / "in", tmp_path / "out"
    videos.mkdir()
    make_video(videos / "a.mp4", seconds=1, fps=10, width=64, height=64)
    late = f"late-{int(time.time() * 1000)}"
    options = _options(videos, out, work_path=f"s3://{late}/work")
    defs = build_definitions(CurationSettings.from_options(options))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(VIDEOS_PARTITION_NAME, ["a.mp4"])

        def create_bucket_after_first_failure():
            deadline = time.time() + 60
            while time.time() < deadline:
                runs = instance.get_runs(limit=1)
                if runs and any(r.dagster_event and r.dagster_event.event_type_value == "STEP_UP_FOR_RETRY"
                                for r in instance.all_logs(runs[0].run_id)):
                    s3_server.make_bucket(late)
                    return
                time.sleep(0.1)

        helper = threading.Thread(target=create_bucket_after_first_failure, daemon=True)
        helper.start()
        result = _curate(defs, instance, ["a.mp4"])
        helper.join(timeout=5)
        events = [e.event_type_value for e in result.all_events if e.step_key == "video_clips"]
        assert events.count("STEP_UP_FOR_RETRY") == 1 and events.count("STEP_RESTARTED") == 1, events
        assert result.success
        retry = next(e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY")
        assert retry.event_specific_data.seconds_to_wait == 5
    check_layout(out, videos, ["a.mp4"])


def test_a_broken_video_is_not_retried_and_fails_alone(tmp_path):
    videos, out = tmp_path / "in", tmp_path / "out"
    videos.mkdir()
    make_video(videos / "a.mp4", seconds=1, fps=10, width=64, height=64)
    (videos / "b.mp4").write_bytes(b"\x00" * 10)
    defs = build_definitions(CurationSettings.from_options(_options(videos, out)))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(VIDEOS_PARTITION_NAME, ["a.mp4", "b.mp4"])
        result = _curate(defs, instance, ["a.mp4", "b.mp4"])
        assert not result.success
        assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
        mats = {r.asset_materialization.partition
                for r in instance.fetch_materializations(dg.AssetKey("processed_videos"), limit=10).records}
        assert mats == {"a.mp4"}


def test_settings_of_the_code_location_are_refused_in_a_runs_config(tmp_path):
    videos, out = tmp_path / "in", tmp_path / "out"
    videos.mkdir()
    make_video(videos / "a.mp4", seconds=1, fps=10, width=64, height=64)
    defs = build_definitions(CurationSettings.from_options(_options(videos, out)))
    config = {"input_path": str(videos), "output_path": str(out), "watch_max_per_tick": 10, "backfill_cron": "0 1 * * *"}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(VIDEOS_PARTITION_NAME, ["a.mp4"])
        result = _curate(defs, instance, ["a.mp4"], run_config={"resources": {"settings": {"config": config}}})
        assert not result.success
        (init,) = [e for e in result.all_events if e.event_type_value == "RESOURCE_INIT_FAILURE"]
        message = init.event_specific_data.error.message
        assert "watch_max_per_tick, backfill_cron: settings of the code location" in message
        assert "CURATION_WATCH_MAX_PER_TICK" in message
    assert not out.exists()
    # and the CLI, which runs no sensor or schedule, has no flag for them
    text = build_parser()._subparsers._group_actions[0].choices["run"].format_help()
    assert not [name for name in location_settings() if "--" + name.replace("_", "-") in text]
    assert {"watch_max_per_tick", "backfill_cron", "checks_block_downstream"} <= set(location_settings())


def test_a_page_budget_on_a_local_input_is_refused():
    with pytest.raises(ValueError, match="watch_list_pages_per_tick applies to s3://"):
        PipelineOptions(input_path="/data/videos", watch_list_pages_per_tick=3)
    with pytest.raises(ValueError, match="backfill_cron"):
        PipelineOptions(backfill_cron="nightly")
    assert PipelineOptions(input_path="s3://bucket/in", watch_list_pages_per_tick=3).watch_list_pages_per_tick == 3


@pytest.mark.slow
def test_steps_after_video_clips_follow_it_when_automation_is_on(tmp_path):
    videos, out = tmp_path / "in", tmp_path / "out"
    videos.mkdir()
    make_video(videos / "a.mp4", seconds=1, fps=10, width=64, height=64)
    defs = build_definitions(CurationSettings.from_options(_options(videos, out)))
    graph = defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey("video_clips")).automation_condition is None
    curation = CURATION_SELECTION.resolve(graph)
    assert all(graph.get(k).automation_condition.get_label() == "eager"
               for k in curation if k != dg.AssetKey("video_clips"))
    # a video's manifest piece follows its layout; the dataset-level packages (shards, dedup) stay
    # on request: rebuilding them after every video is not wanted
    assert graph.get(dg.AssetKey("clip_manifest")).automation_condition.get_label() == "eager"
    assert all(graph.get(dg.AssetKey(k)).automation_condition is None for k in DATASET_ASSETS)
    sensor = next(s for s in defs.sensors if isinstance(s, dg.AutomationConditionSensorDefinition))
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(VIDEOS_PARTITION_NAME, ["a.mp4", "b.mp4"])
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert first.total_requested == 0  # nothing was materialised: nothing follows
        job = defs.resolve_job_def(CURATE_JOB_NAME)
        assert job.execute_in_process(instance=instance, partition_key="a.mp4",
                                      asset_selection=[dg.AssetKey("video_clips")]).success
        after = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
        requested = {k.to_user_string(): set(after.get_requested_partitions(k)) for k in graph.get_all_asset_keys()}
        # the steps that read video_clips directly are due now; the layout follows them next
        assert requested["aesthetic_scores"] == {"a.mp4"} and requested["video_clips"] == set()
        assert all(v <= {"a.mp4"} for v in requested.values()), requested
