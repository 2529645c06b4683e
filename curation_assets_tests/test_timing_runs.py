"""Issue 18 through the CLI's run (``curation-assets run``: Dagster assets, blocking layout checks
on by default): a dropped-frame VFR video passes its own checks, large start offsets give the
clips their frames hold, quickly, and an ``-ss -c copy`` cut (an edit-list file) is curated in
copy mode and in libx264 mode with ids that verify."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import av
import pytest

from curation_assets.cli import run_pipeline
from curation_assets.core import layout_checks as lc
from curation_assets.core import timing
from curation_assets.core.layout_read import verified_span
from curation_assets.core.options import PipelineOptions
from curation_assets.core.probe import presented_times

from .timing_inputs import make_copy_cut, make_dropped_vfr, make_offset, make_video_late, needs_ffmpeg
from .video_factory import make_video

pytestmark = pytest.mark.slow


@pytest.fixture()
def home(tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def _run(videos: Path, out: Path, home: Path, **kw) -> tuple[int, str]:
    options = PipelineOptions(input_path=str(videos), output_path=str(out), generate_embeddings="off", **kw)
    assert options.checks_block_downstream  # the default: a failing check fails the video
    report = io.StringIO()
    rc = run_pipeline(options, home=str(home), stream=report)
    return rc, report.getvalue()


def _metas(out: Path, source: Path) -> list[dict]:
    docs = [json.loads(p.read_text()) for p in (out / "metas" / "v0").glob("*.json")]
    return sorted((d for d in docs if d["source_video"] == str(source)), key=lambda d: d["duration_span"])


def _frames(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def _checks_pass(out: Path, rel: str, source: Path) -> None:
    outcomes = lc.check_video(str(out), rel, str(source))
    assert all(o.passed for o in outcomes.values()), {n: o.summary() for n, o in outcomes.items()}


def test_a_dropped_frame_vfr_video_passes_its_own_checks(tmp_path, home):
    videos, out = tmp_path / "in", tmp_path / "out"
    videos.mkdir()
    source = make_dropped_vfr(videos / "phone.mp4")
    rc, text = _run(videos, out, home, fixed_stride_split_duration=4.0)
    assert rc == 0, text
    _checks_pass(out, "phone.mp4", source)
    assert "variable frame rate" in lc.check_video(str(out), "phone.mp4", str(source))[lc.CLIP_FILES_DECODE].summary()
    times = presented_times(source)
    metas = _metas(out, source)
    assert [m["duration_span"] for m in metas] == [[0.0, 4.0], [4.0, 8.0], [8.0, 12.0]]
    for m in metas:
        start, end = m["duration_span"]
        held = _frames(out / "clips" / f"{m['span_uuid']}.mp4")
        assert held == timing.frames_in_span(times, start, end)  # the frames whose timestamps fall in it
    counts = [_frames(out / "clips" / f"{m['span_uuid']}.mp4") for m in metas]
    assert counts == [40, 80, 120]  # not 4 s x 20 fps (the average rate) each

    # The VFR promise does not excuse a wrong clip: the 120-frame clip's bytes under the 40-frame
    # clip's name (its document edited to the new size) fail the check.
    first, last = metas[0], metas[-1]
    data = (out / "clips" / f"{last['span_uuid']}.mp4").read_bytes()
    (out / "clips" / f"{first['span_uuid']}.mp4").write_bytes(data)
    meta_path = out / "metas" / "v0" / f"{first['span_uuid']}.json"
    (meta_path).write_text(json.dumps({**first, "num_bytes": len(data)}, indent=4))
    outcome = lc.check_video(str(out), "phone.mp4", str(source))[lc.CLIP_FILES_DECODE]
    assert not outcome.passed and "120 frames, its span [0.000, 4.000) s holds 40.0" in outcome.summary()


@needs_ffmpeg
def test_large_start_offsets_give_the_clips_their_frames_hold(tmp_path, home):
    videos, out = tmp_path / "in", tmp_path / "out"
    videos.mkdir()
    src = make_video(tmp_path / "src.mp4", seconds=4, fps=25, width=256, height=256, audio=True)
    names = {"offset 1e5.mkv": 100000, "offset 4e6.mkv": 4_000_000, "offset 1e5.webm": 100000,
             "offset 12345.678.mp4": 12345.678}
    for name, offset in names.items():
        make_offset(videos / name, offset, source=src)
    short = tmp_path / "short.mp4"
    make_offset(short, 0, source=src)
    make_video_late(videos / "video late.mp4", 100000, source=short)  # audio from 0, video from 100,000 s
    names["video late.mp4"] = 100000
    started = time.perf_counter()
    rc, text = _run(videos, out, home, fixed_stride_split_duration=1.0, fixed_stride_min_clip_length_s=0.5)
    elapsed = time.perf_counter() - started
    assert rc == 0, text
    assert elapsed < 120, elapsed  # 100,003 planned clips took minutes and 452 MB before
    for name in names:
        doc = json.loads((out / "processed_videos" / f"{name}.json").read_text())
        assert doc["duration"] == pytest.approx(3.0, abs=0.05) and doc["num_total_clips"] == 3, (name, doc)
        metas = _metas(out, videos / name)
        assert len(metas) == 3 and metas[-1]["duration_span"][1] <= 3.05
        assert all(m["valid"] and "errors" not in m for m in metas), (name, metas)
        total = sum(_frames(out / "clips" / f"{m['span_uuid']}.mp4") for m in metas)
        assert total == len(presented_times(videos / name)) == 75  # every frame it holds, once
        _checks_pass(out, name, videos / name)


@needs_ffmpeg
@pytest.mark.parametrize("encoder", ["copy", "libx264"])
def test_an_ss_copy_cut_is_curated_with_verified_ids(tmp_path, home, encoder):
    videos, out = tmp_path / "in", tmp_path / "out"
    videos.mkdir()
    cut = make_copy_cut(videos)
    rc, text = _run(videos, out, home, fixed_stride_split_duration=2.0, transcode_encoder=encoder)
    assert rc == 0, text
    _checks_pass(out, "cut.mp4", cut)
    metas = _metas(out, cut)
    times = presented_times(cut)
    assert len(metas) >= 4 and metas[0]["duration_span"][0] == 0.0
    for m in metas:
        start, end = m["duration_span"]
        assert 0 <= start < end <= float(times[-1]) + 0.05
        assert verified_span(m["span_uuid"], str(cut), m) is not None, m
        assert bool(m.get("snapped")) == (encoder == "copy")
        assert _frames(out / "clips" / f"{m['span_uuid']}.mp4") == timing.frames_in_span(times, start, end)
