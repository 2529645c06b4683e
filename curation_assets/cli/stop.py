"""Ctrl-C and SIGTERM during a CLI run: stop at the next safe point, or at once on the second."""

from __future__ import annotations

import os
import sys
from typing import Any


class StopOnSignal:
    """Ctrl-C (SIGINT) or SIGTERM: the first sets :attr:`requested`, which the runs' ``run_control``
    resource (``cli.control``) answers at their next safe point (``core.cancel``: between clips,
    never in a file's write), and no further batch starts; the second stops the process at once
    (every file under a real name is whole: writes are atomic).

    Dagster swallows SIGINT on the thread that executes a run, so the runs execute on a worker
    thread and this thread keeps the signals."""

    def __init__(self, stream=None) -> None:
        self.requested = False
        self._owned = None
        if stream is None:
            # a copy of the terminal's stderr: while a step runs, Dagster points fd 2 at its compute log
            try:
                stream = self._owned = os.fdopen(os.dup(sys.stderr.fileno()), "w")
            except (AttributeError, OSError, ValueError):  # no real file behind sys.stderr (captured)
                stream = sys.stderr
        self.stream = stream
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.requested:
            try:
                self.stream.write("\ncuration-assets: stopped at once\n")
                self.stream.flush()
            except (OSError, ValueError):  # the stream closed while the run wound down
                pass
            os._exit(130)
        self.requested = True
        self.stream.write("\ncuration-assets: stopping after the current clip (press Ctrl-C again to stop at once)\n")
        self.stream.flush()

    def __enter__(self) -> StopOnSignal:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        import signal

        if not self.requested:  # once a stop was asked for, a further signal still stops at once (exit 130)
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)
        if self._owned is not None:
            self._owned.close()

    def run(self, fn):
        """``fn()`` on a worker thread, this thread waiting in short slices so that it handles signals."""
        import threading

        from ..core import cancel

        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = fn()
            except cancel.Interrupted:
                box["value"] = []
            except BaseException as exc:  # noqa: BLE001 - re-raised on the calling thread
                box["error"] = exc

        worker = threading.Thread(target=target, name="curation-run", daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(0.2)
        if "error" in box:
            raise box["error"]
        return box["value"]
