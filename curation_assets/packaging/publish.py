"""Whole-file publishing of files too large to hold in memory (WebDataset shards).

``storage.write_bytes_atomic`` takes the bytes; a 1 GB shard is instead written to a file and
published whole: on local disks a temporary name in the target folder (the storage module's
``.tmp-<host>_<pid>_<uuid>.partial``, so its cleanup rules apply), fsync, then ``os.replace``; on
object stores one upload of the finished local file (s3fs switches to a multipart upload, and the
object appears only when it completes). A full disk is :class:`storage.NoSpaceError`, one line
naming the file that could not be written.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Iterator
from typing import BinaryIO, cast

from ..core import storage, temp_files


@contextlib.contextmanager
def open_for_publish(url: str, work_dir: str | None = None) -> Iterator[BinaryIO]:
    """A binary file to write ``url``'s content into; on a clean exit it is published whole
    under ``url``, on an exception it is removed and nothing appears under ``url``."""
    if storage.is_local(url):
        _, path = storage.get_fs(url)
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, temp_files.temp_file_name())
    else:
        fd, tmp = tempfile.mkstemp(prefix="curation-shard-", suffix=".tar", dir=work_dir)
        os.close(fd)
    try:
        with _no_space_named(url, tmp):
            with open(tmp, "wb") as f:
                yield cast(BinaryIO, _NamedWrites(f, url, tmp))  # a raw binary writer, as a file
                f.flush()
                os.fsync(f.fileno())
            if storage.is_local(url):
                os.replace(tmp, path)
                storage.fsync_dir(folder)
            else:
                _put(tmp, url)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _full_disk(url: str, tmp: str) -> storage.NoSpaceError:
    """The one-line error of a full disk while ``url`` was being written (through ``tmp``)."""
    what = repr(url) if storage.is_local(url) else f"{tmp!r}, the local copy of {storage.redact(url)!r}"
    return storage.NoSpaceError(storage.no_space_message(what))


@contextlib.contextmanager
def _no_space_named(url: str, tmp: str) -> Iterator[None]:
    """A full disk anywhere in the publish (writes, the flush on close, fsync, the rename) is
    re-raised as :class:`storage.NoSpaceError` naming ``url``, without the OSError's traceback."""
    try:
        yield
    except storage.NoSpaceError:
        raise
    except OSError as exc:
        if not storage.is_no_space(exc):
            raise
    else:
        return
    raise _full_disk(url, tmp)


class _NamedWrites(io.RawIOBase):
    """The publish's file as its writer sees it: a full disk in ``write`` names the target."""

    def __init__(self, f: BinaryIO, url: str, tmp: str) -> None:
        self.f, self.url, self.tmp = f, url, tmp

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as exc:
            if not storage.is_no_space(exc):
                raise
        raise _full_disk(self.url, self.tmp)

    def flush(self) -> None:
        if not self.f.closed:  # also called when this wrapper is collected, after the publish
            self.f.flush()

    def fileno(self) -> int:
        return self.f.fileno()

    def tell(self) -> int:
        return self.f.tell()


def _put(local: str, url: str) -> None:
    fs, path = storage.get_fs(url)
    try:
        fs.put_file(local, path)
        fs.invalidate_cache(path)
    except Exception as exc:  # noqa: BLE001 - any backend error, re-raised without credentials
        message = storage.redact(f"upload {url!r} failed: {type(exc).__name__}: {exc}")
    else:
        return
    raise storage.StorageError(message)
