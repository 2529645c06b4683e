"""The bad-input corpus (``bad_inputs.make_bad_inputs``) through the whole pipeline in ONE ranged
Dagster run: each file's outcome is written down below; the others complete; no partial file.

Outcomes (the README's table is this list):
- processed: clips written (maybe 0), per-clip errors in metas/v0 where a stage could not run;
- error: a processed_videos file with ``errors`` / ``error_details``, materialised (something could
  be read: the container and its stream), no clips;
- failed: as error, and the video's partition fails in Dagster (nothing could be read as video).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import av
import dagster as dg
import pytest

from curation_assets.cli import run_pipeline
from curation_assets.core.keys import key_from_rel_path
from curation_assets.core.options import PipelineOptions

from .bad_inputs import make_bad_inputs
from .layout_checks import all_files, check_layout


@dataclass(frozen=True)
class Expect:
    outcome: str  # "processed" | "error" | "failed"
    clips: int = 0
    video_error: tuple[str, str] | None = None  # (key, text the message must contain)
    clip_errors: dict[int, dict[str, str]] = field(default_factory=dict)  # clip index -> key -> text
    clip_size: tuple[int, int] | None = None  # (width, height) of the clips
    motion: bool = True  # clips have real motion scores (False: the reference's -1 sentinel, decode failed)


EXPECTED: dict[str, Expect] = {
    "zero bytes.mp4": Expect("failed", video_error=("metadata", "empty file (0 bytes)")),
    "random bytes.mp4": Expect("failed", video_error=("metadata", "not a readable video")),
    "no moov.mp4": Expect("failed", video_error=("metadata", "without its moov atom")),
    "audio only.mp4": Expect("failed", video_error=("metadata", "no video stream (audio only: aac)")),
    "still image png.mp4": Expect("error", video_error=("metadata", "incomplete")),
    "still image jpeg.mp4": Expect("error", video_error=("metadata", "a still image, not a video")),
    # the index promises 6 s, the data ends at 2.84 s: a whole clip, a short one, an empty one
    "truncated half.mp4": Expect("processed", 3, clip_errors={
        1: {"truncated": "0.84 s of video for the span [2.000, 4.000)"},
        2: {"transcode": "no video frames in span [4.000, 6.000) s (source ends at 2.840 s)", "buffer": "empty"},
    }),
    "one frame.mp4": Expect("processed", 0),  # 0.04 s: shorter than the 2 s minimum clip length
    "small 160x90.mp4": Expect("processed", 2, clip_errors={0: {"motion_decode": "resolution_too_small"},
                                                            1: {"motion_decode": "resolution_too_small"}},
                               clip_size=(160, 90), motion=False),
    # H.264 4:2:0 needs even sides: 321x241 becomes 320x240 (and 240 < 256: no motion score)
    "odd 321x241.mp4": Expect("processed", 2, clip_errors={0: {"motion_decode": "resolution_too_small"},
                                                           1: {"motion_decode": "resolution_too_small"}},
                              clip_size=(320, 240), motion=False),
    "10bit 420.mp4": Expect("processed", 2, clip_size=(256, 256)),
    "10bit 444.mp4": Expect("processed", 2, clip_size=(256, 256)),
    "vfr.mp4": Expect("processed", 2, clip_size=(256, 256)),  # 4.94 s: the last 0.94 s is under 2 s
    "rotated phone.mp4": Expect("processed", 1, clip_size=(320, 256)),  # rotation kept as display matrix
    # metadata from the last video stream (256x256, as the reference's probe); clips from the
    # first (ffmpeg's default pick, the largest)
    "two video streams.mp4": Expect("processed", 1, clip_size=(320, 256)),
    "names/spaces and, commas [1] (x)....mp4": Expect("processed", 1),
    "names/ünïcødé 视频 ....mp4": Expect("processed", 1),
    "nested/deeper/still deeper/clip.mp4": Expect("processed", 1),
}


def _clip_frames(path: Path) -> tuple[int, int]:
    with av.open(str(path)) as c:
        frames = list(c.decode(video=0))
        return len(frames), frames[0].rotation


@pytest.mark.slow
def test_bad_input_corpus_in_one_ranged_run(tmp_path):
    corpus = tmp_path / "corpus"
    cases = make_bad_inputs(corpus)
    assert set(cases) == set(EXPECTED)
    out = tmp_path / "out"
    home = tmp_path / "home"
    options = PipelineOptions(input_path=str(corpus), output_path=str(out), fixed_stride_split_duration=2.0,
                              generate_embeddings="off", generate_previews=True)
    report = io.StringIO()
    rc = run_pipeline(options, home=str(home), stream=report, videos_per_run=len(cases))
    text = report.getvalue()
    assert rc == 1, text

    # One ranged run covered every video.
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
        assert len(runs) == 1, [r.tags for r in runs]
        materialised = {r.asset_materialization.partition
                        for r in instance.fetch_materializations(dg.AssetKey("processed_videos"), limit=100).records}
        clips_materialised = {r.asset_materialization.partition
                              for r in instance.fetch_materializations(dg.AssetKey("clips"), limit=100).records}
    failed = {rel for rel, e in EXPECTED.items() if e.outcome == "failed"}
    assert materialised == {key_from_rel_path(rel) for rel in EXPECTED if rel not in failed}
    assert clips_materialised == materialised

    # No partial file, consistent documents for every video (the VFR clips hold more frames than
    # span x average rate, so frame counts are checked per case below instead).
    summary = check_layout(out, corpus, sorted(EXPECTED), decode_clips=False)
    files = all_files(out)
    metas = {f: json.loads((out / f).read_text()) for f in files if f.startswith("metas/v0/")}
    for rel, expect in EXPECTED.items():
        doc = summary[rel]["doc"]
        assert doc["num_total_clips"] == expect.clips, (rel, doc)
        if expect.video_error:
            key, needle = expect.video_error
            assert doc["errors"] == [key], (rel, doc.get("errors"))
            assert needle in doc["error_details"][key] and str(corpus / rel) in doc["error_details"][key], doc
            assert rel in text  # the CLI's summary names the video
        else:
            assert "errors" not in doc, (rel, doc.get("error_details"))
        if expect.outcome != "processed":
            assert expect.clips == 0
            continue
        own = sorted((m for m in metas.values() if m["source_video"] == doc["video"]), key=lambda m: m["duration_span"])
        assert len(own) == expect.clips
        for i, meta in enumerate(own):
            wanted = expect.clip_errors.get(i, {})
            assert set(meta.get("errors", [])) == set(wanted), (rel, i, meta.get("error_details"))
            for key, needle in wanted.items():
                assert needle in meta["error_details"][key], (rel, i, meta["error_details"])
            if "buffer" in wanted:
                assert not meta["valid"] and "width" not in meta
                continue
            assert meta["valid"] and meta["video_codec"] == "h264"
            if expect.clip_size:
                assert (meta["width"], meta["height"]) == expect.clip_size, (rel, meta)
            sentinel = {"global_mean": -1.0, "per_patch_min_256": -1.0}
            assert (meta["motion_score"] != sentinel) == expect.motion, (rel, meta)
            frames, rotation = _clip_frames(out / "clips" / f"{meta['span_uuid']}.mp4")
            assert frames == meta["num_frames"] or "truncated" in wanted, (rel, frames, meta["num_frames"])
            assert rotation == (90 if rel == "rotated phone.mp4" else 0)
            assert any(f.startswith(f"previews/{meta['span_uuid']}/") for f in files), rel

    two = summary["two video streams.mp4"]["doc"]
    assert (two["width"], two["height"]) == (256, 256)
    vfr = summary["vfr.mp4"]["doc"]
    assert vfr["duration"] == pytest.approx(4.94) and 22 < vfr["framerate"] < 23
    assert summary["10bit 444.mp4"]["doc"]["pixel_format"] == "yuv444p10le"
    assert summary["truncated half.mp4"]["doc"]["duration"] == 6.0
