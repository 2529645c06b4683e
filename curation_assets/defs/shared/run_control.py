"""How a run's steps report progress and notices, and learn whether to stop: one resource.

The steps call :class:`RunControl` (``progress`` per clip, ``notice`` for a run-level message,
``watching()`` around their work so core's safe points ask ``stop_requested``). The default one,
bound in every code location (the UI, the daemon's runs), keeps nothing and never stops by
itself: Dagster's own run termination interrupts those runs (its SIGINT to the step process, raised
as ``DagsterExecutionInterruptedError``, not retried: ``defs/shared/retries.py``). The CLI binds
its own (``cli/control.py``), wired to its progress printer and its Ctrl-C / SIGTERM handling, so
nothing passes through module globals.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from ...core import cancel
from ...core.pipeline import Progress

log = logging.getLogger(__name__)


class RunControl(dg.ConfigurableResource):
    """A run's progress, notices and stop (the default: logged at debug level, never stops)."""

    def progress(self, tick: Progress) -> None:
        """One clip of a video (or the video) finished; the step logs its own progress lines."""
        log.debug("%s: clip %d/%d", tick.rel_path, tick.clips_done, tick.clips_total)

    def notice(self, message: str) -> None:
        """A run-level message worth repeating under a summary (the step logged it already)."""

    def stop_requested(self) -> bool:
        """Whether the run should stop at its next safe point."""
        return False

    @contextmanager
    def watching(self) -> Iterator[None]:
        """Core's safe points (``core.cancel.checkpoint``) within the block ask :meth:`stop_requested`."""
        with cancel.stop_check(self.stop_requested):
            yield

    def checkpoint(self) -> None:
        """Raise ``core.cancel.Interrupted`` when a stop was requested (a safe point of the step)."""
        with self.watching():
            cancel.checkpoint()
