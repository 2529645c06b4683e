"""A second decode position (``transcode_decode_positions``, ``core/decode_pass.py``) encodes the
later clips at the same time as the earlier ones and changes no byte: every clip, preview, motion
score and error is the same as with one position, through the real pipeline on real small videos
(fixed stride and uneven, overlapping TransNetV2-style spans; sources with B-frames and sparse
keyframes, so the second position is seeked well before its first clip). A stop mid-run leaves
only whole files and ends as a stop; a source that fails under the second position fails its
clips, not the video's others."""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path

import av
import pytest

from curation_assets.core import cancel, work
from curation_assets.core.decode_pass import split_point, wants_second_position
from curation_assets.core.model import Span, as_bytes
from curation_assets.core.options import PipelineOptions
from curation_assets.core.pipeline import ModelParts, process_video
from curation_assets.core.transcode import TranscodeOptions, transcode_clips

from .video_factory import make_video

# B-frames and a keyframe every 37 frames (1.48 s): clip starts fall between keyframes, and some
# just before one (mov seeks by decode time: the seek must back off).
BFRAMES = {"preset": "veryfast", "x264-params": "keyint=37:min-keyint=37:bframes=3:scenecut=0"}
# TransNetV2-like: uneven shots, one a single frame's worth longer than its neighbour, two overlapping.
UNEVEN = [(0.0, 1.24), (1.24, 2.92), (2.92, 3.4), (3.4, 6.84), (6.0, 7.2), (7.2, 7.96)]

LOGGER = "curation_assets.core.transcode"


def _span(a: float, b: float) -> Span:
    return Span(a, b, round(a * 25), round(b * 25))  # the test videos run at 25 fps


def _opener(path: Path):
    return lambda: open(path, "rb")


def _options(positions: int, **extra) -> PipelineOptions:
    values = dict(fixed_stride_split_duration=2.0, fixed_stride_min_clip_length_s=0.5, generate_previews=True,
                  motion_filter="score-only", generate_embeddings=False, transcode_encoder_threads=2,
                  transcode_decode_positions=positions)
    values.update(extra)
    return PipelineOptions(**values)


def _digest(result) -> list[tuple]:
    """Everything a clip of the result carries: its bytes, previews, motion, probe and errors."""
    out = []
    for clip in result.clips:
        data = as_bytes(clip.encoded) if clip.encoded else b""
        previews = [hashlib.sha256(as_bytes(w.preview)).hexdigest() if w.preview else None for w in clip.windows]
        out.append((clip.span, hashlib.sha256(data).hexdigest(), previews, clip.motion, clip.probe,
                    dict(clip.errors), str(clip.uuid)))
    return out


def _uneven_parts() -> ModelParts:
    return ModelParts(detect_scenes=lambda source, metadata, options: [_span(a, b) for a, b in UNEVEN])


def _second_positions(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "second decode position from" in r.getMessage()]


@pytest.mark.parametrize("case", ["fixed-stride", "uneven"])
def test_two_positions_give_the_same_bytes(tmp_path, caplog, case):
    video = make_video(tmp_path / "v.mp4", seconds=8, fps=25, width=256, height=256, audio=True, options=BFRAMES)
    if case == "uneven":
        kwargs = {"models": _uneven_parts()}
        extra = {"splitting_algorithm": "transnetv2"}
    else:
        kwargs, extra = {}, {}
    one = process_video(str(video), "v.mp4", _opener(video), _options(1, **extra), **kwargs)
    assert not _second_positions(caplog)
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        two = process_video(str(video), "v.mp4", _opener(video), _options(2, **extra), **kwargs)
    assert _second_positions(caplog), "the second decode position was not used"
    assert len(one.clips) == (4 if case == "fixed-stride" else 6)
    assert all(c.encoded for c in one.clips)
    assert [c.errors for c in one.clips if c.errors] == ([] if case == "fixed-stride" else
                                                         [{"motion_decode": "no_motion_frames"}])  # 12 frames
    assert _digest(two) == _digest(one)
    assert not [t for t in threading.enumerate() if t.name == "decode-position-2"]


def test_a_clip_starting_just_before_a_keyframe(tmp_path, caplog):
    """The second position's first clip starts one frame before a keyframe (frame 73; keyframe 74):
    the seek lands on the keyframe before (37), and the clips are those of one position."""
    video = make_video(tmp_path / "v.mp4", seconds=6, fps=25, width=160, height=96, audio=False, options=BFRAMES)
    spans = [_span(0.0, 1.2), _span(1.2, 2.92), _span(2.92, 4.5), _span(4.5, 5.8)]
    with av.open(str(video)) as c:
        keys = [round(float(p.pts * p.time_base) * 25) for p in c.demux(c.streams.video[0]) if p.is_keyframe]
    assert 74 in keys and 73 not in keys
    one = transcode_clips(video, spans, TranscodeOptions(encoder_threads=2, decode_positions=1))
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        two = transcode_clips(video, spans, TranscodeOptions(encoder_threads=2, decode_positions=2))
    assert _second_positions(caplog) == [f"{video}: second decode position from 2.920 s for 2 of 4 clips"]
    assert [(o.data, o.num_frames, o.error) for o in two] == [(o.data, o.num_frames, o.error) for o in one]
    assert all(o.data for o in one)


def test_stop_mid_run_leaves_whole_files_and_is_a_stop(tmp_path):
    video = make_video(tmp_path / "v.mp4", seconds=8, fps=25, width=256, height=256, audio=True, options=BFRAMES)
    reference = {c.span: as_bytes(c.encoded)
                 for c in process_video(str(video), "v.mp4", _opener(video), _options(1)).clips}
    area = work.WorkArea(str(tmp_path / "work"), str(tmp_path / "out"))
    spill = work.VideoSpill(area, str(video), str(tmp_path / "out"))
    seen = {"clips": 0}

    def progress(p) -> None:
        seen["clips"] = p.clips_done

    # stop once the first clip is done: the other position's clips are mid-encode then
    with cancel.stop_check(lambda: seen["clips"] >= 1), pytest.raises(cancel.Interrupted, match="stopped on request"):
        process_video(str(video), "v.mp4", _opener(video), _options(2), spill=spill, on_progress=progress)
    assert not [t for t in threading.enumerate() if t.name == "decode-position-2"]
    files = [p for p in (tmp_path / "work").rglob("*") if p.is_file()]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.mp4"))
    for path in files:  # only whole clips under real names: each is one the uninterrupted run made
        assert not path.name.startswith(".") and ".tmp" not in path.name, path
        if path.suffix == ".mp4":
            assert path.read_bytes() in reference.values(), path


def _first_seconds(src: Path, dst: Path, seconds: float) -> Path:
    """``src`` cut to its first ``seconds`` without re-encoding (the same packets, a shorter file)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for packet in inp.demux():
            if packet.dts is None or packet.dts * packet.time_base >= seconds:
                continue
            packet.stream = streams[packet.stream.index]
            out.mux(packet)
    return dst


def test_a_source_failing_under_the_second_position_fails_only_its_clips(tmp_path, caplog):
    """The second handle reads a source cut short at 5 s (the file replaced under the run by a
    shorter one): the clips the first position feeds are whole and identical, the second
    position's are cut short or empty and say so, and the video completes."""
    video = make_video(tmp_path / "v.mp4", seconds=8, fps=25, width=256, height=256, audio=True, options=BFRAMES)
    cut = _first_seconds(video, tmp_path / "cut.mp4", 5.0)
    handles = iter([video, video, cut])  # the probe, the first position, the second
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        result = process_video(str(video), "v.mp4", lambda: _opener(next(handles))(), _options(2))
    assert _second_positions(caplog)
    whole = process_video(str(video), "v.mp4", _opener(video), _options(1))
    assert not result.errors and len(result.clips) == 4
    assert _digest(result)[:2] == _digest(whole)[:2]  # the first position's clips
    assert "truncated" in result.clips[2].errors
    assert result.clips[3].errors["transcode"].startswith("no video frames in span [6.000, 8.000) s")


def test_a_second_handle_that_does_not_open_means_one_position(tmp_path):
    video = make_video(tmp_path / "v.mp4", seconds=5, fps=25, width=160, height=96, audio=False)
    calls = {"n": 0}

    def reopen():
        calls["n"] += 1
        raise OSError("no second connection")

    spans = [_span(0.0, 2.0), _span(2.0, 4.0)]
    with open(video, "rb") as source:
        two = transcode_clips(source, spans, TranscodeOptions(encoder_threads=2, decode_positions=2), reopen=reopen)
    one = transcode_clips(video, spans, TranscodeOptions(encoder_threads=2, decode_positions=1))
    assert calls["n"] == 1
    assert [o.data for o in two] == [o.data for o in one] and all(o.data for o in one)


def test_when_a_second_position_is_taken():
    assert wants_second_position(0, "libx264", "mov,mp4,m4a,3gp,3g2,mj2", 6, cores=2)
    assert not wants_second_position(0, "libx264", "mov,mp4,m4a,3gp,3g2,mj2", 6, cores=1)
    assert wants_second_position(2, "libx264", "mov,mp4,m4a,3gp,3g2,mj2", 6, cores=1)
    assert not wants_second_position(1, "libx264", "mov,mp4,m4a,3gp,3g2,mj2", 6, cores=16)
    assert not wants_second_position(0, "libx264", "matroska,webm", 6, cores=2)  # seeks by cues: not trusted
    assert not wants_second_position(0, "h264_nvenc", "mov,mp4,m4a,3gp,3g2,mj2", 6, cores=2)
    assert not wants_second_position(0, "libx264", "mov,mp4,m4a,3gp,3g2,mj2", 1, cores=2)


def test_split_point_balances_span_time():
    class J:
        def __init__(self, a: float, b: float) -> None:
            self.start_us, self.end_us = int(a * 1e6), int(b * 1e6)

    assert split_point([J(0, 10), J(10, 20), J(20, 30), J(30, 40), J(40, 50), J(50, 58)]) == 3
    assert split_point([J(0, 30), J(30, 32), J(32, 34), J(34, 36)]) == 1
    assert split_point([J(0, 1), J(1, 2), J(2, 3), J(3, 40)]) == 3
