"""Unattended curation end to end: ``dagster-webserver`` and ``dagster-daemon`` on a temporary
``DAGSTER_HOME``, the upload sensor turned on through GraphQL, a video dropped into the watched
folder, the daemon's run materialising it (the layout on disk and every asset check passed for its
partition), and headless Chromium showing the video's partition page with its clip table (the
screenshot is kept as a test artifact)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import requests

from curation_assets.core import layout_checks as lc
from curation_assets.defs.curation.checks import CHECK_ASSETS
from curation_assets.defs.automation.sensors import UPLOAD_SENSOR_NAME
from curation_assets.defs.shared.tags import REASON_TAG, REQUESTED_BY_TAG

from .browser import Chromium, chromium_path
from .layout_checks import check_layout
from .servers import free_port, wait_for_webserver
from .test_webserver import LOCATION, REPOSITORY, ROOT, graphql
from .video_factory import make_video

pytestmark = pytest.mark.slow

ARTIFACTS = Path(os.environ.get("CURATION_TEST_ARTIFACTS", ROOT / "test-artifacts"))
VIDEO = "drop zone/first upload.mp4"
KEY = "drop%20zone/first%20upload.mp4"



@pytest.fixture()
def dagster_services(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    # the default instance: SQLite, the queued run coordinator (the daemon launches runs)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dg.DagsterInstance.from_config(str(home)):
        pass  # the storage is created once, before the webserver and the daemon would race to create it
    videos, out = tmp_path / "videos", tmp_path / "out"
    videos.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(home), "CURATION_INPUT_PATH": str(videos),
           "CURATION_OUTPUT_PATH": str(out), "CURATION_FIXED_STRIDE_SPLIT_DURATION": "2",
           "CURATION_WATCH_INTERVAL_S": "5"}
    port = free_port()
    logs = {name: tmp_path / f"{name}.log" for name in ("webserver", "daemon")}
    procs = []
    try:
        for name, args in (("webserver", [sys.executable, "-m", "dagster_webserver", "-w", str(ROOT / "workspace.yaml"),
                                          "-h", "127.0.0.1", "-p", str(port)]),
                           ("daemon", [str(Path(sys.executable).with_name("dagster-daemon")), "run",
                                       "-w", str(ROOT / "workspace.yaml")])):
            procs.append(subprocess.Popen(args, cwd=ROOT, env=env, stdout=logs[name].open("wb"),
                                          stderr=subprocess.STDOUT))
        url = f"http://127.0.0.1:{port}"
        wait_for_webserver(url, procs[0], logs["webserver"], poll_s=1)
        yield {"url": url, "videos": videos, "out": out, "home": home, "logs": logs, "procs": procs}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _start_sensor(url: str) -> None:
    started = graphql(url, """mutation($sel: SensorSelector!) { startSensor(sensorSelector: $sel) {
        __typename ... on Sensor { sensorState { status } } ... on PythonError { message }
        ... on UnauthorizedError { message } } }""",
                      {"sel": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY,
                               "sensorName": UPLOAD_SENSOR_NAME}})["startSensor"]
    assert started["__typename"] == "Sensor" and started["sensorState"]["status"] == "RUNNING", started


def _wait_for_run(home: Path, logs: dict, timeout_s: float = 420) -> dg.DagsterRun:
    deadline = time.time() + timeout_s
    with dg.DagsterInstance.from_config(str(home)) as instance:
        while time.time() < deadline:
            runs = instance.get_runs()
            done = [r for r in runs if r.status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE)]
            if done:
                return done[0]
            time.sleep(2)
    pytest.fail("no run finished; daemon log:\n" + logs["daemon"].read_text(errors="replace")[-4000:])


def test_a_dropped_video_is_curated_checked_and_shown(dagster_services, tmp_path):
    s = dagster_services
    _start_sensor(s["url"])
    # an upload as a careful client makes it: written under a hidden name, renamed when complete
    target = s["videos"] / VIDEO
    target.parent.mkdir(parents=True)
    partial = target.parent / ".first upload.part.mp4"
    make_video(partial, seconds=5, fps=25, width=256, height=256, audio=True)
    os.rename(partial, target)
    dropped = time.time()

    run = _wait_for_run(s["home"], s["logs"])
    waited = time.time() - dropped
    assert run.status == dg.DagsterRunStatus.SUCCESS, run.run_id
    assert run.tags[REQUESTED_BY_TAG] == UPLOAD_SENSOR_NAME and run.tags[REASON_TAG] == "new"
    assert run.tags["dagster/partition"] == KEY and run.job_name == "curate_videos"

    summary = check_layout(s["out"], s["videos"], [VIDEO])
    assert summary[VIDEO]["passed"] == 2  # 5 s in 2 s clips: 0-2, 2-4 (the last 1 s is under the 2 s minimum)
    with dg.DagsterInstance.from_config(str(s["home"])) as instance:
        assert instance.get_dynamic_partitions("videos") == [KEY]
        for name, asset in CHECK_ASSETS.items():
            (record,) = [r for r in instance.event_log_storage.get_asset_check_execution_history(
                dg.AssetCheckKey(asset, name), limit=10) if r.partition == KEY]
            assert record.status.value == "SUCCEEDED", (name, record)
        (mat,) = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("clips"), asset_partitions=[KEY]), limit=1).records
        clip_ids = [r.data["clip"] for r in mat.asset_materialization.metadata["clip_table"].records]
    assert len(clip_ids) == 2 and set(lc.CHECKS) == set(CHECK_ASSETS)
    print(f"dropped -> materialised and checked in {waited:.0f} s")

    if chromium_path() is None:
        pytest.fail("chromium is not installed: apt-get install -y chromium (make test installs it)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with Chromium(tmp_path) as browser:
        browser.open(f"{s['url']}/assets/clips?view=partitions&partition={requests.utils.quote(KEY, safe='')}")
        # Dagster's new-user dialog covers every page of a fresh browser while the instance leaves it
        # on (no `nux: enabled: false` in the dagster.yaml above): it appears, and Skip closes it
        dialog = "document.body && document.body.innerText.includes('Join the Dagster community')"
        assert browser.wait_for(dialog, 60), f"no new-user dialog:\n{browser.text()[:3000]}"
        assert browser.click_text("Skip"), "the new-user dialog has no Skip button"
        assert browser.wait_for(f"!({dialog})", 10), "the new-user dialog is still open after Skip"
        found = browser.wait_for(
            "document.body && " + " && ".join(f"document.body.innerText.includes('{u}')" for u in clip_ids), 90)
        shot = browser.screenshot(ARTIFACTS / "partition_page_clip_table.png")
        (ARTIFACTS / "partition_page.html").write_text(browser.html())
        text = browser.text()
    assert found, f"the clip table did not render (screenshot: {shot}):\n{text[:3000]}"
    for column in ("clip_table", "start_s", "status", "motion", "caption"):
        assert column in text, column
    assert "Join the Dagster community" not in text
    assert shot.stat().st_size > 20_000
    print(f"screenshot: {shot}")
