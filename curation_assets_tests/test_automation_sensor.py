"""The upload sensor as Dagster runs it (``evaluate_tick`` on a real instance), against a real
folder and against the S3 server: a file arriving in pieces, hundreds of files sharing one
timestamp behind a tick cap, a replaced file, a deleted file (reported, and removed when asked).
The watcher's own rules are tested in test_uploads.py; these check what reaches Dagster."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import pytest

from curation_assets.core.options import PipelineOptions
from curation_assets.definitions import build_definitions
from curation_assets.defs.automation.sensors import UPLOAD_SENSOR_NAME
from curation_assets.defs.shared.resources import CurationSettings
from curation_assets.defs.shared.tags import (RANGE_END_TAG, RANGE_START_TAG, REASON_TAG, REMOVE_JOB_NAME, REMOVE_OP_NAME,
                                              REQUESTED_BY_TAG, VIDEOS_TAG)
from curation_assets.partitions import VIDEOS_PARTITION_NAME

OLD = 1_600_000_000  # an mtime far older than any settle age


def _defs(input_path: str, output_path: str, **settings) -> dg.Definitions:
    options = PipelineOptions(input_path=input_path, output_path=output_path, **settings)
    return build_definitions(CurationSettings.from_options(options))


class Ticker:
    """Evaluates the sensor as the daemon does and applies its partition requests to the instance
    (``evaluate_tick`` returns them without applying them)."""

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance):
        self.defs, self.instance, self.cursor = defs, instance, None
        self.sensor = defs.resolve_sensor_def(UPLOAD_SENSOR_NAME)

    def __call__(self):
        with dg.build_sensor_context(instance=self.instance, cursor=self.cursor, resources=self.defs.resources,
                                     repository_def=self.defs.get_repository_def(), instance_ref=self.instance.get_ref(),
                                     sensor_name=UPLOAD_SENSOR_NAME) as context:
            result = self.sensor.evaluate_tick(context)
        for request in result.dynamic_partitions_requests or []:
            self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        self.cursor = result.cursor
        return result

    def keys_of(self, request: dg.RunRequest) -> list[str]:
        """The partitions a run request covers, resolved in the instance's key order."""
        if request.partition_key:
            return [request.partition_key]
        order = self.instance.get_dynamic_partitions(VIDEOS_PARTITION_NAME)
        start, end = order.index(request.tags[RANGE_START_TAG]), order.index(request.tags[RANGE_END_TAG])
        assert start <= end
        return list(order[start:end + 1])


def _curate(result) -> list[dg.RunRequest]:
    return [r for r in result.run_requests or [] if r.job_name != REMOVE_JOB_NAME]


def _write(path: Path, data: bytes, mtime: float | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


# ---------------------------------------------------------------------------------------------
# a local folder


def test_a_file_arriving_in_pieces_is_requested_once_it_stops_changing(tmp_path):
    videos, out = tmp_path / "in", tmp_path / "out"
    videos.mkdir()
    defs = _defs(str(videos), str(out))  # default settle age: a fresh file must be unchanged for a tick
    with dg.instance_for_test() as instance:
        tick = Ticker(defs, instance)
        target = videos / "upload.mp4"
        for size in (1000, 5000, 9000):  # still growing at each tick
            with open(target, "ab") as f:
                f.write(os.urandom(size - (target.stat().st_size if target.exists() else 0)))
            result = tick()
            assert not result.run_requests and "still being written" in result.skip_message, result.skip_message
            assert instance.get_dynamic_partitions(VIDEOS_PARTITION_NAME) == []
        result = tick()  # unchanged since the previous tick: complete
        (request,) = result.run_requests
        assert request.partition_key == "upload.mp4" and request.job_name == "curate_videos"
        assert request.tags[REASON_TAG] == "new" and request.tags[REQUESTED_BY_TAG] == UPLOAD_SENSOR_NAME
        assert instance.get_dynamic_partitions(VIDEOS_PARTITION_NAME) == ["upload.mp4"]
        again = tick()
        assert not again.run_requests and again.skip_message


def test_hundreds_of_files_with_one_timestamp_behind_a_tick_cap(tmp_path):
    videos = tmp_path / "in"
    out = videos / "curated"  # an output inside the input is never watched
    names = [f"cam{i % 3}/clip_{i:04d}.mp4" for i in range(300)]
    for name in names:
        _write(videos / name, b"x" * 10, mtime=OLD)  # every file has the same mtime
    _write(out / "clips" / "not-an-upload.mp4", b"y", mtime=OLD)
    defs = _defs(str(videos), str(out), watch_max_per_tick=120)
    with dg.instance_for_test() as instance:
        tick = Ticker(defs, instance)
        requested: list[str] = []
        for expected in (120, 120, 60):
            result = tick()
            runs = _curate(result)
            keys = [k for r in runs for k in tick.keys_of(r)]
            assert len(keys) == expected and len(runs) == -(-expected // 16)
            assert all(len(tick.keys_of(r)) <= 16 and r.tags[VIDEOS_TAG] == str(len(tick.keys_of(r))) for r in runs)
            requested += keys
        assert not tick().run_requests
        assert sorted(requested) == sorted(names)  # each exactly once, none skipped for sharing a timestamp
        assert instance.get_dynamic_partitions(VIDEOS_PARTITION_NAME) == requested  # ranges in the instance's order


def test_a_replaced_file_is_requested_again_under_a_new_run_key(tmp_path):
    videos, out = tmp_path / "in", tmp_path / "out"
    _write(videos / "a.mp4", b"first" * 10, mtime=OLD)
    _write(videos / "b.mp4", b"other" * 10, mtime=OLD)
    defs = _defs(str(videos), str(out))
    with dg.instance_for_test() as instance:
        tick = Ticker(defs, instance)
        (first,) = tick().run_requests
        assert tick.keys_of(first) == ["a.mp4", "b.mp4"] and first.tags[REASON_TAG] == "new"
        _write(videos / "a.mp4", b"second version" * 10, mtime=OLD + 100)
        result = tick()
        (again,) = result.run_requests
        assert again.partition_key == "a.mp4" and again.tags[REASON_TAG] == "replaced"
        assert again.run_key != first.run_key
        assert not result.dynamic_partitions_requests  # its partition exists already
        assert instance.get_dynamic_partitions(VIDEOS_PARTITION_NAME) == ["a.mp4", "b.mp4"]


@pytest.mark.parametrize("remove", [False, True])
def test_a_deleted_file_is_reported_and_removed_only_when_asked(tmp_path, remove):
    videos, out = tmp_path / "in", tmp_path / "out"
    for name in ("a.mp4", "b.mp4"):
        _write(videos / name, b"v" * 10, mtime=OLD)
    defs = _defs(str(videos), str(out), watch_remove_deleted=remove)
    with dg.instance_for_test() as instance:
        tick = Ticker(defs, instance)
        tick()
        (videos / "b.mp4").unlink()
        result = tick()
        (event,) = result.asset_events
        assert isinstance(event, dg.AssetObservation) and event.partition == "b.mp4"
        assert event.asset_key == dg.AssetKey("processed_videos") and event.metadata["source_deleted"].value is True
        removals = [r for r in result.run_requests or [] if r.job_name == REMOVE_JOB_NAME]
        assert not _curate(result)
        if remove:
            (request,) = removals
            assert request.run_config["ops"][REMOVE_OP_NAME]["config"]["keys"] == ["b.mp4"]
            assert request.tags[REASON_TAG] == "deleted"
            assert "removal requested" in event.metadata["outputs"].value
        else:
            assert not removals and "kept" in event.metadata["outputs"].value
        assert instance.get_dynamic_partitions(VIDEOS_PARTITION_NAME) == ["a.mp4", "b.mp4"]  # the removal run deletes it
        assert not tick().asset_events  # reported once


def test_the_sensor_reads_the_settings_resource_not_the_environment(tmp_path, monkeypatch):
    videos, other = tmp_path / "in", tmp_path / "elsewhere"
    _write(videos / "mine.mp4", b"m", mtime=OLD)
    _write(other / "theirs.mp4", b"t", mtime=OLD)
    monkeypatch.setenv("CURATION_INPUT_PATH", str(other))
    defs = _defs(str(videos), str(tmp_path / "out"), video_extensions=(".mp4", ".bin"))
    _write(videos / "raw.bin", b"b", mtime=OLD)
    with dg.instance_for_test() as instance:
        (request,) = Ticker(defs, instance)().run_requests
        assert Ticker(defs, instance).keys_of(request) == ["mine.mp4", "raw.bin"]


def test_a_second_input_folder_on_one_instance_fails_the_tick(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    _write(first / "a.mp4", b"a", mtime=OLD)
    _write(second / "a.mp4", b"a", mtime=OLD)
    with dg.instance_for_test() as instance:
        Ticker(_defs(str(first), str(tmp_path / "out1")), instance)()
        with pytest.raises(Exception, match="holds the video partitions of"):
            Ticker(_defs(str(second), str(tmp_path / "out2")), instance)()


# ---------------------------------------------------------------------------------------------
# the S3 server


def _put(client, bucket: str, key: str, data: bytes) -> None:
    client.put_object(Bucket=bucket, Key=key, Body=data)


def test_s3_pieces_same_timestamps_cap_replacement_and_deletion(s3_server, s3_bucket, tmp_path):
    bucket = s3_bucket.removeprefix("s3://")
    client = s3_server.client()
    # settle by a second look only: objects just written are never older than the settle age
    defs = _defs(f"{s3_bucket}/in", f"{s3_bucket}/out", watch_max_per_tick=50)
    with dg.instance_for_test() as instance:
        tick = Ticker(defs, instance)
        # an upload in pieces: the object is rewritten larger at each tick (its ETag changes)
        for size in (100, 2000):
            _put(client, bucket, "in/upload.mp4", os.urandom(size))
            result = tick()
            assert not result.run_requests and "still being written" in result.skip_message
        (request,) = tick().run_requests
        assert request.partition_key == "upload.mp4" and request.tags[REASON_TAG] == "new"
        # 130 objects put within a second or two: LastModified has one-second resolution on S3
        for i in range(130):
            _put(client, bucket, f"in/batch/v{i:03d}.mp4", b"x" * 10)
        assert not tick().run_requests  # seen once: settling
        requested = []
        for expected in (50, 50, 30):
            keys = [k for r in tick().run_requests for k in tick.keys_of(r)]
            assert len(keys) == expected
            requested += keys
        assert sorted(requested) == [f"batch/v{i:03d}.mp4" for i in range(130)]
        assert not tick().run_requests
        # replaced, then deleted
        _put(client, bucket, "in/upload.mp4", b"the whole new upload")
        tick()  # seen with its new ETag: settling
        (again,) = tick().run_requests
        assert again.partition_key == "upload.mp4" and again.tags[REASON_TAG] == "replaced"
        assert again.run_key != request.run_key
        client.delete_object(Bucket=bucket, Key="in/batch/v007.mp4")
        result = tick()
        assert [e.partition for e in result.asset_events] == ["batch/v007.mp4"]
        assert not result.run_requests
