"""Cutting without re-encoding (``--transcode-encoder copy``, curation_assets.core.stream_copy).

Speed (at least 10x faster than re-encoding) is measured by ``benchmarks/pipeline_throughput.py``,
not here.
"""

from __future__ import annotations

import hashlib
import io
import json
from fractions import Fraction

import av
import pytest

from curation_assets.core import layout
from curation_assets.core.model import Span, clip_uuid
from curation_assets.core.motion import compute_motion_score
from curation_assets.core.options import PipelineOptions
from curation_assets.models.video import process_video
from curation_assets.core.previews import PreviewOptions
from curation_assets.core.split import fixed_stride_spans
from curation_assets.core.probe import probe_video
from curation_assets.core.stream_copy import copy_clips, snap_span
from curation_assets.core.windows import compute_windows
from curation_assets_tests.video_factory import make_video

FPS = 25
GOP = 50  # a keyframe every 2 s


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """12 s, 320x256 (motion needs 256 px), B-frames, keyframes exactly every 2 s, AAC audio."""
    path = tmp_path_factory.mktemp("stream_copy") / "gop2s.mp4"
    return make_video(path, seconds=12, fps=FPS, width=320, height=256, audio=True,
                      options={"preset": "veryfast", "x264-params": f"keyint={GOP}:min-keyint={GOP}:scenecut=0"})


def keyframe_times(path) -> list[float]:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        return sorted(float(p.pts * v.time_base) for p in c.demux(v) if p.is_keyframe and p.pts is not None)


def span(start: float, end: float) -> Span:
    return Span(start, end, int(start * FPS), int(end * FPS))


def decoded(data_or_path, start_s: float | None = None, end_s: float | None = None) -> list[tuple[float, str]]:
    """(time, md5 of the pixels) of every frame, optionally only those in [start_s, end_s)."""
    src = io.BytesIO(data_or_path) if isinstance(data_or_path, bytes) else str(data_or_path)
    out = []
    with av.open(src) as c:
        for f in c.decode(video=0):
            t = float(f.pts * f.time_base)
            if start_s is not None and not (start_s - 1e-6 <= t < end_s - 1e-6):
                continue
            out.append((t, hashlib.md5(f.to_ndarray(format="yuv420p").tobytes()).hexdigest()))
    return out


def test_source_has_the_gop_the_tests_assume(source):
    assert keyframe_times(source) == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    with av.open(str(source)) as c:
        assert any(p.dts is not None and p.pts is not None and p.dts < p.pts for p in c.demux(video=0))  # B-frames


def test_snap_span_rule():
    keys = [0.0, 2.0, 4.0, 6.0]
    assert snap_span(span(0.5, 3.0), keys, 7.0, FPS) == Span(0.0, 4.0, 0, 100, snapped=True)
    assert snap_span(span(2.0, 4.0), keys, 7.0, FPS) == Span(2.0, 4.0, 50, 100, snapped=True)  # on keyframes: kept
    assert snap_span(span(4.5, 6.5), keys, 7.0, FPS) == Span(4.0, 7.0, 100, 175, snapped=True)  # to the stream end


def test_spans_snap_to_keyframes_and_duplicates_merge(source):
    spans = [span(0, 5), span(5, 10), span(10, 12), span(0.5, 5.0)]  # the last snaps onto the first
    outs = copy_clips(str(source), spans)
    keys = keyframe_times(source)
    assert [o.span for o in outs] == [Span(0.0, 6.0, 0, 150, True), Span(4.0, 10.0, 100, 250, True),
                                      Span(10.0, 12.0, 250, 300, True)]
    for o in outs:
        assert o.error is None and o.data
        assert o.span == snap_span(o.requested[0], keys, 12.0, FPS)
    assert outs[0].requested == [span(0, 5), span(0.5, 5.0)]


def test_clips_decode_to_the_source_frames_and_last_the_snapped_span(source):
    outs = copy_clips(str(source), fixed_stride_spans(probe_video(str(source)), clip_len_s=5.0))
    assert len(outs) == 3
    for o in outs:
        frames = decoded(o.data)
        n = round((o.span.end_s - o.span.start_s) * FPS)
        assert len(frames) == n == o.num_frames == o.span.end_frame - o.span.start_frame
        assert o.windows == compute_windows(n)
        assert frames[0][0] == 0.0  # timestamps start at 0
        # not re-encoded: the very pixels of the source frames in the snapped span
        src = decoded(source, o.span.start_s, o.span.end_s)
        assert [h for _, h in frames] == [h for _, h in src]
        with av.open(io.BytesIO(o.data)) as c:
            v = c.streams.video[0]
            assert float(v.duration * v.time_base) == pytest.approx(o.span.end_s - o.span.start_s, abs=1e-6)
            assert v.average_rate == FPS and v.codec_context.name == "h264"
            first = next(c.demux(v))
            assert first.is_keyframe


def test_audio_is_copied_not_reencoded(source):
    (o,) = copy_clips(str(source), [span(4.5, 7.0)])  # -> [4, 8)
    assert o.span == Span(4.0, 8.0, 100, 200, True)
    with av.open(str(source)) as c:
        a = c.streams.audio[0]
        want = [bytes(p) for p in c.demux(a) if p.pts is not None and p.size and 4.0 <= float(p.pts * a.time_base) < 8.0]
    with av.open(io.BytesIO(o.data)) as c:
        a = c.streams.audio[0]
        assert a.codec_context.name == "aac"
        got = [bytes(p) for p in c.demux(a) if p.size]
        assert float(a.duration * a.time_base) == pytest.approx(4.0, abs=0.05)
    assert got == want


def test_previews_and_motion_come_from_one_decode_of_the_clip(source):
    outs = copy_clips(str(source), [span(0, 5), span(5, 12)], PreviewOptions(), motion=True)
    for o in outs:
        assert o.motion == compute_motion_score(o.data)  # the same numbers as decoding the clip again
        assert o.motion_error is None
        assert set(o.previews) == set(o.windows) and all(v[:4] == b"RIFF" for v in o.previews.values())
        assert o.preview_error is None


def test_span_past_the_end_is_a_clip_error(source):
    outs = copy_clips(str(source), [span(2, 4), span(20, 25)])
    ok, bad = outs
    assert ok.data and ok.error is None
    assert bad.data is None and "no video frames" in bad.error and bad.span == span(20, 25)


def test_pipeline_copy_mode_writes_snapped_spans_and_ids(source, tmp_path):
    options = PipelineOptions(input_path=str(source.parent), output_path=str(tmp_path / "out"),
                              transcode_encoder="copy", fixed_stride_split_duration=5.0, generate_previews=True,
                              generate_embeddings="off")
    url = str(source)
    result = process_video(url, source.name, lambda: open(url, "rb"), options)
    assert not result.errors
    assert [c.span for c in result.clips] == [Span(0.0, 6.0, 0, 150, True), Span(4.0, 10.0, 100, 250, True),
                                              Span(10.0, 12.0, 250, 300, True)]
    for clip in result.clips:
        assert clip.uuid == clip_uuid(url, clip.span.start_frame, clip.span.end_frame)
        assert not clip.errors, clip.errors
        assert clip.motion is not None and clip.probe.num_frames == clip.span.end_frame - clip.span.start_frame
        assert all(w.preview for w in clip.windows)
    files = layout.video_files(result, options.output_path, pipeline=result.record)
    meta = json.loads(files.files[layout.METAS][layout.meta_file(result.clips[1])])
    assert list(meta)[:4] == ["span_uuid", "source_video", "duration_span", "snapped"]
    assert meta["snapped"] is True and meta["duration_span"] == [4.0, 10.0]
    assert meta["span_uuid"] == str(clip_uuid(url, 100, 250))
    video = json.loads(files.files[layout.PROCESSED_VIDEOS][layout.video_file(source.name)])
    assert video["num_total_clips"] == 3 and video["pipeline"]["settings"]["transcode_encoder"] == "copy"


def test_reencoded_clips_are_not_marked_snapped(source, tmp_path):
    options = PipelineOptions(fixed_stride_split_duration=6.0, generate_previews=False, motion_filter="disable",
                              generate_embeddings="off")
    url = str(source)
    result = process_video(url, source.name, lambda: open(url, "rb"), options)
    files = layout.video_files(result, str(tmp_path))
    meta = json.loads(files.files[layout.METAS][layout.meta_file(result.clips[0])])
    assert "snapped" not in meta and not result.clips[0].span.snapped


def test_copy_is_a_cli_choice():
    from curation_assets.cli import build_parser, options_from_args

    args = build_parser().parse_args(["run", "--video-dir", "/in", "--output-path", "/out", "--transcode-encoder", "copy"])
    assert options_from_args(args).transcode_encoder == "copy"


def test_frame_rate_other_than_25(tmp_path):
    """29.97 fps with keyframes every 30 frames: snapped frames are whole frame positions."""
    path = make_video(tmp_path / "ntsc.mp4", seconds=4, fps=Fraction(30000, 1001), width=256, height=256,
                      audio=False, options={"x264-params": "keyint=30:min-keyint=30:scenecut=0"})
    fps = 30000 / 1001
    (o,) = copy_clips(str(path), [Span(1.5, 2.5, int(1.5 * fps), int(2.5 * fps))])
    assert (o.span.start_frame, o.span.end_frame) == (30, 90)
    assert o.span.start_s == pytest.approx(30 / fps) and o.span.end_s == pytest.approx(90 / fps)
    assert len(decoded(o.data)) == 60


def test_copy_mode_with_clip_bytes_spilled_to_disk(source, tmp_path):
    """As the video_clips asset runs it: each finished clip's bytes and previews go to files."""
    from curation_assets.core import work
    from curation_assets.core.model import SpilledBytes, as_bytes

    options = PipelineOptions(transcode_encoder="copy", fixed_stride_split_duration=5.0, generate_previews=True,
                              generate_embeddings="off")
    url = str(source)
    spill = work.VideoSpill(work.WorkArea(str(tmp_path / "work"), str(tmp_path / "out")), url, str(tmp_path / "out"))
    result = process_video(url, source.name, lambda: open(url, "rb"), options, spill=spill)
    assert len(result.clips) == 3 and not result.errors
    for clip in result.clips:
        assert isinstance(clip.encoded, SpilledBytes) and str(clip.uuid) in clip.encoded.path
        assert clip.motion == compute_motion_score(as_bytes(clip.encoded)) and not clip.errors
        assert all(isinstance(w.preview, SpilledBytes) for w in clip.windows)


@pytest.mark.parametrize("previews, motion", [(True, True), (True, False), (False, True)])
def test_decode_skips_unused_frames_with_identical_results(source, monkeypatch, previews, motion):
    """Copied clips are decoded only for previews (about 1 fps) and motion samples (one frame in
    round(fps/2)): non-reference frames neither uses are dropped undecoded, and the previews,
    motion score and frame count equal those of decoding every frame."""
    from curation_assets.core import stream_copy

    data = open(source, "rb").read()
    preview = PreviewOptions(target_fps=1.0, target_height=96) if previews else None
    duration = Fraction(1, FPS)
    full = stream_copy._decode_clip_pass(data, preview, motion, duration, None)
    skipped = []
    planned_frames = stream_copy._planned_frames

    def counting(*args, **kwargs):
        for index, t, frame in planned_frames(*args, **kwargs):
            if frame is None:
                skipped.append(index)
            yield index, t, frame

    monkeypatch.setattr(stream_copy, "_planned_frames", counting)
    planned = stream_copy._decode_clip(data, preview, motion, duration)
    assert skipped, "the B-frame source has non-reference frames to skip"
    assert planned[4] == full[4] and planned[1] is None and planned[3] is None
    assert planned[0] == full[0]  # byte-identical previews
    assert planned[2] == full[2]  # the same motion score
    if previews:
        assert len(full[0]) == len(compute_windows(full[4])) and full[4] == 12 * FPS


def test_decode_falls_back_to_every_frame_when_the_plan_does_not_hold(source, monkeypatch):
    from curation_assets.core import stream_copy

    data = open(source, "rb").read()
    preview = PreviewOptions(target_fps=1.0, target_height=96)
    full = stream_copy._decode_clip_pass(data, preview, True, Fraction(1, FPS), None)
    # a plan whose timestamps are not the decoder's: abandoned, then every frame decoded
    monkeypatch.setattr(stream_copy, "_display_pts", lambda data: list(range(1, 12 * FPS + 1)))
    assert stream_copy._decode_clip(data, preview, True, Fraction(1, FPS)) == full
