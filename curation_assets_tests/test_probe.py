"""The probe rules (``core.probe``, spec "Probe fields"): one frame rate and one duration for every
module, the duration read as ffprobe prints it.

The case that decides it is an NTSC ``.mov``: 599 frames at 30000/1001 in a 1/30000 time base are
exactly ``duration_ts=599599`` (599.0 frames), but ffprobe prints 19.986633 s, so the reference
counts ``int(19.986633 * 30000/1001) = 598`` frames, and its last fixed-stride span and clip id
follow from 598. The files are made here with PyAV; where Debian's ``ffprobe`` is installed (CI
installs it) its own output is the oracle too.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from curation_assets.core.probe import duration_seconds, frame_rate, probe_clip, probe_video
from curation_assets.core.split import fixed_stride_spans

NTSC = Fraction(30000, 1001)


def make_constant_rate_video(path: Path, frames: int, rate: Fraction = NTSC, codec: str = "mpeg4") -> Path:
    """``frames`` small frames at ``rate``; MPEG-4 part 2 has no B-frames, so the muxer writes
    exactly ``frames`` frame durations (no edit list)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), (7 * i) % 256, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def ntsc_mov(tmp_path_factory) -> Path:
    path = make_constant_rate_video(tmp_path_factory.mktemp("probe") / "ntsc.mov", 599)
    with av.open(str(path)) as container:  # the case the spec describes, as PyAV wrote it
        stream = container.streams.video[0]
        assert (stream.time_base, stream.duration, stream.average_rate) == (Fraction(1, 30000), 599599, NTSC)
        assert stream.duration * stream.time_base * stream.average_rate == 599  # exactly 599 frames
    return path


def _ffprobe(path: Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
                         check=True, capture_output=True).stdout
    return json.loads(out)


def test_ntsc_mov_has_the_reference_num_frames(ntsc_mov):
    meta = probe_video(str(ntsc_mov))
    assert meta.framerate == 30000 / 1001
    assert meta.duration == 19.986633  # the printed six decimals, not 19.98663333...
    assert meta.num_frames == 598


def test_ntsc_mov_last_span_and_clip_ids_follow_598_frames(ntsc_mov):
    spans = fixed_stride_spans(probe_video(str(ntsc_mov)))
    assert [(s.start_frame, s.end_frame) for s in spans] == [(0, 299), (299, 598)]
    assert spans[-1].end_s == 598 / (30000 / 1001)
    ids = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"/in/ntsc.mov_{s.start_frame}_{s.end_frame}")) for s in spans]
    # with 599 frames the last id would be d07f1193-3dab-5fb2-94de-516ef06deaf1
    assert ids == ["001fcb0e-e0a4-5ca5-a93c-4395bee0e1bc", "1045a05c-e43b-59d2-9fb5-c7791d02599c"]


def test_clip_probe_follows_the_same_rule(ntsc_mov):
    probe = probe_clip(ntsc_mov.read_bytes())
    assert (probe.width, probe.height, probe.video_codec) == (64, 48, "mpeg4")
    assert probe.framerate == 30000 / 1001 and probe.num_frames == 598
    assert probe.num_bytes == ntsc_mov.stat().st_size


def test_matroska_has_no_stream_duration_and_takes_the_containers(tmp_path):
    path = make_constant_rate_video(tmp_path / "ntsc.mkv", 599)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.duration is None and container.duration == 19_986_000  # milliseconds in Matroska
        assert duration_seconds(container, stream) == 19.986
        assert frame_rate(stream) == NTSC
    meta = probe_video(str(path))
    assert (meta.duration, meta.num_frames) == (19.986, 598)


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="needs the ffprobe CLI (CI installs Debian's ffmpeg)")
@pytest.mark.parametrize("name", ["ntsc.mov", "ntsc.mkv", "pal.mp4", "ntsc_transcoded_clip.mp4"])
def test_duration_and_frames_equal_the_references_reading_of_ffprobe(tmp_path, name):
    """The reference's own arithmetic on ffprobe's JSON (decoder_utils.extract_video_metadata)."""
    from curation_assets.core.model import Span
    from curation_assets.core.transcode import transcode_clips

    if name == "pal.mp4":
        path = make_constant_rate_video(tmp_path / name, 137, Fraction(25))
    elif name == "ntsc_transcoded_clip.mp4":  # a clip as we write it, cut from the NTSC source
        source = make_constant_rate_video(tmp_path / "source.mov", 599)
        (out,) = transcode_clips(str(source), [Span(10.0, 19.953, 299, 598)])
        path = tmp_path / name
        path.write_bytes(out.data)
    else:
        path = make_constant_rate_video(tmp_path / name, 599)
    info = _ffprobe(path)
    stream = [s for s in info["streams"] if s["codec_type"] == "video"][-1]
    num, den = map(int, stream["avg_frame_rate"].split("/"))
    duration = float(stream["duration"]) if "duration" in stream else float(info["format"]["duration"])
    meta = probe_video(str(path))
    assert meta.framerate == num / den
    assert meta.duration == duration
    assert meta.num_frames == int(duration * (num / den))
    clip = probe_clip(path.read_bytes())
    assert (clip.framerate, clip.num_frames) == (meta.framerate, meta.num_frames)
