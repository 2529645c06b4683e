"""Storage errors: what a failed file operation raises, with a redacted one-line message.

Apart from :mod:`.storage` to keep that module under the size guide; :mod:`.storage` re-exports
every name here. A full disk (or quota) becomes :class:`NoSpaceError`, whose message names only
the file that could not be written (not the work area's temporary names), so a video's failure
or the packager's error is one line a person can act on.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TypeVar

from .redaction import redact

_T = TypeVar("_T")


class StorageError(OSError):
    """A storage operation failed. The message has been passed through :func:`redact`."""


class StorageNotFoundError(StorageError, FileNotFoundError):
    """The file or folder does not exist (still catchable as ``FileNotFoundError``)."""


class NoSpaceError(StorageError):
    """The disk (or quota) is full: the message is one line naming what could not be written."""


# errno values of a full disk or an exhausted quota
_NO_SPACE_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_NO_SPACE_TEXT = ("No space left on device", "Disk quota exceeded")


def is_no_space(exc: BaseException) -> bool:
    """Whether ``exc`` is a full disk or quota (by errno; pyarrow's errors carry only the text)."""
    if isinstance(exc, NoSpaceError) or (isinstance(exc, OSError) and exc.errno in _NO_SPACE_ERRNOS):
        return True
    return isinstance(exc, OSError) and any(t in str(exc) for t in _NO_SPACE_TEXT)


def no_space_message(what: str) -> str:
    """The one line of a full disk: ``No space left on device: could not write <what>``."""
    return redact(f"No space left on device: could not write {what}")


def _guarded(op: str, url: str, fn: Callable[[], _T], *, writes: str | None = None) -> _T:
    """Run ``fn()``; re-raise storage errors as :class:`StorageError` with a redacted message.
    ``writes``: the file the operation writes (named alone when the disk is full).

    The new exception is raised after the ``except`` block has ended, so neither
    ``__cause__`` nor ``__context__`` carries the original (unredacted) exception and no
    traceback printer or error serialiser can show it. (A context manager cannot do this:
    its ``__exit__`` runs while the original exception is being handled.)
    """
    err: tuple[type[Exception], str] | None = None
    try:
        return fn()
    except StorageError:
        raise
    except (ValueError, TypeError) as e:  # validation / programming errors: keep the type
        err = (ValueError if isinstance(e, ValueError) else TypeError, str(e))
    except FileNotFoundError as e:
        err = (StorageNotFoundError, f"{op} {url!r}: not found ({e})")
    except OSError as e:
        if writes is not None and is_no_space(e):
            err = (NoSpaceError, no_space_message(repr(writes)))
        else:
            err = (StorageError, f"{op} {url!r} failed: {type(e).__name__}: {e}")
    except Exception as e:  # noqa: BLE001 - any backend error (botocore, aiohttp, OSError)
        err = (StorageError, f"{op} {url!r} failed: {type(e).__name__}: {e}")
    cls, msg = err
    raise cls(redact(msg))
