"""The CLI's first video begins before its run: the transcode step of that video starts on a
thread as soon as the settings are checked and the videos listed, while the CLI builds the
definitions, opens the Dagster instance and starts the run (about a second of one core's work
that used to come before any clip was encoded).

The run's ``video_clips`` step then :func:`claim` s it instead of starting the same work again:
it gets the result the step would have made (``steps.clips_of_video``, same source, same
settings), waits for it on its own thread and hears every clip's progress there, in order, as if
it had run the work itself. A head start that no step claims is stopped (:meth:`HeadStart.discard`)
at its next safe point, as a stop would: what it made is left in the work area, whole or under
temporary names, as after any stop. Only a video with exactly the step's settings is taken;
anything else (another instance's run, a mismatch of settings) runs the step as always.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from . import cancel, steps
from .model import VideoResult
from .options import PipelineOptions
from .pipeline import NO_MODELS, ModelParts, Progress, ProgressCallback
from .work import WorkArea

log = logging.getLogger(__name__)

_DONE = object()
_pending: dict[str, HeadStart] = {}
_pending_lock = threading.Lock()


class HeadStart:
    """One video's transcode step running ahead of the run that will claim it."""

    def __init__(self, source_url: str, rel_path: str, options: PipelineOptions, area: WorkArea,
                 models: ModelParts, stop: Callable[[], bool]) -> None:
        self.source_url, self.rel_path, self.options = source_url, rel_path, options
        self.started_at = time.perf_counter()  # the video's work began here, not when the step did
        self._stop = stop
        self._discarded = False
        self._events: queue.Queue = queue.Queue()  # progress ticks, then the outcome, then _DONE
        self._thread = threading.Thread(target=self._work, args=(area, models), name="curation-head-start",
                                        daemon=True)

    def _stopping(self) -> bool:
        return self._discarded or self._stop()

    def _work(self, area: WorkArea, models: ModelParts) -> None:
        try:
            with cancel.stop_check(self._stopping):
                outcome: object = steps.clips_of_video(self.source_url, self.rel_path, self.options, area,
                                                       on_progress=self._events.put, models=models)
        except BaseException as exc:  # noqa: BLE001 - a stop (or anything else) is re-raised by take()
            outcome = exc
        self._events.put(outcome)
        self._events.put(_DONE)

    def take(self, on_progress: ProgressCallback | None = None) -> tuple[VideoResult, bool]:
        """Wait for the result on the caller's thread, passing it every clip's progress in order;
        ``(result, reused)`` as ``steps.clips_of_video`` returns it. A stop raises ``cancel.Interrupted``
        here as it would have in the step's own transcode."""
        outcome: object = None
        while True:
            item = self._events.get()
            if item is _DONE:
                break
            if isinstance(item, Progress):
                if on_progress is not None:
                    on_progress(item)
            else:
                outcome = item
        if isinstance(outcome, BaseException):
            raise outcome
        assert isinstance(outcome, tuple)
        return outcome

    def discard(self) -> None:
        """No step claimed it (the run stopped or failed first), or the claim is over: stop it at
        its next safe point and wait for its thread."""
        with _pending_lock:
            if _pending.get(self.source_url) is self:
                del _pending[self.source_url]
        self._discarded = True
        self._thread.join()


def differences(a: PipelineOptions, b: PipelineOptions) -> list[str]:
    """The settings that differ between two options (by field name)."""
    mine, theirs = a.values(), b.values()
    return [name for name in mine if mine[name] != theirs[name]]


def begin(source_url: str, rel_path: str, options: PipelineOptions, *, stop: Callable[[], bool],
          models: ModelParts = NO_MODELS) -> HeadStart:
    """Start ``rel_path``'s transcode step now, for the step of a run in this process to claim."""
    head = HeadStart(source_url, rel_path, options, WorkArea.for_options(options), models, stop)
    with _pending_lock:
        previous = _pending.pop(source_url, None)
        _pending[source_url] = head
    if previous is not None:
        previous.discard()
    head._thread.start()
    return head


def claim(source_url: str, rel_path: str, options: PipelineOptions) -> HeadStart | None:
    """The head start of this video with exactly these settings, taken off the pending ones, or
    None. A head start of the same video with other settings is stopped (the step makes it again)
    and the settings that differ are logged: the CLI and the step should agree."""
    with _pending_lock:
        head = _pending.pop(source_url, None)
    if head is None:
        return None
    changed = differences(head.options, options) if head.rel_path == rel_path else ["rel_path"]
    if changed:
        log.warning("the transcode begun before the run of %s is not used: the run's settings differ (%s)",
                    rel_path, ", ".join(changed))
        head.discard()
        return None
    return head

