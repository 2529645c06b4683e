"""Window previews: fps-filter frame picking, animated WebP, previews off the single decode."""

from __future__ import annotations

import io
from fractions import Fraction

import av
import av.filter
import numpy as np
import pytest
from PIL import Image

from curation_assets.core.model import Span
from curation_assets.core.previews import (
    PreviewOptions,
    encode_webp,
    fps_filter_select,
    preview_size,
)
from curation_assets.core.transcode import TranscodeOptions, transcode_clips
from curation_assets_tests.video_factory import frame_rgb, make_video


def libavfilter_fps_select(n: int, rate: Fraction, fps: float) -> list[int]:
    """Which of n CFR frames FFmpeg's own ``fps`` filter outputs (via a PyAV filter graph)."""
    graph = av.filter.Graph()
    src = graph.add_buffer(width=16, height=16, format="gray", time_base=1 / rate)
    flt = graph.add("fps", f"fps={fps}")
    sink = graph.add("buffersink")
    src.link_to(flt)
    flt.link_to(sink)
    graph.configure()
    out: list[int] = []

    def drain():
        while True:
            try:
                frame = graph.pull()
            except (av.BlockingIOError, av.EOFError):
                return
            a = frame.to_ndarray()
            out.append(int(a[0, 0]) + 256 * int(a[0, 1]))

    for i in range(n):
        arr = np.zeros((16, 16), np.uint8)
        arr[0, 0], arr[0, 1] = i % 256, i // 256
        frame = av.VideoFrame.from_ndarray(arr, format="gray")
        frame.pts, frame.time_base, frame.duration = i, 1 / rate, 1
        graph.push(frame)
        drain()
    graph.push(None)
    drain()
    return out


@pytest.mark.parametrize(
    "rate,n,fps",
    [
        (Fraction(25), 250, 1.0),
        (Fraction(25), 300, 1.0),
        (Fraction(30000, 1001), 256, 1.0),
        (Fraction(50), 344, 1.0),
        (Fraction(30), 16, 1.0),
        (Fraction(30), 14, 1.0),  # no frame at all: the caller falls back to the first
        (Fraction(25), 250, 2.0),
        (Fraction(10), 50, 15.0),  # slower source: frames repeat
        (Fraction(60), 600, 1.5),
    ],
)
def test_fps_select_matches_libavfilter(rate, n, fps):
    times = [Fraction(i) / rate for i in range(n)]
    assert fps_filter_select(times, fps, times[-1] + 1 / rate) == libavfilter_fps_select(n, rate, fps)


def test_preview_size_keeps_aspect_with_even_width():
    assert preview_size(1280, 720, 240) == (426, 240)
    assert preview_size(320, 240, 240) == (320, 240)
    assert preview_size(1920, 1080, 120) == (214, 120)
    assert preview_size(720, 1280, 240)[0] % 2 == 0


def test_encode_webp_is_an_animated_looping_webp():
    frames = [frame_rgb(i * 25, 160, 120) for i in range(5)]
    data = encode_webp(frames, fps=1.0)
    im = Image.open(io.BytesIO(data))
    assert im.format == "WEBP" and im.is_animated
    assert im.n_frames == 5 and im.size == (160, 120)
    assert im.info["loop"] == 0
    for k in range(5):
        im.seek(k)
        im.load()
        assert im.info["duration"] == 1000
        diff = np.abs(np.asarray(im.convert("RGB"), dtype=int) - frames[k]).mean()
        assert diff < 12  # lossy at quality 50, but the same picture
    # PIL images work too, and a different rate
    pil = [Image.fromarray(f) for f in frames[:2]]
    im2 = Image.open(io.BytesIO(encode_webp(pil, fps=2.0)))
    im2.load()
    assert im2.n_frames == 2 and im2.info["duration"] == 500


def test_encode_webp_rejects_bad_input():
    with pytest.raises(ValueError, match="encode_webp needs at least one frame"):
        encode_webp([], fps=1.0)
    with pytest.raises(ValueError, match=r"expected uint8 HxWx3 frames, got uint8 \(4, 4\)"):
        encode_webp([np.zeros((4, 4), np.uint8)], fps=1.0)


def webp_info(data: bytes) -> tuple[int, tuple[int, int], int]:
    im = Image.open(io.BytesIO(data))
    return im.n_frames, im.size, im.info.get("loop")


def test_previews_come_off_the_single_decode(tmp_path):
    src = make_video(tmp_path / "p.mp4", seconds=12, fps=25, audio=False)
    spans = [Span(0, 12, 0, 300), Span(0, 5, 0, 125), Span(6, 6.2, 150, 155)]
    outs = transcode_clips(src, spans, TranscodeOptions(preview=PreviewOptions()))
    by_start = {(o.span.start_s, o.span.end_s): o for o in outs}
    whole = by_start[(0, 12)]
    assert whole.error is None and whole.preview_error is None
    assert whole.windows == [(0, 299)]  # 300 frames: the 44-frame remainder joins the window
    assert webp_info(whole.previews[(0, 299)]) == (12, (320, 240), 0)
    assert webp_info(by_start[(0, 5)].previews[(0, 124)]) == (5, (320, 240), 0)
    short = by_start[(6, 6.2)]
    assert short.windows == [(0, 4)]
    assert webp_info(short.previews[(0, 4)])[0] == 1  # 0.2 s: fps picks nothing, keep the first frame


def test_preview_windows_and_frames_match_reference_picks(tmp_path):
    # 50 fps, 12 s = 600 frames: windows [0, 255] and [256, 599] (the 88-frame rest is merged)
    src = make_video(tmp_path / "w.mp4", width=160, height=120, seconds=12, fps=50, audio=False)
    opts = PreviewOptions(target_fps=1.0, target_height=60)
    (o,) = transcode_clips(src, [Span(0, 12, 0, 600)], TranscodeOptions(preview=opts))
    assert o.windows == [(0, 255), (256, 599)]
    assert sorted(o.previews) == o.windows
    first = Image.open(io.BytesIO(o.previews[(0, 255)]))
    second = Image.open(io.BytesIO(o.previews[(256, 599)]))
    assert (first.n_frames, first.size) == (5, (80, 60))  # 5.12 s -> round() = 5 frames
    assert (second.n_frames, second.size) == (7, (80, 60))  # 6.88 s -> 7 frames
    # the second window's first pick is clip frame 256 + 24 (last frame before 0.5 s)
    want_indices = [256 + j for j in libavfilter_fps_select(344, Fraction(50), 1.0)]
    second.seek(0)
    got = np.asarray(second.convert("RGB"), dtype=int)
    expected = np.asarray(Image.fromarray(frame_rgb(want_indices[0], 160, 120, 50.0)).resize((80, 60)), dtype=int)
    neighbour = np.asarray(Image.fromarray(frame_rgb(want_indices[0] + 10, 160, 120, 50.0)).resize((80, 60)), dtype=int)
    assert np.abs(got - expected).mean() < np.abs(got - neighbour).mean()
