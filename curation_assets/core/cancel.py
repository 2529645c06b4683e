"""Stopping a run cooperatively: the CLI's Ctrl-C asks, the pipeline stops at the next safe point.

A safe point is between two clips of the transcode or between two videos of a step, never in the
middle of a file write; what was being made is left under temporary names (removed by the next
run) or in the work area (reused by the next run), never as a partial file under a real name.
"""

from __future__ import annotations

import threading

_requested = threading.Event()


class Interrupted(KeyboardInterrupt):
    """Raised at a safe point once a stop was requested (a KeyboardInterrupt: ``except Exception``
    handlers that record a video's errors do not swallow it)."""


def request() -> None:
    _requested.set()


def clear() -> None:
    _requested.clear()


def requested() -> bool:
    return _requested.is_set()


def checkpoint() -> None:
    """Raise :class:`Interrupted` when a stop was requested."""
    if _requested.is_set():
        raise Interrupted("stopped on request (Ctrl-C or SIGTERM)")
