"""Dagster's own project tooling understands the repository: ``dg check defs`` passes and
``dg list defs`` lists every asset, check, job, sensor, schedule and resource of the code
location, the same as :func:`build_definitions` makes (``[tool.dg]`` in pyproject.toml, the
``defs/`` folder autoloaded by ``curation_assets.definitions``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from curation_assets.definitions import build_definitions, defs

ROOT = Path(__file__).resolve().parents[1]
DG = Path(sys.executable).with_name("dg")


def _dg(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DAGSTER_HOME": str(tmp_path), "DAGSTER_DISABLE_TELEMETRY": "1"}
    return subprocess.run([str(DG), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _names(repo) -> dict[str, set[str]]:
    return {
        "assets": {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()},
        "asset_checks": {f"{k.asset_key.to_user_string()}:{k.name}" for k in repo.asset_graph.asset_check_keys},
        "jobs": {j.name for j in repo.get_all_jobs() if not j.name.startswith("__")},
        "sensors": {s.name for s in repo.sensor_defs},
        "schedules": {s.name for s in repo.schedule_defs},
        "resources": set(repo.get_top_level_resources()),
    }


def test_autoloaded_folder_is_the_python_api():
    """``defs`` (the autoloaded ``defs/`` folder) and ``build_definitions()`` define the same things."""
    assert _names(defs.get_repository_def()) == _names(build_definitions().get_repository_def())


@pytest.mark.slow
def test_dg_check_and_list_defs(tmp_path):
    checked = _dg("check", "defs", tmp_path=tmp_path)
    assert checked.returncode == 0 and "All definitions loaded successfully" in checked.stdout + checked.stderr, \
        checked.stdout + checked.stderr
    listed = _dg("list", "defs", "--json", tmp_path=tmp_path)
    assert listed.returncode == 0, listed.stderr
    found = json.loads(listed.stdout)
    expected = _names(build_definitions().get_repository_def())
    assert {a["asset_key"] for a in found["assets"]} == expected["assets"]
    assert {c["key"] for c in found["asset_checks"]} == expected["asset_checks"]
    assert {j["name"] for j in found["jobs"]} == expected["jobs"]
    assert {s["name"] for s in found["sensors"]} == expected["sensors"]
    assert {s["name"] for s in found["schedules"]} == expected["schedules"]
    assert {r["name"] for r in found["resources"]} == expected["resources"]
    assert {"video_clips", "metas/v0", "processed_videos", "clip_manifest", "energon_metadata"} <= expected["assets"]
