"""Small real test videos made with PyAV, for any test that needs a video file.

``make_video(path, ...)`` writes an mp4 (or any container PyAV can mux) with synthetic but
non-trivial content: a moving gradient plus a bright square whose position encodes the frame
number, so consecutive frames differ (motion, scene content for encoders) and two frames can be
told apart. Options: size, frame rate, duration, pixel format (``yuv420p10le`` gives a 10-bit
H.264 source), video codec, an optional AAC sine-tone audio track, and a ``scene_cut_every``
that flips the palette every N seconds (hard cuts for scene detection tests).

Example::

    from curation_assets_tests.video_factory import make_video
    path = make_video(tmp_path / "a.mp4", seconds=12, fps=25, audio=True)

Encoding uses libx264 ``ultrafast`` so a 12 s 320x240 video takes well under a second.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

__all__ = ["make_video", "frame_rgb"]


def frame_rgb(
    index: int, width: int, height: int, fps: float = 25.0, scene_cut_every: float | None = None
) -> np.ndarray:
    """The RGB uint8 HxWx3 content of frame ``index`` (deterministic)."""
    yy, xx = np.mgrid[0:height, 0:width]
    shift = index * 3
    r = ((xx + shift) * 255 // max(1, width)) % 256
    g = ((yy + shift // 2) * 255 // max(1, height)) % 256
    b = (((xx + yy) // 4 + index) * 7) % 256
    img = np.stack([r, g, b], axis=-1).astype(np.uint8)
    if scene_cut_every:
        scene = int(index / fps // scene_cut_every)
        if scene % 2:
            img = 255 - img[:, :, ::-1]
    # a bright square moving across, its position encoding the frame number
    size = max(4, min(width, height) // 8)
    cols = max(1, (width - size) // size)
    x = (index % cols) * size
    y = ((index // cols) * size) % max(1, height - size)
    img[y : y + size, x : x + size] = 255
    return img


def make_video(
    path: str | Path,
    *,
    width: int = 320,
    height: int = 240,
    fps: int | Fraction = 25,
    seconds: float = 12.0,
    audio: bool = True,
    pix_fmt: str = "yuv420p",
    codec: str = "libx264",
    audio_rate: int = 48000,
    scene_cut_every: float | None = None,
    options: dict[str, str] | None = None,
) -> Path:
    """Write a synthetic test video to ``path`` and return the path.

    ``seconds * fps`` frames (rounded) at constant frame rate; with ``audio`` a mono AAC
    440 Hz tone of the same duration. ``options`` go to the video encoder (default for
    libx264: ``preset=ultrafast``).
    """
    path = Path(path)
    rate = Fraction(fps)
    n_frames = int(round(seconds * rate))
    enc_options = dict(options or {})
    if codec == "libx264":
        enc_options.setdefault("preset", "ultrafast")
    with av.open(str(path), mode="w") as out:
        vs = out.add_stream(codec, rate=rate, options=enc_options)
        vs.width, vs.height = width, height
        vs.pix_fmt = pix_fmt
        vs.codec_context.thread_count = 1
        aus = None
        if audio:
            aus = out.add_stream("aac", rate=audio_rate, layout="mono")
        samples_done = 0
        total_samples = int(round(seconds * audio_rate))
        chunk = 1024
        for i in range(n_frames):
            rgb = frame_rgb(i, width, height, float(rate), scene_cut_every)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            if pix_fmt != "rgb24":
                frame = frame.reformat(format=pix_fmt)
            frame.pts = i
            frame.time_base = 1 / rate
            for packet in vs.encode(frame):
                out.mux(packet)
            if aus is not None:  # keep audio roughly interleaved with video
                target = min(total_samples, int((i + 1) / rate * audio_rate))
                while samples_done + chunk <= target or (i == n_frames - 1 and samples_done < total_samples):
                    n = min(chunk, total_samples - samples_done)
                    t = (np.arange(samples_done, samples_done + n) / audio_rate).astype(np.float32)
                    data = (0.2 * np.sin(2 * math.pi * 440.0 * t)).astype(np.float32).reshape(1, -1)
                    af = av.AudioFrame.from_ndarray(data, format="fltp", layout="mono")
                    af.sample_rate = audio_rate
                    af.pts = samples_done
                    af.time_base = Fraction(1, audio_rate)
                    for packet in aus.encode(af):
                        out.mux(packet)
                    samples_done += n
        for packet in vs.encode(None):
            out.mux(packet)
        if aus is not None:
            for packet in aus.encode(None):
                out.mux(packet)
    return path
