"""The run diff (issue 21) on real runs: the same small videos curated by the CLI's pipeline at a
2 s and a 3 s stride (one video left out of the second run) and with a motion threshold that
filters some clips; the diff's clip lists are checked against the two manifests read directly
with pyarrow, its settings against the strides, and a snapshot diff against the live one."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest

from curation_assets.cli import main, run_pipeline
from curation_assets.core.options import PipelineOptions
from curation_assets.packaging import manifest
from curation_assets.reports import diff as diffs
from curation_assets.reports import diff_text, snapshot

from .video_factory import make_video

pytestmark = pytest.mark.slow

VIDEOS = {"a.mp4": 6, "b.mp4": 2, "c.mp4": 4}  # seconds; b is one 2 s clip at either stride


def _curate(videos: Path, root: Path, name: str, limit: int | None = None, **settings) -> Path:
    out = root / name
    options = PipelineOptions(input_path=str(videos), output_path=str(out), fixed_stride_min_clip_length_s=1.0,
                              **settings)
    assert run_pipeline(options, home=str(root / f"home-{name}"), stream=io.StringIO(), video_limit=limit) == 0
    assert main(["package", "manifest", "--output-path", str(out)]) == 0
    return out


def _rows(out: Path) -> dict[str, dict]:
    """The manifest's rows by clip id, read with pyarrow alone."""
    table = pq.read_table(out / manifest.MANIFEST_DIR)
    return {r["clip_uuid"]: r for r in table.to_pylist()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("diff")
    videos = root / "in"
    videos.mkdir()
    for name, seconds in VIDEOS.items():
        make_video(videos / name, seconds=seconds, fps=25, width=256, height=256, audio=False)
    two = _curate(videos, root, "stride2", fixed_stride_split_duration=2.0)
    three = _curate(videos, root, "stride3", limit=2, fixed_stride_split_duration=3.0)  # c.mp4 left out
    scores = sorted(r["motion_global_mean"] for r in _rows(two).values())
    threshold = scores[len(scores) // 2]  # about half the clips fall under it
    motion = _curate(videos, root, "motion", fixed_stride_split_duration=2.0, motion_filter="enable",
                     motion_global_mean_threshold=threshold, motion_per_patch_min_256_threshold=0.0)
    return SimpleNamespace(videos=videos, two=two, three=three, motion=motion, threshold=threshold)


def _spans(clips) -> list[tuple[float, float]]:
    return [(c.start, c.end) for c in clips]


def test_a_stride_change_lists_exactly_the_clips_that_changed(runs):
    old, new = _rows(runs.two), _rows(runs.three)
    d = diffs.diff(str(runs.two), str(runs.three))
    by_video = {v.rel_path: v for v in d.videos_changed}
    # what the manifests say, per video present in both
    both = {r["rel_path"] for r in old.values()} & {r["rel_path"] for r in new.values()}
    for rel in both:
        gone = {u for u, r in old.items() if r["rel_path"] == rel} - new.keys()
        came = {u for u, r in new.items() if r["rel_path"] == rel} - old.keys()
        video = by_video.get(rel)
        if not gone and not came:
            assert video is None, rel
            continue
        assert {c.uuid for c in video.removed} == gone and {c.uuid for c in video.added} == came
        assert not video.changed
    assert set(by_video) == {"a.mp4"}  # b.mp4 is the same 0-2 s clip at either stride
    assert set(d.videos_removed) == {r["rel_path"] for r in old.values()} - {r["rel_path"] for r in new.values()} \
        == {"c.mp4"}
    assert {c.uuid for c in d.videos_removed["c.mp4"]} == {u for u, r in old.items() if r["rel_path"] == "c.mp4"}
    assert not d.videos_added and d.videos_unchanged == 1
    # a re-split reads by span
    (respan,) = by_video["a.mp4"].respans
    assert _spans(respan[0]) == [(0.0, 2.0), (2.0, 4.0), (4.0, 6.0)] and _spans(respan[1]) == [(0.0, 3.0), (3.0, 6.0)]
    # the settings: the stride (and the output folder, which two outputs always differ in)
    assert d.settings["fixed_stride_split_duration"] == ([2.0], [3.0])
    assert set(d.settings) == {"fixed_stride_split_duration", "output_path"}
    summary = d.summary()
    assert summary["videos_settings_changed"] == 2  # a.mp4 and b.mp4, at another stride
    assert summary["clips_removed"] == 3 + len(d.videos_removed["c.mp4"]) and summary["clips_added"] == 2
    text = diff_text.render(d)
    assert "fixed_stride_split_duration: 2.0 -> 3.0" in text
    assert "a.mp4: clips +2 -3" in text and "0.00-2.00 s, 2.00-4.00 s, 4.00-6.00 s -> 0.00-3.00 s, 3.00-6.00 s" in text
    assert d.scores["motion_global_mean"]["old"]["count"] == len(old)
    assert d.scores["motion_global_mean"]["new"]["count"] == len(new)


def test_a_filter_change_lists_the_clips_whose_pass_state_changed(runs):
    old, new = _rows(runs.two), _rows(runs.motion)
    assert old.keys() == new.keys()  # the same spans: the same ids
    flipped = {u for u in old if old[u]["passed"] != new[u]["passed"]}
    assert flipped  # the threshold filters some clips
    d = diffs.diff(str(runs.two), str(runs.motion))
    changed = {c.clip.uuid: c for v in d.videos_changed for c in v.changed}
    assert set(changed) == flipped
    for change in changed.values():
        assert change.fields == {"passed": (True, False), "filtered_by": (None, "motion")}
    assert not any(v.added or v.removed for v in d.videos_changed)
    assert d.settings["motion_filter"][1] == ["enable"] != d.settings["motion_filter"][0]
    assert d.settings["motion_global_mean_threshold"][1] == [runs.threshold]
    share = d.scores["passed"]
    assert share["old"]["share"] == 1.0 and share["new"]["passed"] == len(old) - len(flipped)


def test_identical_outputs_have_no_differences(runs, capsys):
    d = diffs.diff(str(runs.two), str(runs.two))
    assert d.identical and d.summary()["videos_unchanged"] == len(VIDEOS)
    assert main(["diff", str(runs.two), str(runs.two)]) == 0
    assert "no differences" in capsys.readouterr().out


def _without_origin(doc: dict) -> dict:
    for side in ("old", "new"):
        doc[side] = {k: v for k, v in doc[side].items() if k not in ("source", "created", "output_path")}
    return doc


def test_a_snapshot_diff_equals_the_live_diff(runs, capsys):
    first = snapshot.write_snapshot(str(runs.two))
    second = snapshot.write_snapshot(str(runs.three))
    assert snapshot.list_snapshots(str(runs.two)) == [first]
    assert Path(first).parent == runs.two / snapshot.SNAPSHOT_DIR
    live = diffs.diff(str(runs.two), str(runs.three)).to_json()
    snap = diffs.diff(first, second).to_json()
    assert snap["old"]["source"] == first and snap["old"]["created"]
    assert _without_origin(snap) == _without_origin(live)
    # mixed: a snapshot against a live output
    assert _without_origin(diffs.diff(first, str(runs.three)).to_json()) == _without_origin(live)
    # the CLI's snapshot command prints the file it wrote, which reads back as the live output
    assert main(["snapshot", "--output-path", str(runs.motion)]) == 0
    url = capsys.readouterr().out.strip()
    assert snapshot.list_snapshots(str(runs.motion)) == [url]
    assert diffs.diff(url, str(runs.motion)).identical


def test_the_json_document_has_the_documented_keys(runs, capsys):
    assert main(["diff", str(runs.two), str(runs.three), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert tuple(doc) == diffs.JSON_KEYS
    assert set(doc["summary"]) == {"videos_added", "videos_removed", "videos_changed", "videos_unchanged",
                                   "videos_settings_changed", "clips_added", "clips_removed", "clips_changed"}
    assert {"name": "fixed_stride_split_duration", "old": [2.0], "new": [3.0]} in doc["settings"]
    assert set(doc["scores"]) == {"motion_global_mean", "aesthetic_score", "passed"}
    assert set(doc["scores"]["motion_global_mean"]["old"]) == {"count", "mean", "p10", "p50", "p90"}
    assert set(doc["videos"]) == {"added", "removed", "changed"}
    (video,) = doc["videos"]["changed"]
    assert set(video) == {"rel_path", "clips_added", "clips_removed", "clips_changed", "respans"}
    assert video["respans"] == [{"old": [[0.0, 2.0], [2.0, 4.0], [4.0, 6.0]], "new": [[0.0, 3.0], [3.0, 6.0]]}]


def test_a_side_without_a_manifest_exits_2_naming_the_command(runs, capsys):
    assert main(["diff", str(runs.videos), str(runs.two)]) == 2
    err = capsys.readouterr().err
    assert str(runs.videos) in err and "curation-assets package manifest" in err
    assert main(["diff", str(runs.two), str(runs.two / snapshot.SNAPSHOT_DIR / "nope.parquet")]) == 2
    assert "nope.parquet" in capsys.readouterr().err


def test_snapshots_on_s3(runs, s3_bucket):
    """The manifest and video documents of a run in a bucket: the snapshot is written there, read
    back, and diffs as the local output does."""
    import fsspec

    out = f"{s3_bucket}/out"
    fs = fsspec.filesystem("s3")
    for folder in (manifest.MANIFEST_DIR, "processed_videos"):
        for path in (runs.two / folder).rglob("*"):
            if path.is_file():
                fs.pipe_file(f"{out}/{path.relative_to(runs.two).as_posix()}".removeprefix("s3://"), path.read_bytes())
    url = snapshot.write_snapshot(out)
    assert url.startswith(f"{out}/{snapshot.SNAPSHOT_DIR}/") and snapshot.list_snapshots(out) == [url]
    back = snapshot.read_snapshot(url)
    assert back.table.equals(snapshot.snapshot_of(str(runs.two)).table)
    assert back.settings == snapshot.snapshot_of(str(runs.two)).settings and not back.problems
    assert diffs.diff(url, str(runs.two)).identical
    assert _without_origin(diffs.diff(url, str(runs.three)).to_json()) == \
        _without_origin(diffs.diff(str(runs.two), str(runs.three)).to_json())
