"""A pixel bomb for the resource-budget tests: a small MKV whose few MJPEG frames decode to
``side x side`` pixels each (16000x16000 by default: 384 MB a frame in yuvj420p).

Encoding such a frame with an encoder costs gigabytes, so the JPEGs are written directly: FFmpeg's
own JPEG headers for a 16x16 mid-grey frame with the standard Huffman tables, the frame size in
the SOF0 header set to ``side``, then the entropy-coded data of a uniform frame, which is the same
4 bytes for every 16x16 macroblock (four luma blocks of "DC unchanged, end of block" and two
chroma blocks of the same): a valid, fully decodable grey frame of any size, made in milliseconds.

Example::

    from curation_assets_tests.pixel_bomb import make_pixel_bomb
    make_pixel_bomb(tmp_path / "bomb.mkv")                  # three 16000x16000 frames, 12 MB
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

__all__ = ["grey_jpeg", "make_pixel_bomb"]

# One 16x16 macroblock of a uniform 4:2:0 frame with the standard tables: Y "00 1010" x 4 (DC category 0,
# EOB), Cb "00 00", Cr "00 00" = 32 bits; no 0xFF byte, so no byte stuffing.
_UNIFORM_MCU = b"\x28\xa2\x8a\x00"


def grey_jpeg(side: int) -> bytes:
    """A baseline 4:2:0 JPEG of ``side`` x ``side`` (a multiple of 16) mid-grey pixels."""
    if side % 16 or not 16 <= side <= 65535:
        raise ValueError(f"side must be a multiple of 16 up to 65535, not {side}")
    ctx = av.CodecContext.create("mjpeg", "w")
    ctx.width = ctx.height = 16
    ctx.pix_fmt = "yuvj420p"
    ctx.time_base = Fraction(1, 1)
    ctx.options = {"huffman": "default"}  # the standard tables the macroblock above is coded with
    frame = av.VideoFrame(16, 16, "yuvj420p")
    for plane in frame.planes:
        np.frombuffer(plane, np.uint8)[:] = 128
    data = b"".join(bytes(p) for p in ctx.encode(frame)) + b"".join(bytes(p) for p in ctx.encode(None))
    sos = data.index(b"\xff\xda")
    head = bytearray(data[: sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")])
    sof = head.index(b"\xff\xc0")
    head[sof + 5 : sof + 9] = side.to_bytes(2, "big") * 2  # height, width
    return bytes(head) + _UNIFORM_MCU * (side // 16) ** 2 + b"\xff\xd9"


def make_pixel_bomb(path: str | Path, *, side: int = 16000, frames: int = 3) -> Path:
    """An MKV of ``frames`` grey ``side`` x ``side`` MJPEG frames at 1 fps; returns the path."""
    path = Path(path)
    jpeg = grey_jpeg(side)
    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream("mjpeg", rate=1)
        stream.width = stream.height = side
        stream.pix_fmt = "yuvj420p"
        for i in range(frames):
            packet = av.Packet(jpeg)
            packet.stream = stream
            packet.pts = packet.dts = i
            packet.time_base = Fraction(1, 1)
            out.mux(packet)
    return path
