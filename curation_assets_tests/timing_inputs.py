"""Real small videos whose timing is awkward (issue 18), made with PyAV and the ffmpeg CLI.

* :func:`make_dropped_vfr`: a 30 fps recording with frames dropped unevenly, timestamps kept
  (what a phone writes under load): the first half keeps one frame in three, the second all.
* :func:`make_offset`: a 3 s clip whose timestamps start at ``offset`` seconds
  (``ffmpeg -output_ts_offset``); Matroska then records its *end* time as its duration.
* :func:`make_video_late`: the video stream moved far after the audio (``-itsoffset``).
* :func:`make_copy_cut`: ``ffmpeg -ss 1.3 -i src -c copy``: the GOP the cut point falls in is
  kept and an edit list hides its first 1.3 s (packets before the first shown frame).
"""

from __future__ import annotations

import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import pytest

from .video_factory import frame_rgb, make_video

__all__ = ["make_copy_cut", "make_dropped_vfr", "make_offset", "make_video_late", "needs_ffmpeg"]

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg CLI")


def make_dropped_vfr(path: str | Path, *, seconds: int = 12, fps: int = 30, width: int = 256, height: int = 256) -> Path:
    """``seconds`` of ``fps`` frames; in the first half only every third frame is kept (10 fps),
    the second half keeps them all; each kept frame keeps its original timestamp."""
    path = Path(path)
    tb = Fraction(1, fps)
    with av.open(str(path), mode="w") as out:
        vs = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.codec_context.time_base = tb
        for i in range(seconds * fps):
            if i < seconds * fps // 2 and i % 3:
                continue  # dropped
            frame = av.VideoFrame.from_ndarray(frame_rgb(i, width, height), format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = i, tb
            for packet in vs.encode(frame):
                out.mux(packet)
        for packet in vs.encode(None):
            out.mux(packet)
    return path


def _ffmpeg(*args: str) -> None:
    subprocess.run([shutil.which("ffmpeg") or "ffmpeg", "-v", "error", "-y", *args], check=True)


def make_offset(path: str | Path, offset: float, *, source: str | Path) -> Path:
    """The first 3 s of ``source`` re-encoded (x264 ultrafast, AAC when it has audio) with every
    timestamp moved ``offset`` seconds later; the container follows the suffix of ``path``."""
    path = Path(path)
    video = ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8"] if path.suffix == ".webm" else \
        ["-c:v", "libx264", "-preset", "ultrafast"]
    _ffmpeg("-i", str(source), "-t", "3", *video, "-output_ts_offset", str(offset), str(path))
    return path


def make_video_late(path: str | Path, offset: float, *, source: str | Path) -> Path:
    """``source``'s video moved ``offset`` seconds later (``-itsoffset``), its audio left at 0: the
    file starts at 0, its video stream at ``offset``."""
    _ffmpeg("-itsoffset", str(offset), "-i", str(source), "-i", str(source), "-map", "0:v", "-map", "1:a",
            "-c", "copy", str(path))
    return Path(path)


def make_copy_cut(folder: str | Path, name: str = "cut.mp4") -> Path:
    """A cut of a 10 s source (320x256, keyframes every 2 s, AAC) made by ``-ss 1.3 -c copy``."""
    folder = Path(folder)
    src = make_video(folder / "cut source.tmp.mp4", seconds=10, fps=25, width=320, height=256, audio=True,
                     options={"preset": "ultrafast", "x264-params": "keyint=50:min-keyint=50:scenecut=0"})
    cut = folder / name
    _ffmpeg("-ss", "1.3", "-i", str(src), "-c", "copy", str(cut))
    src.unlink()
    return cut
