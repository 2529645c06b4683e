"""The manifest as a loader elsewhere meets it: "not scored" is null (the reference's -1.0 sentinel
stays in ``metas/v0`` only), and every location resolves from any working folder, also when
``package manifest`` was run with a relative output path."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.compute as pc
import pytest

from curation_assets.core.layout_read import read_video_layout
from curation_assets.packaging import manifest

from .packaging_fixtures import make_inputs, packaging_models, write_layout  # noqa: F401 - fixtures

# 192x144 is under the motion scorer's 256-pixel minimum side: the reference writes the sentinel.
SMALL = {"small.mp4": dict(seconds=2, width=192, height=144, audio=False)}
BIG = {"big.mp4": dict(seconds=2, width=320, height=256, audio=False)}


@pytest.fixture(scope="module")
def small_layout(tmp_path_factory, packaging_models) -> Path:
    inputs = make_inputs(tmp_path_factory.mktemp("small-in"), {**SMALL, **BIG})
    out = tmp_path_factory.mktemp("small-out") / "out"
    write_layout(inputs, str(out), packaging_models, rels=[*SMALL, *BIG], generate_captions=False,
                 enhance_captions=False)
    return out


def _metas(out: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (out / "metas" / "v0").glob("*.json")}


def test_a_clip_too_small_for_motion_is_null_in_the_manifest_and_the_sentinel_in_its_meta(small_layout):
    metas = _metas(small_layout)
    table = manifest.manifest_table(read_video_layout(str(small_layout), "small.mp4"))
    assert table.num_rows >= 1
    for row in table.to_pylist():
        meta = metas[row["clip_uuid"]]
        assert meta["motion_score"] == {"global_mean": -1.0, "per_patch_min_256": -1.0}  # the reference's
        assert "motion_decode" in meta["errors"]
        assert row["motion_global_mean"] is None and row["motion_per_patch_min_256"] is None
        assert {"key": "motion_decode", "message": meta["error_details"]["motion_decode"]} in row["errors"]
    scored = manifest.manifest_table(read_video_layout(str(small_layout), "big.mp4")).to_pylist()
    assert scored and all(r["motion_global_mean"] == metas[r["clip_uuid"]]["motion_score"]["global_mean"]
                          and r["motion_global_mean"] >= 0 for r in scored)


def test_an_average_over_the_manifest_leaves_the_unscored_out(small_layout, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(small_layout, out)
    for rel in (*SMALL, *BIG):
        manifest.write_fragment(str(out), read_video_layout(str(out), rel))
    table = manifest.read_manifest(str(out), columns=["rel_path", "motion_global_mean"])
    big = [r["motion_global_mean"] for r in table.to_pylist() if r["rel_path"] == "big.mp4"]
    assert pc.mean(table.column("motion_global_mean")).as_py() == pytest.approx(sum(big) / len(big))
    assert table.column("motion_global_mean").null_count == sum(1 for r in table.to_pylist()
                                                                 if r["rel_path"] == "small.mp4")


def test_motion_scores_rule():
    sentinel = {"global_mean": -1.0, "per_patch_min_256": -1.0}
    assert manifest.motion_scores({"motion_score": sentinel}) == (None, None)
    assert manifest.motion_scores({"motion_score": {"global_mean": 0.5, "per_patch_min_256": 0.1},
                                   "errors": ["motion_decode"]}) == (None, None)
    assert manifest.motion_scores({"motion_score": {"global_mean": 0.0, "per_patch_min_256": 0.0}}) == (0.0, 0.0)
    assert manifest.motion_scores({"motion_score": None}) == (None, None)
    assert manifest.motion_scores({}) == (None, None)


def _locations(row: dict) -> list[str]:
    urls = [row["clip_url"], row["meta_url"], row["embedding_url"]]
    urls += [w["preview_url"] for w in row["windows"]]
    return [u for u in urls if u is not None]


def test_locations_resolve_from_another_folder_after_a_relative_output_path(small_layout, tmp_path):
    """``package manifest --output-path out`` run in one folder, the manifest read from another."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(small_layout, work / "out")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                         os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "curation_assets.cli", "package", "manifest", "--output-path", "out"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    read = subprocess.run([sys.executable, "-c", (
        "import json, sys, pyarrow.parquet as pq\n"
        "t = pq.read_table(sys.argv[1])\n"
        "print(json.dumps(t.select(['clip_url', 'meta_url', 'embedding_url', 'windows']).to_pylist()))\n"),
        str(work / "out" / manifest.MANIFEST_DIR)], cwd=elsewhere, env=env, capture_output=True, text=True,
        timeout=120)
    assert read.returncode == 0, read.stderr
    rows = json.loads(read.stdout)
    assert rows and all(r["clip_url"] for r in rows)
    for row in rows:
        for url in _locations(row):
            assert os.path.isabs(url) and Path(url).is_file(), url
            assert Path(url).resolve().is_relative_to((work / "out").resolve())
    assert all(Path(r["meta_url"]).parent.name == "v0" for r in rows)


def test_s3_locations_are_the_urls(s3_bucket, packaging_inputs_small):
    out = f"{s3_bucket}/nulls-out"
    inputs, models = packaging_inputs_small
    write_layout(inputs, out, models, rels=list(SMALL), generate_captions=False, enhance_captions=False)
    table = manifest.manifest_table(read_video_layout(out, "small.mp4"))
    rows = table.to_pylist()
    assert rows and all(u.startswith(f"{s3_bucket}/nulls-out/") for r in rows for u in _locations(r))
    assert all(r["motion_global_mean"] is None for r in rows)


@pytest.fixture
def packaging_inputs_small(tmp_path, packaging_models):
    return make_inputs(tmp_path / "in", SMALL), packaging_models
