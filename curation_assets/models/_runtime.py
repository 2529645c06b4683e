"""Device/dtype choice, per-clip error records, a bounded prefetching map and a background
iterator (shared by the models)."""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from ..core.devices import resolve_device

__all__ = ["ClipError", "ClipFailure", "background", "prefetch_map", "resolve_device", "resolve_dtype"]

T = TypeVar("T")
R = TypeVar("R")

_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}


@dataclass(frozen=True)
class ClipError:
    """Why one clip got no result: ``key`` is the reference's error key, ``message`` the detail."""

    key: str
    message: str


class ClipFailure(ValueError):
    """A failure that belongs to one clip: ``key`` is the reference's error key, ``message`` the detail.

    Returned as a ``ClipError`` when the caller passes an ``errors`` dict, raised otherwise.
    """

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


def resolve_dtype(dtype: Any, device: str, gpu_default: str = "bfloat16") -> Any:
    """A ``torch.dtype``: given one (or its name), else ``gpu_default`` on CUDA and fp32 on CPU."""
    import torch

    if dtype in (None, "", "auto"):
        name = gpu_default if device.startswith("cuda") else "float32"
        return getattr(torch, name)
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return getattr(torch, _DTYPES[str(dtype).lower().removeprefix("torch.")])
    except KeyError:
        raise ValueError(f"unsupported dtype {dtype!r}; use float32, bfloat16 or float16") from None


def prefetch_map(
    fn: Callable[[T], R], items: Iterable[T], workers: int, ahead: int
) -> Iterator[tuple[T, R | BaseException]]:
    """``(item, fn(item))`` in order, computed by ``workers`` threads at most ``ahead`` items early.

    Exceptions are yielded in place of results so one bad item does not stop the stream.
    """

    def call(item: T) -> R | BaseException:
        try:
            return fn(item)
        except Exception as exc:  # noqa: BLE001 - handed back to the caller
            return exc

    if workers <= 0:
        for item in items:
            yield item, call(item)
        return
    ahead = max(1, ahead)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prefetch") as pool:
        queue: deque[tuple[T, Future]] = deque()
        for item in items:
            queue.append((item, pool.submit(call, item)))
            if len(queue) >= ahead:
                done_item, fut = queue.popleft()
                yield done_item, fut.result()
        while queue:
            done_item, fut = queue.popleft()
            yield done_item, fut.result()


def background(items: Iterable[T], depth: int) -> Iterator[T]:
    """``items`` produced on a thread of their own, at most ``depth`` ahead of the consumer.

    The model steps stack batches this way while the device runs the previous one. An exception
    raised by ``items`` is raised in the consumer; a consumer that stops early stops the thread
    (``items`` is closed on its own thread)."""
    slots: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()
    end = object()

    def put(entry: tuple[bool, Any]) -> bool:
        while not stop.is_set():
            try:
                slots.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
            put((True, end))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put((False, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="loader", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = slots.get()
            if not ok:
                raise item
            if item is end:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                slots.get(timeout=0.1)
            except queue.Empty:
                pass
        thread.join()
