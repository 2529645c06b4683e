"""Whole-file publishing of files too large to hold in memory (WebDataset shards).

``storage.write_bytes_atomic`` takes the bytes; a 1 GB shard is instead written to a file and
published whole: on local disks a temporary name in the target folder (the storage module's
``.tmp-<host>_<pid>_<uuid>.partial``, so its cleanup rules apply), fsync, then ``os.replace``; on
object stores one upload of the finished local file (s3fs switches to a multipart upload, and the
object appears only when it completes).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import BinaryIO

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
        with open(tmp, "wb") as f:
            yield f
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
