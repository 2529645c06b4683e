"""The executor setting, the steps' placement tags, and a run's settings reaching the IO managers
(what makes steps on other workers find each other's values)."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from curation_assets.core.options import PipelineOptions, step_digest
from curation_assets.core.work import WorkArea
from curation_assets.definitions import CURATE_JOB_NAME, build_definitions, defs
from curation_assets.defs.shared.executors import executor_from_env
from curation_assets.defs.shared.tags import CELERY_QUEUE_TAG, GPU_QUEUE, K8S_CONFIG_TAG
from curation_assets.defs.shared.resources import CurationSettings

from .video_factory import make_video


def test_executor_setting_names_dagsters_engines_and_refuses_others():
    assert executor_from_env({}) is dg.in_process_executor  # one process per run by default
    assert executor_from_env({"CURATION_EXECUTOR": "in_process"}) is dg.in_process_executor
    assert executor_from_env({"CURATION_EXECUTOR": "multiprocess"}) is dg.multiprocess_executor
    with pytest.raises(ValueError, match="choose one of multiprocess, in_process, celery, k8s"):
        executor_from_env({"CURATION_EXECUTOR": "dask"})
    with pytest.raises(ValueError, match="DAGSTER_CELERY_BROKER_URL and DAGSTER_CELERY_BACKEND_URL"):
        executor_from_env({"CURATION_EXECUTOR": "celery"})
    celery = executor_from_env({"CURATION_EXECUTOR": "celery", "DAGSTER_CELERY_BROKER_URL": "redis://127.0.0.1:1/0",
                                "DAGSTER_CELERY_BACKEND_URL": "redis://127.0.0.1:1/0"})
    assert celery.name == "celery"
    assert executor_from_env({"CURATION_EXECUTOR": "k8s"}).name == "k8s"


def test_model_steps_go_to_the_gpu_queue_and_the_others_to_the_default_one():
    job = defs.resolve_job_def(CURATE_JOB_NAME)
    tags = {node.name: node.tags for node in job.graph.node_dict.values()}
    assert {name for name, t in tags.items() if t.get(CELERY_QUEUE_TAG) == GPU_QUEUE} == {"clip_embeddings",
                                                                                        "aesthetic_scores"}
    assert {name for name, t in tags.items() if CELERY_QUEUE_TAG in t} == {"clip_embeddings", "aesthetic_scores"}
    assert all(K8S_CONFIG_TAG in t for t in tags.values())


def test_a_runs_settings_config_reaches_the_io_managers(tmp_path: Path):
    videos = tmp_path / "in"
    videos.mkdir()
    make_video(videos / "a.mp4", seconds=2, fps=25, width=128, height=128)
    code_location = PipelineOptions(input_path=str(videos), output_path=str(tmp_path / "default_out"),
                                    generate_embeddings="off", generate_previews=False)
    job = build_definitions(CurationSettings.from_options(code_location)).resolve_job_def(CURATE_JOB_NAME)
    work = tmp_path / "run_work"
    # only what differs: the other fields keep the code location's values (no previews here)
    run_config = {"resources": {"settings": {"config": {"output_path": str(tmp_path / "run_out"),
                                                        "work_path": str(work)}}}}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("videos", ["a.mp4"])
        assert job.execute_in_process(run_config=run_config, instance=instance, partition_key="a.mp4").success
    source = str(videos / "a.mp4")
    run_options = code_location.replace(output_path=str(tmp_path / "run_out"), work_path=str(work))
    stored = WorkArea(str(work), run_options.output_path).load(source, "clip_embeddings", step_digest(run_options, "clip_embeddings"))
    assert stored is not None and json.loads(json.dumps(stored))["kind"] == "annotations"
    assert (tmp_path / "run_out" / "processed_videos" / "a.mp4.json").exists()
    assert not (tmp_path / "default_out").exists()
    assert not (tmp_path / "run_out" / "previews").exists() and (tmp_path / "run_out" / "clips").is_dir()
