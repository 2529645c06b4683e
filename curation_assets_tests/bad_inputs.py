"""A corpus of awkward and broken inputs, generated with PyAV (Debian's ``ffmpeg`` CLI only where
PyAV cannot: rotation metadata on an existing stream).

``make_bad_inputs(folder)`` writes every case under ``folder`` and returns ``{relative path: Case}``.
Everything is deterministic (seeded noise, synthetic frames) and small: all of it is processed in
well under a minute on two cores. ``make_long_video`` (for the memory benchmark) is separate.

    python -m curation_assets_tests.bad_inputs /tmp/corpus    # write the corpus to look at
"""

from __future__ import annotations

import io
import math
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from .video_factory import frame_rgb, make_video

__all__ = ["Case", "make_bad_inputs", "make_long_video", "find_atom"]


@dataclass(frozen=True)
class Case:
    """What a file is and how it was made (the expected outcome lives in the test)."""

    what: str


def _write_frames(path: Path, frames: list[tuple[np.ndarray, int]], *, time_base: Fraction, rate: Fraction,
                  codec: str = "libx264", pix_fmt: str = "yuv420p", options: dict | None = None,
                  container_options: dict | None = None) -> Path:
    """Encode (rgb frame, pts) pairs into one video stream."""
    h, w = frames[0][0].shape[:2]
    with av.open(str(path), mode="w", options=container_options or {}) as out:
        vs = out.add_stream(codec, rate=rate, options={"preset": "ultrafast", **(options or {})}
                            if codec == "libx264" else (options or {}))
        vs.width, vs.height, vs.pix_fmt = w, h, pix_fmt
        vs.time_base = time_base
        vs.codec_context.time_base = time_base
        vs.codec_context.thread_count = 1
        for img, pts in frames:
            frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format=pix_fmt)
            frame.pts, frame.time_base = pts, time_base
            for packet in vs.encode(frame):
                out.mux(packet)
        for packet in vs.encode(None):
            out.mux(packet)
    return path


def find_atom(data: bytes, name: bytes) -> int:
    """Offset of a top-level MP4 box ``name`` (its size field), or -1."""
    pos = 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        if size == 1:
            size = int.from_bytes(data[pos + 8:pos + 16], "big")
        elif size == 0:
            size = len(data) - pos
        if kind == name:
            return pos
        if size < 8:
            return -1
        pos += size
    return -1


def _audio_only(path: Path, seconds: float = 3.0, rate: int = 48000) -> Path:
    with av.open(str(path), mode="w") as out:
        aus = out.add_stream("aac", rate=rate, layout="mono")
        n = int(seconds * rate)
        for start in range(0, n, 1024):
            k = min(1024, n - start)
            t = (np.arange(start, start + k) / rate).astype(np.float32)
            frame = av.AudioFrame.from_ndarray((0.2 * np.sin(2 * math.pi * 440 * t)).reshape(1, -1),
                                               format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            for packet in aus.encode(frame):
                out.mux(packet)
        for packet in aus.encode(None):
            out.mux(packet)
    return path


def _two_video_streams(path: Path, seconds: float = 3.0, fps: int = 25) -> Path:
    """First stream 320x256, second (the one the reference uses: the last listed) 256x256."""
    with av.open(str(path), mode="w") as out:
        streams = []
        for w, h in ((320, 256), (256, 256)):
            vs = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
            vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
            vs.codec_context.thread_count = 1
            streams.append(vs)
        for i in range(int(seconds * fps)):
            for k, vs in enumerate(streams):
                img = frame_rgb(i + 1000 * k, vs.width, vs.height)
                frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
                frame.pts, frame.time_base = i, Fraction(1, fps)
                for packet in vs.encode(frame):
                    out.mux(packet)
        for vs in streams:
            for packet in vs.encode(None):
                out.mux(packet)
    return path


def _rotated(path: Path, degrees: int = 90) -> Path:
    """A 'phone' video: stored 320x256 with a display matrix that says 'rotate by 90 degrees'."""
    plain = path.with_name(path.stem + ".unrotated.tmp.mp4")
    make_video(plain, seconds=3, fps=30, width=320, height=256, audio=True)
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError("the rotated case needs the ffmpeg CLI (Debian package ffmpeg)")
    # ffmpeg >= 6 has -display_rotation; Debian 12's 5.1 turns the stream's rotate tag into the
    # display matrix when muxing mp4. -display_rotation is counter-clockwise: 90 here is
    # rotate=270 in the old tag's (clockwise) convention; try both spellings.
    attempts = [
        [ffmpeg, "-v", "error", "-y", "-display_rotation", str(degrees), "-i", str(plain), "-c", "copy", str(path)],
        [ffmpeg, "-v", "error", "-y", "-i", str(plain), "-c", "copy", "-metadata:s:v:0", f"rotate={degrees}", str(path)],
    ]
    try:
        for cmd in attempts:
            if subprocess.run(cmd, capture_output=True).returncode == 0:
                return path
        raise RuntimeError("ffmpeg could not write rotation metadata")
    finally:
        plain.unlink(missing_ok=True)


def truncated_faststart(full: Path, target: Path) -> Path:
    """``full`` remuxed with its index (moov) in front, then cut at half its size into ``target``:
    an upload that stopped half-way whose index promises frames that are not there."""
    faststart = full.with_name(full.stem + ".faststart.tmp.mp4")
    with av.open(str(full)) as src, av.open(str(faststart), "w", options={"movflags": "faststart"}) as dst:
        mapping = {s: dst.add_stream_from_template(s) for s in src.streams if s.type in ("video", "audio")}
        for packet in src.demux(*mapping):
            if packet.dts is None:
                continue
            packet.stream = mapping[packet.stream]
            dst.mux(packet)
    fs_data = faststart.read_bytes()
    faststart.unlink()
    assert 0 <= find_atom(fs_data, b"moov") < find_atom(fs_data, b"mdat"), "faststart did not move moov"
    target.write_bytes(fs_data[: len(fs_data) // 2])
    return target


def make_bad_inputs(folder: str | Path) -> dict[str, Case]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(1234)
    cases: dict[str, Case] = {}

    def add(rel: str, what: str) -> Path:
        cases[rel] = Case(what)
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    add("zero bytes.mp4", "an empty file").write_bytes(b"")
    add("random bytes.mp4", "64 KiB of random bytes named .mp4").write_bytes(rng.randbytes(65536))

    # Truncated at half its size, moov at the front (faststart): the index promises frames that
    # are not there.
    full = make_video(folder / "full.tmp.mp4", seconds=6, fps=25, width=256, height=256, audio=True,
                      )
    data = full.read_bytes()
    truncated_faststart(full, add("truncated half.mp4", "faststart mp4 cut at half its size"))
    # Moov atom missing: a normal (moov-last) mp4 with its trailing moov cut off.
    moov = find_atom(data, b"moov")
    assert moov > find_atom(data, b"mdat") > 0, "expected moov after mdat"
    add("no moov.mp4", "mp4 whose trailing moov atom was cut off").write_bytes(data[:moov])
    full.unlink()

    _audio_only(add("audio only.mp4", "AAC audio in mp4, no video stream"))
    png = io.BytesIO()
    Image.fromarray(frame_rgb(3, 320, 240)).save(png, format="PNG")
    add("still image png.mp4", "a PNG picture named .mp4").write_bytes(png.getvalue())
    jpg = io.BytesIO()
    Image.fromarray(frame_rgb(5, 320, 240)).save(jpg, format="JPEG", quality=90)
    add("still image jpeg.mp4", "a JPEG picture named .mp4").write_bytes(jpg.getvalue())

    make_video(add("one frame.mp4", "a single frame at 25 fps (0.04 s)"), seconds=0.04, fps=25, width=256,
               height=256, audio=False)
    make_video(add("small 160x90.mp4", "160x90: too small for motion scoring"), seconds=4, fps=25, width=160,
               height=90, audio=False)
    make_video(add("odd 321x241.mp4", "odd dimensions (4:4:4 source, as 4:2:0 cannot be odd)"), seconds=4, fps=25,
               width=321, height=241, audio=False, pix_fmt="yuv444p")
    make_video(add("10bit 420.mp4", "10-bit 4:2:0 H.264"), seconds=4, fps=25, width=256, height=256, audio=False,
               pix_fmt="yuv420p10le")
    make_video(add("10bit 444.mp4", "10-bit 4:4:4 H.264"), seconds=4, fps=25, width=256, height=256, audio=False,
               pix_fmt="yuv444p10le")

    # Variable frame rate: 1 ms time base, frame gaps alternating between 20 ms and 60 ms for
    # 4 s, then a 1 s stretch at 10 fps.
    frames, t, i = [], 0, 0
    while t < 5000:
        frames.append((frame_rgb(i, 256, 256), t))
        t += (20 if i % 2 == 0 else 60) if t < 4000 else 100
        i += 1
    _write_frames(add("vfr.mp4", "variable frame rate (20/60 ms gaps, then 100 ms)"), frames,
                  time_base=Fraction(1, 1000), rate=Fraction(25))

    _rotated(add("rotated phone.mp4", "320x256 stored, display matrix rotating by 90 degrees"))
    _two_video_streams(add("two video streams.mp4", "two video streams, 320x256 then 256x256"))

    for rel in ("names/spaces and, commas [1] (x)....mp4", "names/ünïcødé 视频 ....mp4",
                "nested/deeper/still deeper/clip.mp4"):
        make_video(add(rel, "a normal video under an awkward name or deep folder"), seconds=2, fps=25, width=256,
                   height=256, audio=False)
    return cases


def make_long_video(path: str | Path, seconds: float, *, width: int = 160, height: int = 90, fps: int = 25) -> Path:
    """A long low-resolution video, fast: Debian's ffmpeg testsrc2 (about 100x real time),
    PyAV frame by frame when the CLI is missing."""
    path = Path(path)
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg:
        cmd = [ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}",
               "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(seconds),
               "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", str(fps * 2),
               "-c:a", "aac", "-b:a", "32k", "-shortest", str(path)]
        subprocess.run(cmd, check=True)
        return path
    return make_video(path, seconds=seconds, fps=fps, width=width, height=height, audio=True,
                      options={"preset": "ultrafast", "g": str(fps * 2)})


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "bad_inputs")
    for rel, case in make_bad_inputs(target).items():
        print(f"{rel}: {case.what}")
