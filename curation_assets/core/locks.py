"""The per-video writer lock: one writer of a video at a time, nothing left behind, and a stop
honoured while waiting.

A local lock is a file locked with ``flock`` (released by the kernel however its holder ends, so
a killed run never leaves a video locked). Its holder removes the file before unlocking, so a
finished run leaves no lock files in the work area. A waiter that then gets the lock on the
removed file would hold a lock nobody else sees; so after every ``flock`` the waiter checks that
the path still names the file it locked, and tries again on the new one when not (the usual
lock-file-unlinking protocol).

Waiting polls every ``poll_s`` and calls ``cancel.checkpoint()`` between tries: Ctrl-C or
SIGTERM stops a run that waits for another run's video within a tenth of a second.

Object stores have no locks: the lock is always held at once (as ``storage.lock``).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

from . import cancel
from .urls import is_local, local_path

POLL_S = 0.1


def _try_lock(path: str) -> int | None:
    """An open descriptor holding the lock on the file now at ``path``, or None when another
    process holds it."""
    import fcntl

    while True:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        try:
            now = os.stat(path)
        except FileNotFoundError:
            now = None
        held = os.fstat(fd)
        if now is not None and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
            return fd
        # the previous holder removed the file between our open and our flock: lock the new one
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextlib.contextmanager
def held(url: str, *, timeout_s: float, poll_s: float = POLL_S) -> Iterator[bool]:
    """The exclusive lock named by ``url``: yields True once held (the file is removed on
    release), False when another process still holds it after ``timeout_s``. Raises
    ``cancel.Interrupted`` while waiting when a stop is requested."""
    if not is_local(url):
        yield True
        return
    import fcntl

    path = local_path(url)
    deadline = time.monotonic() + max(0.0, timeout_s)
    while True:
        fd = _try_lock(path)
        if fd is not None:
            break
        if time.monotonic() >= deadline:
            yield False
            return
        cancel.checkpoint()
        time.sleep(max(0.0, min(poll_s, deadline - time.monotonic())))
    try:
        yield True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # while still held: a waiter on this file sees it gone and locks the next one
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def is_free(url: str) -> bool:
    """Whether no other process holds the lock now (taken and released at once: nothing is left)."""
    with held(url, timeout_s=0) as free:
        return free
