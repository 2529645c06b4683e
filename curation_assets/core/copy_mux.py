"""The remux of a stream-copied clip (``core.stream_copy``): kept source packets into an mp4.

The packets keep their payload, side data and order; timestamps count from the clip's first
shown frame. Packets an edit list hid in the source (before its first shown frame: a cut made
with ``ffmpeg -ss 1.3 -i x.mp4 -c copy`` keeps the GOP its cut point falls in) stay hidden: they
get negative timestamps, which the mp4 muxer turns into an edit list, so the clip shows what the
source shows. Plain Python (PyAV); no dagster.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av

log = logging.getLogger(__name__)

__all__ = ["KeptPacket", "keep", "mux", "presented"]


@dataclass(frozen=True)
class KeptPacket:
    """A demuxed packet kept for remuxing: payload, timing (stream time base) and side data."""

    data: bytes
    pts: int | None
    dts: int | None
    duration: int
    key: bool
    t: float  # presentation time in seconds from the start of the file
    side_data: tuple = ()
    hidden: bool = False  # decoded but not presented (before an edit list's start): the demuxer's discard flag


def keep(packet: Any, t: float) -> KeptPacket:
    side = tuple(packet.iter_sidedata())
    return KeptPacket(bytes(packet), packet.pts, packet.dts, packet.duration or 0, bool(packet.is_keyframe), t, side,
                      bool(packet.is_discard))


def presented(packets: list[KeptPacket]) -> list[KeptPacket]:
    """The packets whose frames are shown (not hidden before the stream's presented start)."""
    return [p for p in packets if not p.hidden]


def mux(vstream: Any, astream: Any, video: list[KeptPacket], audio: list[KeptPacket], clip_start_s: float,
        origin: float, rotation: int) -> bytes:
    """The clip's mp4: video packets (decode order) and audio packets, timestamps from the clip start."""
    buf = io.BytesIO()
    out = av.open(buf, mode="w", format="mp4")
    try:
        ov = out.add_stream_from_template(vstream)
        if rotation:
            try:
                ov.set_display_rotation(rotation)
            except Exception as exc:  # pragma: no cover
                log.warning("could not keep rotation %s: %s", rotation, exc)
        oa = None
        if astream is not None and audio:
            try:
                oa = out.add_stream_from_template(astream)
            except Exception as exc:
                log.warning("audio codec %s cannot go into mp4, clip has no audio: %s",
                            astream.codec_context.name, exc)
        vtb = Fraction(vstream.time_base)
        v0 = video[0].pts if video[0].pts is not None else (video[0].dts or 0)
        if video[0].hidden:  # the clip presents from its first shown frame; the hidden ones go before 0
            shown = [p.pts for p in presented(video) if p.pts is not None]
            v0 = min(shown) if shown else v0
        items: list[tuple[float, int, KeptPacket, Any, int, Fraction]] = []
        for i, p in enumerate(video):
            dts_t = float(((p.dts if p.dts is not None else p.pts or 0) - v0) * vtb)
            items.append((dts_t, i, p, ov, v0, vtb))
        if oa is not None:
            atb = Fraction(astream.time_base)
            a0 = int(round((Fraction(clip_start_s) + Fraction(origin)) / atb))
            for i, p in enumerate(audio):
                items.append((float(((p.dts if p.dts is not None else p.pts) - a0) * atb),  # type: ignore[operator]  # audio has a pts
                              len(video) + i, p, oa, a0, atb))
        items.sort(key=lambda x: (x[0], x[1]))
        last_dts: dict[int, int] = {}
        for _, _order, p, stream, offset, tb in items:
            pkt = av.Packet(p.data)
            pts = p.pts - offset if p.pts is not None else None
            dts = (p.dts - offset) if p.dts is not None else pts
            key = id(stream)
            if dts is not None and key in last_dts and dts <= last_dts[key]:
                dts = last_dts[key] + 1  # muxers need strictly increasing dts
                if pts is not None and pts < dts:
                    pts = dts
            if dts is not None:
                last_dts[key] = dts
            pkt.pts, pkt.dts, pkt.time_base = pts, dts, tb
            if p.duration:
                pkt.duration = p.duration
            pkt.is_keyframe = p.key
            for sd in p.side_data:
                try:
                    pkt.set_sidedata(sd)
                except Exception:  # pragma: no cover - informational side data only
                    pass
            pkt.stream = stream
            out.mux(pkt)
        out.close()
    except BaseException:
        try:
            out.close()
        except Exception:
            pass
        raise
    return buf.getvalue()
