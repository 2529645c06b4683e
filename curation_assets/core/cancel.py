"""Stopping a run cooperatively: whoever runs the pipeline says how to ask, the pipeline stops at
the next safe point.

A safe point is between two clips of the transcode or between two videos of a step, never in the
middle of a file write; what was being made is left under temporary names (removed by the next
run) or in the work area (reused by the next run), never as a partial file under a real name.

The question "stop now?" is a callable set for the current context (:func:`stop_check`: a step
body's thread, the CLI's main thread while it waits for the instance), never a process-wide flag:
two runs in one process each answer their own, and core needs nothing of Dagster to ask it
(the Dagster layer hands its ``RunControl`` resource's answer in, ``defs/shared/run_control.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

StopCheck = Callable[[], bool]

_check: ContextVar[StopCheck | None] = ContextVar("curation_stop_check", default=None)


class Interrupted(KeyboardInterrupt):
    """Raised at a safe point once a stop was requested (a KeyboardInterrupt: ``except Exception``
    handlers that record a video's errors do not swallow it)."""


@contextmanager
def stop_check(check: StopCheck) -> Iterator[None]:
    """Within the block (on this thread or task), :func:`checkpoint` asks ``check`` whether to stop."""
    token = _check.set(check)
    try:
        yield
    finally:
        _check.reset(token)


def requested() -> bool:
    """Whether the current context's stop check asks for a stop (False where none is set)."""
    check = _check.get()
    return bool(check is not None and check())


def checkpoint() -> None:
    """Raise :class:`Interrupted` when the current context's stop check asks for a stop."""
    if requested():
        raise Interrupted("stopped on request (Ctrl-C or SIGTERM)")
