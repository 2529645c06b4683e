"""Clip bytes spilled to the work area (``process_video(spill=...)``, what the ``video_clips`` asset
does) give exactly what in-memory bytes give, and the value passed between assets stays small.
Peak memory against video length is measured by ``benchmarks/memory_long_video.py``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curation_assets.core import layout, work
from curation_assets.core.model import SpilledBytes, as_bytes
from curation_assets.core.options import PipelineOptions
from curation_assets.models.video import process_video

from .video_factory import make_video


def test_spilled_clips_equal_in_memory_clips(tmp_path):
    video = make_video(tmp_path / "a.mp4", seconds=5, fps=25, width=256, height=256, audio=True)
    options = PipelineOptions(fixed_stride_split_duration=2.0, fixed_stride_min_clip_length_s=1.0,
                              generate_previews=True)

    def opener():
        return open(video, "rb")

    memory = process_video(str(video), "a.mp4", opener, options)
    area = work.WorkArea(str(tmp_path / "work"), str(tmp_path / "out"))
    spill = work.VideoSpill(area, str(video), str(tmp_path / "out"))
    spilled = process_video(str(video), "a.mp4", opener, options, spill=spill)
    assert len(spilled.clips) == len(memory.clips) == 3
    for a, b in zip(memory.clips, spilled.clips):
        assert isinstance(a.encoded, bytes) and isinstance(b.encoded, SpilledBytes)
        assert b.encoded.read() == a.encoded and len(b.encoded) == len(a.encoded)
        assert (b.probe, b.motion, b.errors) == (a.probe, a.motion, a.errors)
        assert [as_bytes(w.preview) for w in b.windows] == [w.preview for w in a.windows]
        assert all(isinstance(w.preview, SpilledBytes) for w in b.windows)
    # what the work IO manager stores: references, not megabytes
    stored = json.dumps(work.result_doc(spilled))
    assert len(stored) < 20_000 < len(json.dumps(work.result_doc(memory)))
    assert work.result_value(json.loads(stored)).clips[0].encoded == spilled.clips[0].encoded

    files_a = layout.video_files(memory, "/out").files
    files_b = layout.video_files(spilled, "/out").files
    assert {d: {r: as_bytes(x) for r, x in f.items()} for d, f in files_b.items()} == files_a

    Path(area.clip_url(str(video), spill.token, str(spilled.clips[0].uuid))).unlink()
    with pytest.raises(FileNotFoundError, match="materialize video_clips"):
        spilled.clips[0].encoded.read()
