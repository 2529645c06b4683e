"""Single-pass clip transcoding (curation_assets.core.transcode) on small real videos."""

from __future__ import annotations

import io
from fractions import Fraction

import av
import pytest

from curation_assets.core import clip_encoder
from curation_assets.core.model import Span
from curation_assets.core.transcode import (
    ClipOutput,
    SourceReadError,
    TranscodeError,
    TranscodeOptions,
    available_encoders,
    probe_clip,
    transcode_clips,
)
from curation_assets.core.windows import compute_windows
from curation_assets_tests.video_factory import make_video

FPS = 25


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("transcode")
    return {
        "audio": make_video(d / "audio.mp4", seconds=12, fps=FPS, audio=True),
        "silent": make_video(d / "silent.mp4", seconds=6, fps=FPS, audio=False),
        "tenbit": make_video(d / "tenbit.mp4", seconds=4, fps=FPS, audio=False, pix_fmt="yuv420p10le"),
    }


def span(start: float, end: float, fps: float = FPS) -> Span:
    return Span(start, end, int(start * fps), int(end * fps))


def expected_frames(start: float, end: float, n_source: int, fps: float = FPS) -> int:
    """Source frames with start <= t < end (the reference's -ss/-to selection on a CFR source)."""
    return sum(1 for i in range(n_source) if round(start * 1e6) <= round(i / fps * 1e6) < round(end * 1e6))


def inspect(data: bytes) -> dict:
    with av.open(io.BytesIO(data)) as c:
        v = c.streams.video[0]
        info = {
            "codec": v.codec_context.name,
            "pix_fmt": v.codec_context.pix_fmt,
            "has_audio": bool(c.streams.audio),
            "time_base": v.time_base,
            "rate": v.average_rate,
            "duration": float(v.duration * v.time_base) if v.duration else None,
        }
        frames = list(c.decode(video=0))
    info["frames"] = len(frames)
    info["first_pts_s"] = float(frames[0].pts * frames[0].time_base)
    info["size"] = (frames[0].width, frames[0].height)
    return info


def test_overlapping_spans_with_audio(videos):
    spans = [span(0, 5), span(2.5, 7.5), span(5, 10), span(10, 12), span(3.019, 4.021)]
    done: list[ClipOutput] = []
    outs = transcode_clips(videos["audio"], spans, on_clip_done=done.append)
    assert [o.span for o in outs] == spans
    assert sorted(id(o) for o in done) == sorted(id(o) for o in outs)
    for o in outs:
        assert o.error is None and o.data, o.error
        want = expected_frames(o.span.start_s, o.span.end_s, 12 * FPS)
        assert o.num_frames == want
        assert abs(o.num_frames - o.span.duration_s * FPS) <= 1
        assert o.windows == compute_windows(o.num_frames)
        assert o.previews == {}
        info = inspect(o.data)
        assert info["codec"] == "h264"
        assert info["pix_fmt"] == "yuv420p"
        assert info["has_audio"]
        assert info["frames"] == want
        assert info["first_pts_s"] == 0.0
        assert info["size"] == (320, 240)
        assert info["rate"] == FPS
        assert abs(info["duration"] - o.span.duration_s) <= 1 / FPS + 1e-6
        probe = probe_clip(o.data)
        assert (probe.width, probe.height, probe.video_codec) == (320, 240, "h264")
        assert probe.framerate == pytest.approx(25.0)
        assert abs(probe.num_frames - want) <= 1
        assert probe.num_bytes == len(o.data)


def test_audio_is_copied_and_rebased(videos):
    (o,) = transcode_clips(videos["audio"], [span(5, 10)])
    with av.open(io.BytesIO(o.data)) as c:
        a = c.streams.audio[0]
        assert a.codec_context.name == "aac"
        packets = [p for p in c.demux(a) if p.pts is not None]
    start = packets[0].pts * packets[0].time_base
    end = packets[-1].pts * packets[-1].time_base
    assert 0 <= start < Fraction(1, 20)
    assert 4.9 < end <= 5.0


def test_source_without_audio_and_file_like(videos):
    with open(videos["silent"], "rb") as f:
        outs = transcode_clips(f, [span(0, 2), span(2, 6)])
    for o in outs:
        assert o.error is None
        info = inspect(o.data)
        assert not info["has_audio"]
        assert info["frames"] == o.num_frames == round(o.span.duration_s * FPS)


def test_ten_bit_source_becomes_yuv420p(videos):
    with av.open(str(videos["tenbit"])) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p10le"
    (o,) = transcode_clips(videos["tenbit"], [span(1, 3)])
    assert o.error is None
    info = inspect(o.data)
    assert (info["codec"], info["pix_fmt"], info["frames"]) == ("h264", "yuv420p", 50)


def test_vp9_encoder(videos):
    assert "libvpx-vp9" in available_encoders()
    (o,) = transcode_clips(videos["silent"], [span(1, 2)], TranscodeOptions(encoder="libvpx-vp9"))
    assert o.error is None
    info = inspect(o.data)
    assert info["codec"] == "vp9" and info["frames"] == 25
    assert probe_clip(o.data).video_codec == "vp9"


def test_failing_clips_do_not_affect_the_others(videos, monkeypatch):
    real_open = clip_encoder.ClipMuxer._open

    def open_or_fail(self, frame):
        if frame.pts * frame.time_base == 2:  # the clip starting at 2 s
            raise RuntimeError("boom")
        return real_open(self, frame)

    monkeypatch.setattr(clip_encoder.ClipMuxer, "_open", open_or_fail)
    spans = [span(0, 2), span(2, 4), span(4, 6), span(7, 9), span(3, 3)]
    outs = transcode_clips(videos["silent"], spans)
    ok = [o for o in outs if o.error is None]
    assert [o.span.start_s for o in ok] == [0, 4]
    assert all(inspect(o.data)["frames"] == 50 for o in ok)
    failed = {o.span.start_s: o for o in outs if o.error}
    assert "boom" in failed[2].error and failed[2].data is None
    assert "no video frames" in failed[7].error and failed[7].num_frames == 0
    assert "empty span" in failed[3].error


def test_no_spans_and_only_empty_spans(videos):
    assert transcode_clips(videos["silent"], []) == []
    (o,) = transcode_clips(videos["silent"], [span(2, 2)])
    assert o.data is None and "empty span" in o.error


def test_unreadable_source_raises_naming_it(tmp_path):
    bad = tmp_path / "not_a_video.mp4"
    bad.write_bytes(b"this is not a video" * 100)
    with pytest.raises(SourceReadError, match="not_a_video.mp4"):
        transcode_clips(bad, [span(0, 1)])
    with pytest.raises(SourceReadError, match="missing.mp4"):
        transcode_clips(tmp_path / "missing.mp4", [span(0, 1)])


def test_unusable_encoder_is_a_clear_error(videos):
    usable = available_encoders()
    assert "libx264" in usable
    if "h264_nvenc" in usable:  # this test is about the refusal where NVENC is absent (CI, CPU nodes)
        pytest.skip("NVENC is usable on this machine")
    with pytest.raises(TranscodeError, match="h264_nvenc"):
        transcode_clips(videos["silent"], [span(0, 1)], TranscodeOptions(encoder="h264_nvenc"))


def test_clip_encoder_uses_libx264_defaults(videos):
    (o,) = transcode_clips(videos["silent"], [span(0, 1)], TranscodeOptions(encoder_threads=1))
    sei = o.data[o.data.find(b"x264 - core") :][:2000]
    assert b"crf=23.0" in sei and b"subme=7" in sei and b"rc_lookahead=40" in sei  # preset medium
