"""The CLI's ``RunControl``: its runs' progress ticks go to its progress printer, their notices to
its summary, and their stop question to its Ctrl-C / SIGTERM handler (``stop.StopOnSignal``).

Bound by value (``dg.ResourceDefinition.hardcoded_resource``) in the definitions the CLI builds
for its own in-process runs, so the steps call this very object: no module global carries a
tick or a stop between the CLI and the assets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from ..core.pipeline import Progress
from ..definitions import RunControl


class CliRunControl(RunControl):
    """Progress to ``on_progress``, notices kept (once each) in :attr:`notices`, stop when ``stop()``."""

    _on_progress: Callable[[Progress], None] = PrivateAttr()
    _stop: Callable[[], bool] = PrivateAttr()
    _notices: list[str] = PrivateAttr(default_factory=list)

    @classmethod
    def wired(cls, on_progress: Callable[[Progress], None], stop: Callable[[], bool]) -> CliRunControl:
        control = cls()
        control._on_progress, control._stop = on_progress, stop
        return control

    @property
    def notices(self) -> list[str]:
        return self._notices

    def progress(self, tick: Progress) -> None:
        self._on_progress(tick)

    def notice(self, message: str) -> None:
        if message not in self._notices:
            self._notices.append(message)

    def stop_requested(self) -> bool:
        return self._stop()

    def as_resource(self) -> Any:
        """This object as the ``run_control`` resource (the steps get it, not a copy made from config)."""
        return dg.ResourceDefinition.hardcoded_resource(self, "the CLI's progress printer and stop")
