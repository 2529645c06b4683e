"""Clip bytes depend on the clip's frames alone (curation_assets.core.x264_cpu, core.transcode).

libx264's AVX-512 macroblock-tree code reads heap memory x264 never wrote when a frame's row of
macroblocks is not a multiple of 8 (320 px wide, say), so on AVX-512 CPUs the same source gave
different clips from run to run (the model-frame tap's allocations were enough). The tests fill
freshly allocated heap memory with different bytes (glibc's ``MALLOC_PERTURB_``) in separate
processes and ask for the same bytes, and run the real model-frame tap next to the encoders, under
a thread that churns the heap, and ask for the bytes of a run without it. With
``transcode_x264_avx512`` on, x264 keeps its AVX-512 functions for the widths they handle exactly,
and only for those.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import av
import av.logging
import numpy as np
import pytest

import curation_assets
from curation_assets.cli import build_parser, options_from_args
from curation_assets.core.encoders import available_encoders
from curation_assets.core.model import Span
from curation_assets.core.options import PipelineOptions, setting_fields, step_digest, step_settings_changed
from curation_assets.core.pipeline import process_video
from curation_assets.core.steps import CLIPS_STEP
from curation_assets.core.transcode import TranscodeOptions, transcode_clips
from curation_assets.core.x264_cpu import X264_CPU_AVX512, avx512_exact, x264_cpu_mask, x264_options
from curation_assets.defs.shared.resources import CurationSettings
from curation_assets.models.frame_store import AestheticFrames, EmbeddingFrames
from curation_assets.models.tap import FrameRequest
from curation_assets_tests.video_factory import make_video

FPS = 25
SPANS = [Span(0.0, 2.0, 0, 50), Span(2.0, 4.0, 50, 100), Span(4.0, 5.0, 100, 125)]


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


# What x264 asks for before it uses AVX-512 (x264's cpu.c), read here without x264's help.
AVX512 = {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"} <= _cpu_flags()
needs_avx512 = pytest.mark.skipif(not AVX512, reason="the over-read is in libx264's AVX-512 code: this CPU has none")
needs_glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="MALLOC_PERTURB_ is glibc's")


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    d = tmp_path_factory.mktemp("x264cpu")
    return {  # 20 and 24 macroblocks wide: one not a multiple of 8, one a multiple
        320: make_video(d / "w320.mp4", seconds=5, width=320, height=256, fps=FPS, audio=False),
        384: make_video(d / "w384.mp4", seconds=5, width=384, height=256, fps=FPS, audio=False),
    }


def _digests(outputs) -> list[str]:
    assert all(o.error is None for o in outputs), [o.error for o in outputs]
    return [hashlib.sha256(o.data).hexdigest() for o in outputs]


_CHILD = """
import hashlib, json, sys
import curation_assets
from curation_assets.core import transcode
from curation_assets.core.model import Span
from curation_assets.core.transcode import TranscodeOptions, transcode_clips
spans = [Span(*s) for s in json.loads(sys.argv[2])]
options = TranscodeOptions(x264_avx512=sys.argv[3] == "avx512")
print(json.dumps([hashlib.sha256(o.data).hexdigest() for o in transcode_clips(sys.argv[1], spans, options)]))
"""


def _clips_in_process_with_heap_fill(source: Path, fill: int, functions: str = "default") -> list[str]:
    """Clip digests from a fresh process whose malloc fills new memory with ``fill ^ 0xff``;
    ``functions="avx512"``: with ``x264_avx512`` on."""
    root = str(Path(curation_assets.__file__).resolve().parents[1])  # this checkout, not another install
    env = dict(os.environ, MALLOC_PERTURB_=str(fill),
               PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    spans = json.dumps([[s.start_s, s.end_s, s.start_frame, s.end_frame] for s in SPANS])
    done = subprocess.run([sys.executable, "-c", _CHILD, str(source), spans, functions], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@needs_avx512
@needs_glibc
def test_clip_bytes_do_not_depend_on_what_the_heap_held(sources):
    first = _clips_in_process_with_heap_fill(sources[320], 0x55)
    assert _clips_in_process_with_heap_fill(sources[320], 0xAA) == first
    assert _clips_in_process_with_heap_fill(sources[320], 0) == first


@needs_avx512
@needs_glibc
def test_avx512_on_keeps_the_bytes_steady_where_it_is_used(sources):
    """384 px (24 macroblocks): the width the setting hands to x264's AVX-512 code; what the heap
    held before must not show in the clips."""
    first = _clips_in_process_with_heap_fill(sources[384], 0x55, "avx512")
    assert _clips_in_process_with_heap_fill(sources[384], 0xAA, "avx512") == first
    assert _clips_in_process_with_heap_fill(sources[384], 0, "avx512") == first


@needs_avx512
def test_x264_gets_its_own_cpu_flags_less_avx512():
    mask = x264_cpu_mask()
    assert mask is not None, "an AVX-512 CPU, yet libx264's CPU flags could not be read"
    assert not mask & X264_CPU_AVX512
    assert mask & ((1 << 15) - 1), "x264's other SIMD levels (SSE2 .. AVX2) are kept"
    masked = {"x264-params": f"asm={mask}"}
    assert x264_options(320) == masked and x264_options(384) == masked  # the default: never AVX-512
    assert x264_options(384, avx512=True) == {}  # x264's own choice, AVX-512 included
    assert x264_options(320, avx512=True) == masked  # a width it over-reads: masked all the same


def test_the_widths_avx512_handles_exactly():
    """Macroblocks per row (the width padded to 16 px) a multiple of 8: the widths measured steady
    under heap fills (module docstring) and the common ones; the widths measured to vary are not."""
    for width in (128, 256, 384, 512, 640, 896, 1024, 1152, 1270, 1280, 1920, 2560, 3840):
        assert avx512_exact(width), width
    for width in (320, 352, 368, 400, 448, 528, 576, 854, 1264, 1366, 1904, 1928):
        assert not avx512_exact(width), width


def _x264_capabilities(source: Path, x264_avx512: bool) -> list[str]:
    """What libx264 says it uses, for each clip of a pipeline run over ``source``."""
    # the run's first check of which encoders open opens a libx264 with its own CPU flags (it encodes
    # nothing): done before the capture, so the lines are those of the clips' encoders alone
    available_encoders()
    with av.logging.Capture(local=False) as logs:
        previous = av.logging.get_level()
        av.logging.set_level(av.logging.INFO)
        try:
            options = PipelineOptions(input_path=str(source.parent), output_path=str(source.parent / "out"),
                                      fixed_stride_split_duration=2.0, generate_previews=False,
                                      motion_filter="disable", generate_embeddings=False,
                                      transcode_x264_avx512=x264_avx512)
            result = process_video(str(source), source.name, functools.partial(open, source, "rb"), options)
        finally:
            av.logging.set_level(previous)
    assert result.clips and not result.errors, result.errors
    return [text for _level, name, text in logs if name == "libx264" and "cpu capabilities" in text]


@needs_avx512
def test_the_setting_reaches_the_encoders(sources):
    """``transcode_x264_avx512`` goes from the pipeline's options to every clip's encoder, for the
    widths it allows and no other."""
    on = _x264_capabilities(sources[384], True)
    assert on and all("AVX512" in line for line in on), on  # (PyAV's log may fold repeated lines)
    off = _x264_capabilities(sources[384], False)
    assert off and not any("AVX512" in line for line in off), off
    assert not any("AVX512" in line for line in _x264_capabilities(sources[320], True))


def _ffmpeg_capabilities(source: Path, x264_params: str | None) -> str:
    """What Debian's ffmpeg's libx264 says it uses encoding ``source`` with ``x264_params``."""
    params = ["-x264-params", x264_params] if x264_params else []
    done = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "info", "-i", str(source), "-frames:v", "5",
                           "-c:v", "libx264", "-preset", "medium", *params, "-f", "null", "-"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return next(line.split("cpu capabilities:", 1)[1].strip() for line in done.stderr.splitlines()
                if "cpu capabilities:" in line)


@needs_avx512
# Debian's ffmpeg is what the race times; CI installs it (Makefile DEBIAN_PACKAGES), so this skips only elsewhere
@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the race's baseline is Debian's ffmpeg")
def test_the_race_times_ffmpeg_with_the_functions_our_clips_use(sources, tmp_path):
    """``reference_race.py``'s second baseline: ffmpeg's libx264 given our clips' parameters uses
    the functions our clips' libx264 uses (AVX-512 masked), where plain ffmpeg uses AVX-512; with
    ``--transcode-x264-avx512`` at a width it allows, there is no such baseline (x264's own choice)."""
    sys.path.insert(0, str(Path(curation_assets.__file__).resolve().parents[1] / "benchmarks"))
    try:
        import reference_race
    finally:
        sys.path.pop(0)
    ours = {line.split("cpu capabilities:", 1)[1].strip() for line in _x264_capabilities(sources[320], False)}
    params = reference_race.our_x264_params(sources[320])
    assert params is not None
    assert ours == {_ffmpeg_capabilities(sources[320], params)}, (ours, params)
    assert "AVX512" in _ffmpeg_capabilities(sources[320], None)
    assert reference_race.our_x264_params(sources[384], [*reference_race.CLI_ARGS, "--transcode-x264-avx512"]) is None
    assert reference_race.our_x264_params(sources[320], [*reference_race.CLI_ARGS, "--transcode-x264-avx512"])
    # an odd width is encoded one pixel narrower: 385 px (25 macroblocks) as 384 (24), where AVX-512 is kept
    odd = tmp_path / "w385.mkv"  # FFV1: H.264 cannot store 4:2:0 frames of an odd width
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    f"testsrc=size=385x256:rate={FPS}", "-t", "2", "-c:v", "ffv1", "-pix_fmt", "yuv420p", str(odd)],
                   check=True, timeout=120)
    assert all("AVX512" in line for line in _x264_capabilities(odd, True))
    assert reference_race.our_x264_params(odd, [*reference_race.CLI_ARGS, "--transcode-x264-avx512"]) is None


def test_a_run_says_where_the_setting_changes_nothing(caplog):
    from curation_assets.core import x264_cpu

    x264_cpu._say_what_avx512_does.cache_clear()
    with caplog.at_level("INFO", logger="curation_assets.core.x264_cpu"):
        x264_options(320, avx512=True)
        x264_options(384, avx512=True)
        x264_options(320)
    said = [r.getMessage() for r in caplog.records]
    if AVX512:
        assert said == ["transcode_x264_avx512: 320 px wide clips (20 macroblocks a row, not a multiple of 8) are "
                        "encoded without AVX-512, whose code would read past the row"]
    else:
        assert len(said) == 1 and "finds no AVX-512 on this CPU" in said[0]


def test_the_setting_is_recorded_only_when_set():
    """Added after outputs were written: left at its default it is in no record, digest or data
    version, so what earlier versions wrote stays current; set, it makes video_clips stale both ways."""
    off, on = PipelineOptions(), PipelineOptions(transcode_x264_avx512=True)
    hashed = {name for name, _k, _d, meta in setting_fields() if meta.hashed}
    assert set(off.record()["settings"]) == hashed - {"transcode_x264_avx512"}
    assert on.record()["settings"]["transcode_x264_avx512"] is True
    assert off.record()["settings_hash"] != on.record()["settings_hash"]
    assert step_digest(off, CLIPS_STEP) != step_digest(on, CLIPS_STEP)
    assert step_settings_changed(off, CLIPS_STEP, off.record()["settings"]) == []
    assert step_settings_changed(off, CLIPS_STEP, on.record()["settings"]) == ["transcode_x264_avx512"]
    assert step_settings_changed(on, CLIPS_STEP, off.record()["settings"]) == ["transcode_x264_avx512"]


def test_the_flag_and_the_resource_carry_it():
    args = build_parser().parse_args(["run", "--video-dir", "in", "--output-path", "out", "--transcode-x264-avx512"])
    opts = options_from_args(args)
    assert opts.transcode_x264_avx512 is True
    assert CurationSettings.from_options(opts).options() == opts


def test_the_setting_needs_libx264():
    with pytest.raises(ValueError, match="transcode_x264_avx512 chooses libx264's functions"):
        PipelineOptions(input_path="/in", output_path="/out", transcode_encoder="libvpx-vp9",
                        transcode_x264_avx512=True)


class _HeapChurn:
    """A thread that allocates, fills and frees buffers of many sizes, as a busy process does."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rng = np.random.default_rng(7)
        kept: list[bytes] = []
        while not self.stop.is_set():
            kept.append(rng.integers(0, 256, int(rng.integers(64, 200_000)), dtype=np.uint8).tobytes())
            if len(kept) > 40:
                del kept[: int(rng.integers(1, 40))]

    def __enter__(self) -> _HeapChurn:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def test_the_model_frame_tap_never_changes_a_clip(sources):
    """The tap sees every frame the encoders see, converts and keeps some: the clips must be the
    bytes of a run without it, run after run, with other threads allocating meanwhile."""
    request = FrameRequest(embedding=EmbeddingFrames(8, 224), aesthetic=AestheticFrames(224))
    plain = _digests(transcode_clips(sources[320], SPANS))
    for _ in range(3):
        with _HeapChurn():
            tapped = transcode_clips(sources[320], SPANS, TranscodeOptions(tap=request.tap))
        assert _digests(tapped) == plain
        assert all(o.model_frames for o in tapped)
    with _HeapChurn():
        assert _digests(transcode_clips(sources[320], SPANS)) == plain
