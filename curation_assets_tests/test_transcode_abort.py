"""An interrupt of any kind ends a transcode with two decode positions promptly and cleanly.

Dagster's own interrupt (the SIGINT of a UI *Terminate*) is raised inside the step's thread as
``DagsterExecutionInterruptedError``: a BaseException, not an Exception, and not
``core.cancel.Interrupted``, at whatever the thread is doing. ``_Interrupt`` stands in for it here,
raised at several moments of ``transcode_clips`` with two decode positions (from ``on_clip_done``,
while a clip is being taken off the pending list, in the second position's own thread, and from a
timer thread while the transcode's thread waits). Each time: the exception propagates unchanged,
the call returns within seconds, no ``decode-position-2`` or clip encoder thread outlives it, and
``on_clip_done`` is not called after the interrupt (a stopped step writes nothing more).

Each call runs on a thread joined with a timeout, so a transcode that waits for ever fails its test
instead of hanging the suite.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from curation_assets.core import clip_encoder
from curation_assets.core.model import Span
from curation_assets.core.transcode import TranscodeOptions, transcode_clips

from .video_factory import make_video

FPS = 25
SPANS = [Span(a, a + 2.0, a * FPS, (a + 2) * FPS) for a in (0, 2, 4, 6)]  # two clips for each position
WORKERS = ("decode-position-2", "clip-encoder-")
LIMIT_S = 20.0  # a transcode still running then waits for ever
PROMPT_S = 5.0  # what an interrupted transcode may take to return


class _Interrupt(BaseException):
    """A stand-in for Dagster's ``DagsterExecutionInterruptedError``."""


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("abort") / "v.mp4", seconds=8, fps=FPS, width=192, height=128,
                      audio=True)


def _options(**kw: Any) -> TranscodeOptions:
    return TranscodeOptions(encoder_threads=1, decode_positions=2, **kw)


def _workers(before: set[threading.Thread]) -> list[str]:
    return [t.name for t in threading.enumerate()
            if t not in before and t.is_alive() and t.name.startswith(WORKERS)]


def _run(call: Callable[[], Any], interrupt_after: Callable[[int], float | None] | None = None) -> dict:
    """``call`` on its own thread, joined with a timeout. ``interrupt_after(ident)``, when given, runs
    on a timer thread and raises ``_Interrupt`` in the transcode's thread (at an arbitrary moment)."""
    box: dict = {}
    before = set(threading.enumerate())

    def target() -> None:
        try:
            box["result"] = call()
        except BaseException as exc:
            box["error"] = exc
        finally:
            box["ended"] = time.monotonic()

    thread = threading.Thread(target=target, name="transcode-under-test", daemon=True)
    started = time.monotonic()
    thread.start()
    if interrupt_after is not None:
        assert thread.ident is not None
        box["interrupted_at"] = interrupt_after(thread.ident)
    thread.join(LIMIT_S)
    assert not thread.is_alive(), f"transcode_clips still waiting after {LIMIT_S} s (threads: {_workers(before)})"
    box["elapsed"] = box["ended"] - started
    box["workers"] = _workers(before)
    return box


def _assert_clean_stop(box: dict, raised: BaseException | type[BaseException], calls_after: list) -> None:
    error = box.get("error")
    if isinstance(raised, BaseException):
        assert error is raised, f"expected the interrupt itself, got {error!r}"
    else:
        assert isinstance(error, raised), f"expected {raised.__name__}, got {error!r}"
    assert not box["workers"], f"threads outlived transcode_clips: {box['workers']}"
    assert not calls_after, f"on_clip_done called after the interrupt for {calls_after}"
    assert box["elapsed"] < PROMPT_S, box["elapsed"]


class _Callback:
    """``on_clip_done`` that raises a fresh ``_Interrupt`` from the ``at``-th clip on (as a stop
    that stays requested does) and records the clips it is called for after the first raise."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.calls = 0
        self.first: _Interrupt | None = None
        self.after: list = []

    def __call__(self, out) -> None:
        self.calls += 1
        if self.first is not None:
            self.after.append(out.span.start_s)
        if self.calls >= self.at:
            exc = _Interrupt(f"interrupted at clip {self.calls}")
            self.first = self.first or exc
            raise exc


@pytest.mark.parametrize("at", [1, 2], ids=["first-clip", "later-clip"])
def test_an_interrupt_raised_by_on_clip_done(video, at):
    callback = _Callback(at)
    box = _run(lambda: transcode_clips(video, SPANS, _options(), on_clip_done=callback))
    assert callback.first is not None
    _assert_clean_stop(box, callback.first, callback.after)


@pytest.mark.parametrize("when", ["before", "after"])
def test_an_interrupt_while_a_clip_is_taken_off_the_pending_list(video, monkeypatch, when):
    """Raised in the transcode's thread as it starts the encoder of its second clip: the clip is
    neither pending any more nor active yet (``before``: no encoder; ``after``: one waiting)."""
    real_start = clip_encoder.ClipJob.start
    raised: list[_Interrupt] = []
    calls_after: list = []

    def start(self) -> None:
        if self.index == 1 and threading.current_thread().name == "transcode-under-test":
            if when == "after":
                real_start(self)
            raised.append(_Interrupt("while starting clip 1"))
            raise raised[-1]
        real_start(self)

    monkeypatch.setattr(clip_encoder.ClipJob, "start", start)
    box = _run(lambda: transcode_clips(video, SPANS, _options(),
                                       on_clip_done=lambda out: raised and calls_after.append(out.span.start_s)))
    assert raised
    _assert_clean_stop(box, raised[0], calls_after)


def test_an_interrupt_in_the_second_positions_thread_ends_the_transcode(video, monkeypatch):
    """A BaseException in ``decode-position-2`` (as its first clip's encoder is started) is not
    swallowed by it, and the transcode's thread does not wait for that clip: it raises the same."""
    real_start = clip_encoder.ClipJob.start
    raised: list[_Interrupt] = []

    def start(self) -> None:
        if threading.current_thread().name == "decode-position-2":
            raised.append(_Interrupt("in the second position"))
            raise raised[-1]
        real_start(self)

    monkeypatch.setattr(clip_encoder.ClipJob, "start", start)
    box = _run(lambda: transcode_clips(video, SPANS, _options()))
    assert raised
    _assert_clean_stop(box, raised[0], [])


class _SlowTap:
    """A clip tap that takes ``delay`` per frame: the encoders lag the decode, so the transcode's
    thread spends its time waiting for them (a full clip queue)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def plan(self, pts: list[int]) -> set[int]:
        return set()

    def add(self, index: int, pts: int, frame) -> None:
        time.sleep(self.delay)

    def finish(self) -> bytes | None:
        return None


def _async_interrupt(ident: int) -> None:
    assert ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(_Interrupt)) == 1


def test_an_interrupt_from_another_thread_while_waiting_on_an_encoder(video):
    """Raised (``PyThreadState_SetAsyncExc``) while the transcode's thread waits for slow encoders."""
    calls: list = []
    after: list = []

    def done(out) -> None:
        (after if "at" in state else calls).append(out.span.start_s)

    state: dict = {}

    def interrupt(ident: int) -> float:
        time.sleep(1.0)  # well into the first clips, every encoder queue full
        state["at"] = time.monotonic()
        _async_interrupt(ident)
        return state["at"]

    options = _options(tap=lambda tb, fmt, duration: _SlowTap(0.2))
    box = _run(lambda: transcode_clips(video, SPANS, options, on_clip_done=done), interrupt)
    assert not calls, "the interrupt came too late to test anything"
    _assert_clean_stop(box, _Interrupt, after)
    assert box["ended"] - box["interrupted_at"] < 1.5, box["ended"] - box["interrupted_at"]


def test_an_interrupt_from_another_thread_while_waiting_for_the_other_position(video, monkeypatch):
    """Raised while the transcode's thread, its own clips done, waits for the second position's."""
    real_put = clip_encoder.ClipJob.put
    first_done = threading.Event()
    after: list = []
    state: dict = {}

    def put(self, item) -> None:
        if threading.current_thread().name == "decode-position-2":
            time.sleep(0.03)  # the second position's clips take about 3 s
        real_put(self, item)

    def done(out) -> None:
        if "at" in state:
            after.append(out.span.start_s)
        elif out.span.start_s == 2:
            first_done.set()

    def interrupt(ident: int) -> float:
        assert first_done.wait(LIMIT_S)
        time.sleep(0.3)
        state["at"] = time.monotonic()
        _async_interrupt(ident)
        return state["at"]

    monkeypatch.setattr(clip_encoder.ClipJob, "put", put)
    box = _run(lambda: transcode_clips(video, SPANS, _options(), on_clip_done=done), interrupt)
    _assert_clean_stop(box, _Interrupt, after)
