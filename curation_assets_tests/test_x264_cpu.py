"""Clip bytes depend on the clip's frames alone (curation_assets.core.x264_cpu, core.transcode).

libx264's AVX-512 macroblock-tree code reads heap memory x264 never wrote when a frame's width is
not a multiple of 128 px, so on AVX-512 CPUs the same source gave different clips from run to run
(the model-frame tap's allocations were enough). The tests fill freshly allocated heap memory with
two different bytes (glibc's ``MALLOC_PERTURB_``) in two processes and ask for the same bytes, and
run the real model-frame tap next to the encoders, under a thread that churns the heap, and ask for
the bytes of a run without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import curation_assets
from curation_assets.core import clip_encoder
from curation_assets.core.model import Span
from curation_assets.core.transcode import TranscodeOptions, transcode_clips
from curation_assets.core.x264_cpu import X264_CPU_AVX512, x264_cpu_mask, x264_options
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
from curation_assets.core.transcode import transcode_clips
spans = [Span(*s) for s in json.loads(sys.argv[2])]
print(json.dumps([hashlib.sha256(o.data).hexdigest() for o in transcode_clips(sys.argv[1], spans)]))
"""


def _clips_in_process_with_heap_fill(source: Path, fill: int) -> list[str]:
    """Clip digests from a fresh process whose malloc fills new memory with ``fill ^ 0xff``."""
    root = str(Path(curation_assets.__file__).resolve().parents[1])  # this checkout, not another install
    env = dict(os.environ, MALLOC_PERTURB_=str(fill),
               PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    spans = json.dumps([[s.start_s, s.end_s, s.start_frame, s.end_frame] for s in SPANS])
    done = subprocess.run([sys.executable, "-c", _CHILD, str(source), spans], env=env, capture_output=True,
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
def test_x264_gets_its_own_cpu_flags_less_avx512():
    mask = x264_cpu_mask()
    assert mask is not None, "an AVX-512 CPU, yet libx264's CPU flags could not be read"
    assert not mask & X264_CPU_AVX512
    assert mask & ((1 << 15) - 1), "x264's other SIMD levels (SSE2 .. AVX2) are kept"
    assert x264_options() == {"x264-params": f"asm={mask}"}


@needs_avx512
def test_widths_x264_never_over_reads_keep_their_bytes(sources, monkeypatch):
    """A 128 px multiple is a width the AVX-512 code handles exactly: there the clips must be byte
    for byte those of libx264 left to its own choice of functions (the fix changes nothing)."""
    ours = _digests(transcode_clips(sources[384], SPANS))
    monkeypatch.setattr(clip_encoder, "x264_options", lambda: {})  # libx264 as it was
    assert _digests(transcode_clips(sources[384], SPANS)) == ours


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
