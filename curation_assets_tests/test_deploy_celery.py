"""Celery beyond one machine: Redis as the broker, two workers in their own processes and working
folders (no DAGSTER_HOME), the model steps on the `gpu` queue, a batched run launched by the
`dagster` CLI with CURATION_EXECUTOR=celery on the PostgreSQL instance. Its output equals the
default executor's, with the work area on the S3 server and in the output's own area, and the
work area keeps no clip or preview bytes of the finished videos."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from curation_assets.cli import run_pipeline
from curation_assets.core.options import PipelineOptions, location_settings
from curation_assets.defs.shared.executors import BACKEND_ENV, BROKER_ENV, EXECUTOR_ENV
from curation_assets.defs.shared.tags import GPU_QUEUE

from .layout_checks import WORK_FILE, all_files, work_files
from .model_fixtures import build_cosmos_standin
from .test_deploy_postgres import postgres_home
from .video_factory import make_video

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_QUEUE = "dagster"  # dagster-celery's default queue: every step without a queue tag
GPU_STEPS = {"aesthetic_scores", "clip_embeddings"}
CPU_STEPS = {"video_clips", "clip_captions", "clip_writer"}
KEYS = ("a.mp4", "b.mp4")

pytestmark = pytest.mark.slow


def _start_worker(name: str, queue: str, folder: Path, env: dict[str, str]) -> tuple[subprocess.Popen, Path]:
    folder.mkdir(parents=True)
    log = folder / "worker.log"
    cmd = [sys.executable, "-m", "celery", "-A", "dagster_celery.app", "worker", "-Q", queue, "-n", f"{name}@%h",
           "--pool=solo", "--loglevel=INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    with open(log, "wb") as f:
        proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=f, stderr=subprocess.STDOUT)
    return proc, log


def _wait_ready(workers: list[tuple[subprocess.Popen, Path]], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    pending = list(workers)
    while pending and time.monotonic() < deadline:
        for proc, log in list(pending):
            assert proc.poll() is None, f"worker exited: {log.read_text(errors='replace')[-3000:]}"
            if " ready." in log.read_text(errors="replace"):
                pending.remove((proc, log))
        time.sleep(0.2)
    assert not pending, f"workers not ready: {[str(log) for _, log in pending]}"


def _run_config(options: PipelineOptions) -> dict:
    """The settings travel with the run (stored in PostgreSQL), not with each worker's environment."""
    fixed = set(location_settings())  # the code location's own settings: a run's config may not set them
    values = {k: list(v) if isinstance(v, tuple) else v for k, v in options.values().items() if k not in fixed}
    return {"resources": {"settings": {"config": values}}}


def _contents(out: Path) -> dict[str, bytes]:
    return {f: (out / f).read_bytes() for f in all_files(out)}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    build_cosmos_standin(root, "224p")
    return root


def test_celery_workers_split_by_queue_give_the_default_executors_output(
        tmp_path, postgres_server, redis_server, s3_bucket, s3_server, model_dir, monkeypatch):
    videos, out = tmp_path / "in", tmp_path / "out"
    videos.mkdir()
    for i, key in enumerate(KEYS):
        make_video(videos / key, seconds=3 + i, fps=25, width=160, height=128, audio=i == 0)
    options = PipelineOptions(input_path=str(videos), output_path=str(out), fixed_stride_split_duration=2.0,
                              fixed_stride_min_clip_length_s=1.0, generate_embeddings="on", model_dir=str(model_dir))

    # the single-machine default (the CLI, Dagster's default executor, its own SQLite instance)
    assert run_pipeline(options, home=str(tmp_path / "default_home"), stream=io.StringIO()) == 0
    expected = _contents(out)
    assert any(f.startswith("ce1_embd/") for f in expected) and any(f.startswith("previews/") for f in expected)
    shutil.move(out, tmp_path / "out_default")

    home, _db = postgres_home(tmp_path, postgres_server, monkeypatch)
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("videos", list(KEYS))
    base = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME" and not k.startswith("CURATION_")}
    base.update({"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "deploy" / "celery")]),
                 EXECUTOR_ENV: "celery", BROKER_ENV: redis_server.url, BACKEND_ENV: redis_server.url})
    workers = {"cpu": _start_worker("cpu", DEFAULT_QUEUE, tmp_path / "worker-cpu", base),
               "gpu": _start_worker("gpu", GPU_QUEUE, tmp_path / "worker-gpu", base)}
    try:
        _wait_ready(list(workers.values()))
        for work_path in (f"{s3_bucket}/work", ""):
            config = tmp_path / f"run-{'s3' if work_path else 'local'}.yaml"
            # YAML's own float syntax (a JSON 1e-06 would read back as text)
            config.write_text(yaml.safe_dump(_run_config(options.replace(work_path=work_path))))
            tags = {"dagster/asset_partition_range_start": KEYS[0], "dagster/asset_partition_range_end": KEYS[-1]}
            launched = subprocess.run(
                [sys.executable, "-m", "dagster", "job", "execute", "-m", "curation_assets.definitions", "-a", "defs",
                 "-j", "curate_videos", "-c", str(config), "--tags", json.dumps(tags)],
                cwd=tmp_path, env={**base, "DAGSTER_HOME": str(home)}, capture_output=True, text=True, timeout=900)
            assert launched.returncode == 0, launched.stdout[-4000:] + launched.stderr[-4000:]

            with dg.DagsterInstance.get() as instance:
                run = instance.get_runs(limit=1)[0]
                assert run.status == dg.DagsterRunStatus.SUCCESS
                ran_on: dict[str, str] = {}
                step_pids: dict[str, int] = {}
                for entry in instance.all_logs(run.run_id):
                    event = entry.dagster_event
                    if event is None or not event.step_key:
                        continue
                    if event.event_type == dg.DagsterEventType.ENGINE_EVENT and "celery worker" in entry.message:
                        ran_on[event.step_key] = event.event_specific_data.metadata["Celery worker"].value
                    if event.event_type == dg.DagsterEventType.STEP_START:
                        step_pids[event.step_key] = event.pid
            assert set(ran_on) == GPU_STEPS | CPU_STEPS
            assert {s for s, w in ran_on.items() if w.startswith("gpu@")} == GPU_STEPS, ran_on
            assert {s for s, w in ran_on.items() if w.startswith("cpu@")} == CPU_STEPS, ran_on
            # each step ran in its worker's own process (solo pool: the worker process itself)
            assert {s for s, pid in step_pids.items() if pid == workers["gpu"][0].pid} == GPU_STEPS, step_pids
            assert {s for s, pid in step_pids.items() if pid == workers["cpu"][0].pid} == CPU_STEPS, step_pids

            assert _contents(out) == expected
            if work_path:  # the S3 work area: the steps' JSON values, no clip or preview bytes
                client = s3_server.client()
                bucket = s3_bucket.removeprefix("s3://")
                listed = client.list_objects_v2(Bucket=bucket, Prefix="work/").get("Contents", [])
                names = [o["Key"].removeprefix("work/") for o in listed]
                assert names and all(WORK_FILE.match(f"_work/{n}") for n in names), names
            else:
                left = work_files(out)
                assert left and all(WORK_FILE.match(f) for f in left), left
            shutil.move(out, tmp_path / f"out_celery_{'s3' if work_path else 'local'}")
    finally:
        for proc, _log in workers.values():
            proc.terminate()
        for proc, _log in workers.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
