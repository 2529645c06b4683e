"""NeMo Curator's executors as this project reads them, so ``pipeline.run(XennaExecutor())`` ports.

NeMo hands its stages to Cosmos-Xenna or Ray Data workers; here a pipeline is Dagster assets, and
``pipeline.run(executor)`` is the CLI's batched in-process run whichever executor is given. Running
the steps in several processes or on several machines is Dagster's executor's job: the code location
from ``pipeline.definitions()`` (``CURATION_EXECUTOR``, docs/deployment.md). The executors' worker
sizing (their ``config``) therefore has no effect; each key given is named in a warning, never
dropped in silence. Signatures as NeMo Curator 1.4.0's ``backends/xenna`` and ``backends/ray_data``.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

__all__ = ["Executor", "RayDataExecutor", "XennaExecutor"]

_SIZING = "worker sizing: Dagster's executor and the settings' thread counts decide"


class Executor:
    """NeMo's ``BaseExecutor(config=None, ignore_head_node=False)``: accepted by ``pipeline.run``."""

    #: the config keys NeMo's executor reads, and why each has no effect here
    KEYS: ClassVar[dict[str, str]] = {}

    def __init__(self, config: dict[str, Any] | None = None, ignore_head_node: bool = False) -> None:
        self.config = dict(config or {})
        self.ignore_head_node = ignore_head_node
        if self.config:
            name = type(self).__name__
            notes = "; ".join(f"{key} ({self.KEYS.get(key, f'not a key {name} reads')})" for key in self.config)
            warnings.warn(f"{name} config has no effect here: {notes}. pipeline.run() is the CLI's batched "
                          "in-process run; for several processes use pipeline.definitions() with a Dagster "
                          "executor (docs/python-api.md)", stacklevel=2)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(config={self.config!r})"


class XennaExecutor(Executor):
    """NeMo's default executor (Cosmos-Xenna streaming); here the batched in-process run."""

    KEYS = {"logging_interval": "the progress line is redrawn as clips finish",
            "ignore_failures": "a failed video never stops the others here; run() reports it",
            "execution_mode": "videos run in batches (run(videos_per_run=...)), each video's steps in order",
            "max_workers_per_stage": _SIZING, "cpu_allocation_percentage": _SIZING, "autoscale_interval_s": _SIZING}

    def __init__(self, config: dict[str, Any] | None = None, ignore_head_node: bool = False) -> None:
        if ignore_head_node:  # refused by NeMo's XennaExecutor too
            raise ValueError("ignore_head_node is not supported by XennaExecutor (nor by NeMo Curator's); "
                             "leave it False")
        super().__init__(config, ignore_head_node)


class RayDataExecutor(Executor):
    """NeMo's Ray Data executor; here the batched in-process run."""

    def __init__(self, config: dict[str, Any] | None = None, ignore_head_node: bool = False) -> None:
        super().__init__(config, ignore_head_node)
        if ignore_head_node:
            warnings.warn("RayDataExecutor(ignore_head_node=True) has no effect here: there is no Ray cluster, "
                          "the run is in this process", stacklevel=2)
