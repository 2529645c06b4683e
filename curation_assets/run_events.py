"""In-process run events: assets emit progress ticks (``core.pipeline.Progress``) and notices; the CLI
(when it runs them in-process) listens.

Dagster's own logs carry the same information for runs launched from the UI; this only lets a
terminal show a live progress line without parsing the event log.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Notice:
    """A run-level message the CLI repeats under its summary (e.g. embeddings skipped)."""

    message: str

_listeners: list[Callable[[Any], None]] = []
_lock = threading.Lock()


def subscribe(listener: Callable[[Any], None]) -> Callable[[], None]:
    """Register a listener; returns a function that unregisters it."""
    with _lock:
        _listeners.append(listener)

    def unsubscribe() -> None:
        with _lock:
            if listener in _listeners:
                _listeners.remove(listener)

    return unsubscribe


def emit(event: Any) -> None:
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener(event)
