"""The settings of issue 13: model_frames, transcode_preset, transnetv2_device; and the batch loader."""

from __future__ import annotations

import io
import re
import threading

import av
import numpy as np
import pytest

from curation_assets.cli import UsageError, build_parser, options_from_args
from curation_assets.core.model import Span
from curation_assets.core.options import DEFAULT_X264_PRESET, PipelineOptions
from curation_assets.models.video import process_video
from curation_assets.core.transcode import TranscodeError, TranscodeOptions, transcode_clips
from curation_assets.core.x264_cpu import x264_options
from curation_assets.defs.shared.resources import CurationSettings, options_from_env
from curation_assets.models._runtime import background

from .video_factory import frame_rgb, make_video


def test_defaults_and_validation():
    d = PipelineOptions()
    assert (d.model_frames, d.transcode_preset, d.transnetv2_device) == ("source", "medium", "auto")
    with pytest.raises(ValueError, match="model_frames='pixels'"):
        PipelineOptions(model_frames="pixels")
    with pytest.raises(ValueError, match="transcode_preset='warp'"):
        PipelineOptions(transcode_preset="warp")
    with pytest.raises(ValueError, match="needs transcode_encoder=libx264, not 'copy'"):
        PipelineOptions(transcode_preset="veryfast", transcode_encoder="copy")
    with pytest.raises(ValueError, match="transnetv2_device='cuda' needs splitting_algorithm=transnetv2"):
        PipelineOptions(transnetv2_device="cuda")
    with pytest.raises(ValueError, match="no model step to feed"):
        PipelineOptions(model_frames="clip", generate_embeddings="off")
    assert PipelineOptions(model_frames="clip", generate_embeddings="off", generate_captions=True).model_frames == "clip"
    record = PipelineOptions(transcode_preset="veryfast").record()["settings"]
    assert record["transcode_preset"] == "veryfast" and record["model_frames"] == "source"


def test_cli_flags_resource_fields_and_environment(capsys):
    args = build_parser().parse_args(["run", "--video-dir", "in", "--output-path", "out", "--transcode-preset",
                                      "veryfast", "--model-frames", "clip", "--splitting-algorithm", "transnetv2",
                                      "--transnetv2-device", "cpu"])
    opts = options_from_args(args)
    assert (opts.transcode_preset, opts.model_frames, opts.transnetv2_device) == ("veryfast", "clip", "cpu")
    assert CurationSettings.from_options(opts).options() == opts
    env = options_from_env({"CURATION_MODEL_FRAMES": "clip", "CURATION_TRANSCODE_PRESET": "fast"})
    assert (env.model_frames, env.transcode_preset) == ("clip", "fast")
    with pytest.raises(SystemExit, match="^2$"):  # argparse's exit status for a usage error
        build_parser().parse_args(["run", "--video-dir", "in", "--output-path", "out", "--model-frames", "both"])
    assert "--model-frames: invalid choice: 'both'" in capsys.readouterr().err
    import torch

    if not torch.cuda.is_available():
        args = build_parser().parse_args(["run", "--video-dir", "in", "--output-path", "out", "--splitting-algorithm",
                                          "transnetv2", "--transnetv2-device", "cuda"])
        from curation_assets import preflight

        assert any("no CUDA device" in p for p in preflight.problems(options_from_args(args)))  # refused up front


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("preset") / "s.mp4", seconds=2, fps=25, audio=False)


def test_default_preset_gives_the_bytes_of_x264s_own_defaults(source):
    """Passing preset=medium is x264's default: the same bytes as no preset at all; veryfast differs
    and says so in the stream (x264 writes its settings into the first frame's SEI)."""

    def encode(options: dict) -> bytes:
        buf = io.BytesIO()
        with av.open(buf, mode="w", format="mp4") as out:
            vs = out.add_stream("libx264", rate=25, options=options)
            vs.width, vs.height, vs.pix_fmt = 160, 128, "yuv420p"
            for i in range(30):
                frame = av.VideoFrame.from_ndarray(frame_rgb(i, 160, 128), format="rgb24")
                frame.pts = i
                for packet in vs.encode(frame):
                    out.mux(packet)
            for packet in vs.encode(None):
                out.mux(packet)
        return buf.getvalue()

    # x264's CPU flags as the project passes them (core.x264_cpu): with AVX-512, a 160 px wide
    # frame's bytes vary from one encode to the next, whatever the preset
    same_cpu = x264_options(160)
    assert encode(same_cpu) == encode({**same_cpu, "preset": DEFAULT_X264_PRESET})
    span = [Span(0.0, 2.0, 0, 50)]
    (medium,) = transcode_clips(str(source), span)
    (veryfast,) = transcode_clips(str(source), span, TranscodeOptions(preset="veryfast"))
    assert b"subme=7" in medium.data and b"subme=2" in veryfast.data  # medium's and veryfast's subpel refinement
    assert medium.num_frames == veryfast.num_frames == 50
    with pytest.raises(TranscodeError, match="x264 preset"):
        transcode_clips(str(source), span, TranscodeOptions(encoder="libvpx-vp9", preset="veryfast"))


def _cut_video(tmp_path):
    return make_video(tmp_path / "cuts.mp4", seconds=4, fps=25, width=96, height=64, audio=False, scene_cut_every=2.0)


TRANSNETV2 = dict(splitting_algorithm="transnetv2", generate_previews=False, motion_filter="disable",
                  generate_embeddings="off", transnetv2_min_length_s=0.5)


def test_transnetv2_device_reaches_the_scene_pass(tmp_path):
    """cuda on a machine without one is this video's error (so the setting got to TransNetV2);
    auto is cuda when torch sees one, else cpu."""
    import torch

    from curation_assets.core.devices import resolve_device

    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the cuda device is taken, not refused (the slow test runs it)")
    video = _cut_video(tmp_path)
    result = process_video(str(video), "cuts.mp4", lambda: open(video, "rb"),
                           PipelineOptions(**TRANSNETV2, transnetv2_device="cuda"))
    assert "device 'cuda' requested but CUDA is not available" in result.errors["split"] and not result.clips


def test_one_device_check_for_transnetv2_and_dedup():
    """core.devices.checked_device is the check both TransNetV2 and the dedup step put a model through."""
    import torch

    from curation_assets.core.devices import checked_device
    from curation_assets.models.transnetv2 import load_transnetv2
    from curation_assets.packaging.dedup import DedupSettings, semdedup

    assert checked_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert checked_device("cpu") == torch.device("cpu")
    for bad, message in (("meta", "must be 'cpu' or 'cuda[:N]'"), ("nonsense", "unknown torch device")):
        with pytest.raises(ValueError, match=re.escape(message)):
            checked_device(bad)
        with pytest.raises(ValueError, match=re.escape(message)):
            load_transnetv2(device=bad)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            semdedup(["a"], np.ones((1, 4), dtype=np.float32), DedupSettings(device="cuda"))


@pytest.mark.slow
def test_transnetv2_splits_the_same_on_each_device_setting(tmp_path):
    video = _cut_video(tmp_path)
    import torch

    devices = ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    spans = {}
    for device in devices:
        result = process_video(str(video), "cuts.mp4", lambda: open(video, "rb"),
                               PipelineOptions(**TRANSNETV2, transnetv2_device=device))
        assert not result.errors and result.clips
        spans[device] = [c.span for c in result.clips]
    assert all(s == spans["cpu"] for s in spans.values())


def test_background_iterator_keeps_order_raises_and_stops():
    assert list(background(iter(range(50)), depth=2)) == list(range(50))

    def failing():
        yield 1
        raise RuntimeError("batch 2 could not be stacked")

    out = []
    with pytest.raises(RuntimeError, match="batch 2"):
        for item in background(failing(), depth=2):
            out.append(item)
    assert out == [1]

    closed = threading.Event()

    def endless():
        try:
            i = 0
            while True:
                yield np.full(4, i)
                i += 1
        finally:
            closed.set()

    for item in background(endless(), depth=3):
        if item[0] == 5:
            break
    assert closed.wait(5), "a consumer that stops early closes the producer"
