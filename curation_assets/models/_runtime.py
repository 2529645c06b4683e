"""Device/dtype choice, per-clip error records, a bounded prefetching map and a background
iterator (shared by the models)."""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
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


# Batches stacked ahead of the device by the loader thread.
LOADER_DEPTH = 2


def failure_recorder(errors: dict[int, ClipError] | None, default_key: str) -> Callable[[int, BaseException], None]:
    """What a runner does with a failing clip: raise it (``errors`` None), else record it under its
    own key (a :class:`ClipFailure`) or ``default_key``."""

    def fail(i: int, exc: BaseException) -> None:
        if errors is None:
            raise exc
        if isinstance(exc, ClipFailure):
            errors[i] = ClipError(exc.key, exc.message)
        else:
            errors[i] = ClipError(default_key, f"{type(exc).__name__}: {exc}")

    return fail


def run_batched(
    count: int,
    prepare: Callable[[int], Any],
    launch: Callable[[Any], Any],
    collect: Callable[[Any, list[int], list[int]], Sequence[Any]],
    fail: Callable[[int, BaseException], None],
    *,
    batch_size: int,
    workers: int,
    size: Callable[[Any], int] = lambda prepared: 1,
    pin: bool = False,
) -> list[Any]:
    """The model runners' one batching loop: ``prepare(i)`` for every item on ``workers`` threads
    ahead of the device, the prepared tensors stacked into batches of ``batch_size`` (counted by
    ``size``: clips, or frames) on a loader thread (``pin``: in pinned memory), each batch started
    with ``launch(batch)`` and read back with ``collect(launched, indices, sizes)`` while the next
    one runs. An item whose prepare or batch fails is handed to ``fail`` (which may raise); the
    others still get their results. Returns one result per item (None where it failed)."""
    import torch

    results: list[Any] = [None] * count
    stream = prefetch_map(prepare, range(count), workers=workers, ahead=max(2 * batch_size, workers))

    def batches() -> Iterator[tuple[Any, Any, Any]]:
        pending: list[tuple[int, Any]] = []
        queued = 0

        def batch() -> tuple[list[int], list[int], Any]:
            idx, sizes = [i for i, _ in pending], [size(v) for _, v in pending]
            stacked = torch.cat([v for _, v in pending], dim=0)
            pending.clear()
            return idx, sizes, stacked.pin_memory() if pin else stacked

        for i, out in stream:
            if isinstance(out, BaseException):
                yield i, out, None
                continue
            pending.append((i, out))
            queued += size(out)
            if queued >= batch_size:
                yield batch()
                queued = 0
        if pending:
            yield batch()

    in_flight: tuple[list[int], list[int], Any] | None = None

    def read_back() -> None:
        assert in_flight is not None  # called only once a batch is in flight
        idx, sizes, launched = in_flight
        try:
            values = collect(launched, idx, sizes)
        except Exception as exc:  # noqa: BLE001 - the batch's items fail, the others go on
            for i in idx:
                fail(i, exc)
            return
        for i, value in zip(idx, values, strict=True):
            results[i] = value

    for idx, sizes, batch in background(batches(), depth=LOADER_DEPTH):
        if isinstance(sizes, BaseException):  # (index, error, None): a clip that could not be prepared
            fail(idx, sizes)
            continue
        try:
            launched = launch(batch)
        except Exception as exc:  # noqa: BLE001
            for i in idx:
                fail(i, exc)
            continue
        if in_flight is not None:  # read the previous batch back while this one runs
            read_back()
        in_flight = (idx, sizes, launched)
    if in_flight is not None:
        read_back()
    return results
