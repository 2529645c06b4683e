"""Which clip files packaging may read: the output is untrusted, so a file in ``clips/`` is not a
clip because of its name.

A clip's bytes go into a package only when the file is a regular file inside the output (locally:
not a symbolic link, and no linked folder on its way leads out of the output; on object stores:
the key under the output, which is how its URL is made) and its size is the ``num_bytes`` its
``metas/v0`` document records. Anything else is left out, and the caller reports it per clip.
"""

from __future__ import annotations

import os
import stat

from ..core import storage, urls
from ..core.layout_read import ClipLayout


class UntrustedClip(ValueError):
    """A clip file that is not what its documents describe (the message says why)."""


def read_clip(output_path: str, clip: ClipLayout) -> bytes:
    """The clip's mp4 bytes, or :class:`UntrustedClip` naming why they are not read;
    :class:`storage.StorageError` when the file cannot be read at all."""
    url = clip.clip_url
    if url is None:
        raise UntrustedClip("no clip file is recorded")
    problem = urls.regular_file_problem(output_path, url)
    if problem:
        raise UntrustedClip(problem)
    expected = clip.meta.get("num_bytes")
    if not isinstance(expected, int) or isinstance(expected, bool) or expected <= 0:
        raise UntrustedClip("its metas/v0 document records no num_bytes to compare with")
    data = _read_local(url, expected) if storage.is_local(url) else _read_remote(url, expected)
    if len(data) != expected:
        raise UntrustedClip(f"{len(data)} bytes, its metas/v0 document says {expected}")
    return data


def _read_local(url: str, expected: int) -> bytes:
    """Read without following a link put in place since the check (``O_NOFOLLOW``), and only a
    regular file of the expected size (a FIFO or a huge file is never read)."""
    path = urls.local_path(url)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise storage.StorageNotFoundError(storage.redact(f"read {url!r}: not found")) from None
    except OSError as exc:
        raise UntrustedClip(f"{storage.redact(url)!r} cannot be opened as a plain file "
                            f"({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise UntrustedClip(f"{storage.redact(url)!r} is not a regular file")
        if st.st_size != expected:
            raise UntrustedClip(f"{st.st_size} bytes, its metas/v0 document says {expected}")
        return f.read(expected + 1)


def _read_remote(url: str, expected: int) -> bytes:
    info = storage.file_info(url)  # one HEAD: a wrong-size object is not downloaded
    if info is None:
        raise storage.StorageNotFoundError(storage.redact(f"read {url!r}: not found"))
    if info.size != expected:
        raise UntrustedClip(f"{info.size} bytes, its metas/v0 document says {expected}")
    return storage.read_bytes(url)


__all__ = ["UntrustedClip", "read_clip"]
