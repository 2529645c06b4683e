"""The timing model (core/timing.py) and what rests on it in core: the reference's two
seconds-to-frame rules and their inverse, the VFR span promise, a container's claimed duration
checked against the frames its stream covers, and copy-mode cuts of sources whose first GOP starts
before their first shown frame (issue 18). Runs through the CLI are in test_timing_runs.py."""

from __future__ import annotations

import hashlib
import io
import time
from fractions import Fraction

import av
import pytest

from curation_assets.core import timing
from curation_assets.core.layout_read import verified_span
from curation_assets.core.model import Span, clip_uuid
from curation_assets.core.probe import covered_seconds, presented_times, probe_video
from curation_assets.core.split import fixed_stride_spans
from curation_assets.core.scenes import scenes_to_spans
from curation_assets.core.stream_copy import copy_clips

from .timing_inputs import make_copy_cut, make_dropped_vfr, make_offset, needs_ffmpeg
from .video_factory import make_video


# ------------------------------------------------------------------------------- pure arithmetic


def test_the_two_reference_rules_and_where_they_differ():
    assert timing.frame_index(1.999, 25) == 49 and timing.nearest_frame(1.999, 25) == 50
    # a scene's frame back to seconds and forth: truncation can land one frame early, rounding not
    fps = 30000 / 1001
    early = [i for i in range(1, 5000) if timing.frame_index(timing.frame_time(i, fps), fps) != i]
    assert early, "float error makes int() miss some scene frames at 29.97 fps"
    assert all(timing.nearest_frame(timing.frame_time(i, fps), fps) == i for i in range(5000))


@pytest.mark.parametrize("fps", [25.0, 30000 / 1001, 24000 / 1001, 59.94, 12.5, 20.0])
def test_span_frames_of_recovers_every_rule_the_writers_use(fps):
    for i in range(0, 3000, 7):
        assert i in timing.span_frames_of(timing.frame_time(i, fps), fps)  # scenes
        assert timing.nearest_frame(i / fps, fps) in timing.span_frames_of(i / fps, fps)  # snapped keyframes
    meta = timing.probe_seconds(Fraction(599599, 30000))
    spans = fixed_stride_spans(_meta(fps, meta), clip_len_s=1.7)
    for s in spans:  # the split's frames, from the seconds a document stores
        assert s.start_frame in timing.span_frames_of(s.start_s, fps)
        assert s.end_frame in timing.span_frames_of(s.end_s, fps)
    assert len(timing.span_frames_of(10.0, fps)) <= 2  # two rules, no guessing around them


def test_span_frames_of_refuses_what_cannot_be_a_time():
    for seconds, fps in [(-1.0, 25), (1.0, 0), (float("nan"), 25), (1.0, float("inf")), (True, 25), (1e10, 25)]:
        assert timing.span_frames_of(seconds, fps) == []


def test_probe_seconds_is_ffprobe_printing():
    assert timing.probe_seconds(Fraction(599599, 30000)) == 19.986633
    assert timing.frame_count(19.986633, 30000 / 1001) == 598  # the reference's num_frames, not 599


def test_span_origin_is_the_file_start_unless_the_video_starts_far_later():
    assert timing.span_origin(Fraction(-21, 1000), Fraction(0)) == Fraction(-21, 1000)  # AAC priming
    assert timing.span_origin(None, Fraction(3, 2)) == 0  # ffmpeg -ss counts from the file's start
    assert timing.span_origin(Fraction(0), Fraction(100000)) == 100000  # video moved by -itsoffset
    assert timing.span_origin(Fraction(5), None) == 5


def test_rate_fallbacks_are_named_once():
    assert timing.frame_period(Fraction(25)) == Fraction(1, 25)
    assert timing.frame_period(None) == 1 / timing.UNTIMED_FRAME_RATE
    assert timing.MOTION_FALLBACK_FPS == 30.0


def test_span_rule_and_vfr_promise():
    # compared in microseconds: a hair before the start is at the start, a hair before the end is at it
    assert timing.in_span(Fraction(1, 3) - Fraction(1, 10**7), 1 / 3, 1.0)
    assert not timing.in_span(Fraction(1, 3), 0.0, 1 / 3 + 1e-7)
    assert not timing.in_span(1.0, 0.0, 1.0) and timing.in_span(0.0, 0.0, 1.0)
    dense = [i / 30 for i in range(30)]  # one second at 30 fps
    sparse = [i / 10 for i in range(10)]  # one second at 10 fps
    times = sparse + [1 + t for t in dense]
    assert timing.frames_in_span(times, 0.0, 1.0) == 10 and timing.frames_in_span(times, 1.0, 2.0) == 30
    assert timing.span_promise(1.0, 2.0, 20.0, times) == (30.0, 1.0)
    assert timing.span_promise(1.0, 2.0, 20.0) == (20.0, 1.0)  # the constant-rate promise
    assert timing.is_vfr(times) and not timing.is_vfr(dense)
    assert not timing.is_vfr([round(i * 1000 / 30) / 1000 for i in range(90)])  # 33/34 ms in a 1 ms time base


def _meta(fps, duration):
    from curation_assets.core.model import VideoMetadata

    return VideoMetadata(256, 256, fps, timing.frame_count(duration, fps), duration, "h264", "yuv420p", None)


def test_scene_spans_verify_by_the_shared_rule():
    fps = 30000 / 1001
    probabilities = [0.0] * 2000
    for cut in (397, 811, 1499):
        probabilities[cut] = 0.9
    for s in scenes_to_spans(probabilities, fps):
        uid = str(clip_uuid("/v.mp4", s.start_frame, s.end_frame))
        meta = {"span_uuid": uid, "source_video": "/v.mp4", "duration_span": [s.start_s, s.end_s],
                "framerate_source": fps}
        assert verified_span(uid, "/v.mp4", meta) == (s.start_frame, s.end_frame)


# ------------------------------------------------------------------------------- probe


def test_vfr_source_frames_fall_unevenly(tmp_path):
    path = make_dropped_vfr(tmp_path / "vfr.mp4")
    meta = probe_video(str(path))
    times = presented_times(str(path))
    assert meta.framerate == 20.0 and len(times) == 240 and timing.is_vfr(times)
    # a 4 s span holds 40 or 120 frames, never the 80 that span x average rate says
    assert [timing.frames_in_span(times, a, a + 4) for a in (0, 4, 8)] == [40, 80, 120]
    assert timing.frames_in_span(times, 6, 10) == 120


@needs_ffmpeg
@pytest.mark.parametrize("name,offset", [("a.mkv", 100000), ("b.mkv", 4_000_000), ("c.mkv", 1000),
                                         ("d.webm", 100000), ("e.mp4", 12345.678), ("f.mp4", 100000)])
def test_large_start_offsets_are_probed_for_the_frames_they_hold(tmp_path, name, offset):
    src = make_video(tmp_path / "src.mp4", seconds=4, fps=25, width=160, height=128, audio=name.endswith(".mkv"))
    path = make_offset(tmp_path / name, offset, source=src)
    started = time.perf_counter()
    meta = probe_video(str(path))
    assert time.perf_counter() - started < 2.0
    assert meta.duration == pytest.approx(3.0, abs=0.05) and meta.num_frames in (74, 75, 76), meta
    spans = fixed_stride_spans(meta, clip_len_s=1.0, min_clip_length_s=0.5)
    assert len(spans) == 3 and spans[-1].end_s <= 3.05
    times = presented_times(str(path))
    assert len(times) == 75 and 0 <= times[0] < 0.05  # the frames count from the start of the file


def test_an_ordinary_file_keeps_its_claim(tmp_path):
    path = make_video(tmp_path / "a.mkv", seconds=5, fps=25, width=160, height=128, audio=True)
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        assert v.duration is None  # Matroska: the container's duration is the claim
        assert covered_seconds(c, v) == pytest.approx(5.0, abs=0.05)
    meta = probe_video(str(path))
    with av.open(str(path)) as c:
        assert meta.duration == timing.probe_seconds(Fraction(c.duration, av.time_base))


# ------------------------------------------------------------------------------- copy-mode cut


def _shown(data_or_path) -> list[tuple[float, str]]:
    src = io.BytesIO(data_or_path) if isinstance(data_or_path, bytes) else str(data_or_path)
    with av.open(src) as c:
        return [(float(f.pts * f.time_base), hashlib.md5(f.to_ndarray(format="yuv420p").tobytes()).hexdigest())
                for f in c.decode(video=0)]


@needs_ffmpeg
def test_copy_mode_cuts_an_ss_copy_cut_from_its_first_shown_frame(tmp_path):
    cut = make_copy_cut(tmp_path)
    with av.open(str(cut)) as c:
        v = c.streams.video[0]
        hidden = [p.pts * v.time_base for p in c.demux(v) if p.is_discard]
    assert hidden and min(hidden) < -1.2  # the GOP before the cut point, hidden by an edit list
    meta = probe_video(str(cut))
    spans = fixed_stride_spans(meta, clip_len_s=2.0)
    outs = copy_clips(str(cut), spans)
    source = _shown(cut)
    times = presented_times(str(cut))
    assert [round(t, 6) for t, _ in source] == [round(float(t), 6) for t in times]
    assert outs[0].span.start_s == 0.0 and outs[0].span.start_frame == 0
    assert len(outs) >= 3
    for out in outs:
        assert out.error is None and out.span.start_s >= 0
        shown = _shown(out.data)
        expected = [h for t, h in source if timing.in_span(t, out.span.start_s, out.span.end_s)]
        assert out.num_frames == len(shown) == len(expected)
        assert [h for _, h in shown] == expected  # the frames the source shows there, not the hidden ones
        assert shown[0][0] == 0.0
        uid = str(clip_uuid(str(cut), out.span.start_frame, out.span.end_frame))
        doc = {"span_uuid": uid, "source_video": str(cut), "duration_span": [out.span.start_s, out.span.end_s],
               "framerate_source": meta.framerate}
        assert verified_span(uid, str(cut), doc) == (out.span.start_frame, out.span.end_frame)
    covered = {h for out in outs for _, h in _shown(out.data)}
    assert covered == {h for _, h in source}  # every shown frame is in a clip (snapped clips overlap)
    assert outs[0].span == Span(0.0, outs[0].span.end_s, 0, outs[0].span.end_frame, snapped=True)
