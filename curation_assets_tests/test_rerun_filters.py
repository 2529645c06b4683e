"""A rerun whose filter settings change moves clips between clips/ and filtered_clips/: the files
of the previous run's side are removed as stale, never left beside the new ones."""

from __future__ import annotations

import io
import json

from curation_assets.cli import run_pipeline
from curation_assets.core.options import MAX_MOTION, PipelineOptions

from .layout_checks import all_files, check_layout
from .video_factory import make_video


def test_previously_filtered_clips_are_removed_when_a_rerun_passes_them_and_the_reverse(tmp_path):
    videos = tmp_path / "in"
    videos.mkdir()
    make_video(videos / "a.mp4", seconds=4, fps=25, width=256, height=256)
    out = tmp_path / "out"
    home = str(tmp_path / "home")
    # a motion threshold no clip reaches (the highest allowed; scores are |flow| / (width + height)):
    # every clip is low-motion, moved to filtered_clips/
    strict = PipelineOptions(input_path=str(videos), output_path=str(out), fixed_stride_split_duration=2.0,
                             generate_embeddings="off", generate_previews=False, motion_filter="enable",
                             motion_global_mean_threshold=MAX_MOTION)
    assert run_pipeline(strict, home=home, stream=io.StringIO()) == 0
    summary = check_layout(out, videos, ["a.mp4"])
    assert summary["a.mp4"]["passed"] == 0 and summary["a.mp4"]["filtered"] == 2
    filtered = {f for f in all_files(out) if f.startswith("filtered_clips/")}
    assert len(filtered) == 2 and not any(f.startswith("clips/") for f in all_files(out))
    chunk = json.loads((out / "processed_clip_chunks" / "a.mp4_0.json").read_text())
    assert chunk["num_clips_filtered_by_motion"] == 2  # by the threshold, not by a failed motion decode

    # the same video, the filter off: both clips pass; their old filtered_clips/ copies go
    assert run_pipeline(strict.replace(motion_filter="score-only"), home=home, stream=io.StringIO()) == 0
    summary = check_layout(out, videos, ["a.mp4"])
    assert summary["a.mp4"]["passed"] == 2 and summary["a.mp4"]["filtered"] == 0
    files = all_files(out)
    assert not [f for f in files if f.startswith("filtered_clips/")], sorted(files)
    passed = {f.removeprefix("clips/") for f in files if f.startswith("clips/")}
    assert passed == {f.removeprefix("filtered_clips/") for f in filtered}  # the same clip ids, now passed
    chunk = json.loads((out / "processed_clip_chunks" / "a.mp4_0.json").read_text())
    assert chunk["filtered_clips"] == [] and len(chunk["clips"]) == 2

    # and back: strict again, the passed copies go and the filtered ones return (moved, as a
    # rerun reuses the written clip bytes: not through the stale removal)
    assert run_pipeline(strict, home=home, stream=io.StringIO()) == 0
    files = all_files(out)
    assert not [f for f in files if f.startswith("clips/")], sorted(files)
    assert {f for f in files if f.startswith("filtered_clips/")} == filtered
