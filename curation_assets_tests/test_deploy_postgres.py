"""The PostgreSQL instance (deploy/dagster.yaml) against a real PostgreSQL server: a batched CLI run
and the sensor's runs are recorded there, found with SQL in that database."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import dagster as dg
import pytest

from curation_assets.cli import run_pipeline
from curation_assets.core.options import PipelineOptions
from curation_assets.definitions import CURATE_JOB_NAME, build_definitions
from curation_assets.defs.shared.resources import CurationSettings
from curation_assets.defs.automation.sensors import UPLOAD_SENSOR_NAME
from curation_assets.partitions import VIDEOS_PARTITION_NAME

from .video_factory import make_video

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
LAYOUT_ASSETS = ("clips", "previews", "metas/v0", "ce1_embd", "ce1_embd_parquet", "processed_clip_chunks",
                 "processed_videos")


def postgres_home(tmp_path: Path, postgres_server, monkeypatch) -> tuple[Path, str]:
    """A DAGSTER_HOME holding deploy/dagster.yaml, its variables pointing at a fresh database."""
    db = postgres_server.new_database()
    for name, value in postgres_server.env(db).items():
        monkeypatch.setenv(name, value)
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home, db


def _sql(postgres_server, db: str, query: str, *args) -> list[tuple]:
    conn = postgres_server.connect(db)
    try:
        with conn.cursor() as cur:
            cur.execute(query, args)
            return cur.fetchall()
    finally:
        conn.close()


@pytest.mark.slow
def test_batched_and_sensor_runs_are_recorded_in_postgres(tmp_path, postgres_server, monkeypatch):
    home, db = postgres_home(tmp_path, postgres_server, monkeypatch)
    videos, out = tmp_path / "in", tmp_path / "out"
    videos.mkdir()
    for i, name in enumerate(("a.mp4", "b.mp4", "c.mp4")):
        make_video(videos / name, seconds=2 + i, fps=25, width=128, height=128)
    options = PipelineOptions(input_path=str(videos), output_path=str(out), fixed_stride_split_duration=2.0,
                              fixed_stride_min_clip_length_s=1.0, generate_embeddings="off", generate_previews=False)

    # a batched run: the CLI, three videos in one run
    assert run_pipeline(options, home=str(home), stream=io.StringIO()) == 0

    # the sensor's code path: two new uploads, its run requests launched on the same instance
    for name in ("d.mp4", "e.mp4"):
        make_video(videos / name, seconds=2, fps=25, width=128, height=128)
        os.utime(videos / name, (1_600_000_000, 1_600_000_000))  # long settled: requested on the first tick
    defs = build_definitions(CurationSettings.from_options(options))
    job = defs.resolve_job_def(CURATE_JOB_NAME)
    sensor = defs.resolve_sensor_def(UPLOAD_SENSOR_NAME)
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        with dg.build_sensor_context(instance=instance, resources=defs.resources, sensor_name=UPLOAD_SENSOR_NAME,
                                     repository_def=defs.get_repository_def()) as context:
            tick = sensor.evaluate_tick(context)
        (add,) = tick.dynamic_partitions_requests
        assert sorted(add.partition_keys) == ["d.mp4", "e.mp4"]
        instance.add_dynamic_partitions(add.partitions_def_name, list(add.partition_keys))
        assert len(tick.run_requests) == 1
        for request in tick.run_requests:
            assert job.execute_in_process(instance=instance, tags=request.tags).success

    keys = {"a.mp4", "b.mp4", "c.mp4", "d.mp4", "e.mp4"}
    # what is in that database, by SQL
    runs = _sql(postgres_server, db, "SELECT run_id, status FROM runs")
    assert len(runs) == 2 and {status for _, status in runs} == {"SUCCESS"}
    ranges = _sql(postgres_server, db, "SELECT value FROM run_tags WHERE key = %s ORDER BY value",
                  "dagster/asset_partition_range_start")
    assert [v for (v,) in ranges] == ["a.mp4", "d.mp4"]
    assert {k for (k,) in _sql(postgres_server, db, "SELECT partition FROM dynamic_partitions WHERE partitions_def_name = %s",
                                VIDEOS_PARTITION_NAME)} == keys
    materialised = _sql(postgres_server, db, "SELECT asset_key, partition, run_id FROM event_logs "
                                             "WHERE dagster_event_type = 'ASSET_MATERIALIZATION'")
    by_asset: dict[str, set[str]] = {}
    for asset_key, partition, run_id in materialised:
        by_asset.setdefault(dg.AssetKey.from_db_string(asset_key).to_user_string(), set()).add(partition)
        assert run_id in {r for r, _ in runs}
    for asset in ("video_clips", "aesthetic_scores", "clip_embeddings", "clip_captions", *LAYOUT_ASSETS):
        assert by_asset.get(asset) == keys, asset
    # and each video's documents are in the output
    assert {p.name for p in (out / "processed_videos").iterdir()} == {f"{k}.json" for k in keys}


@pytest.mark.parametrize("missing", ["DAGSTER_PG_HOST", "DAGSTER_PG_PASSWORD"])
def test_the_instance_names_a_missing_connection_variable(tmp_path, monkeypatch, missing):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    for name in ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"):
        monkeypatch.setenv(name, "5432" if name.endswith("PORT") else "x")
    monkeypatch.delenv(missing)
    with pytest.raises(Exception, match=missing):
        dg.DagsterInstance.from_config(str(home))


def test_a_dataset_binding_is_seen_from_every_instance_folder_of_the_database(tmp_path, postgres_server, monkeypatch):
    """Two machines (two instance folders) on one PostgreSQL instance: the second sees the first's
    input folder, although its own folder holds no record of it."""
    from curation_assets.partitions import DatasetMismatch, bind_dataset

    home, _db = postgres_home(tmp_path, postgres_server, monkeypatch)
    other = tmp_path / "other_home"
    other.mkdir()
    shutil.copyfile(DEPLOY / "dagster.yaml", other / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(home)) as first:
        bind_dataset(first, str(tmp_path / "videos_a"))
    with dg.DagsterInstance.from_config(str(other)) as second:
        with pytest.raises(DatasetMismatch, match="videos_a"):
            bind_dataset(second, str(tmp_path / "videos_b"))
        bind_dataset(second, str(tmp_path / "videos_a"))  # the same folder: fine
