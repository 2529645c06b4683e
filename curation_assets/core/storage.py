"""Storage: local paths and fsspec URLs (``s3://bucket/prefix``) behind one API.

Why one module over the project's 500-line guide: every function here is one file operation
(whole-file write, read, move, listing, lock, bulk delete) done two ways, locally and through
fsspec, behind the same error guard (:func:`_guarded`) and the same filesystem lookup; the
concerns beside them live apart: URLs in :mod:`.urls`, redaction in :mod:`.redaction`, temporary
names in :mod:`.temp_files`, source discovery in :mod:`.sources`. ``join``, ``redact`` and a few
more URL functions are re-exported here because nearly every caller of storage uses them too.

Plain Python (no Dagster import) so the pipeline core, the CLI and tests can all use it.

Guarantees (see ``spec/clip-writer-layout.md``, "Where we deliberately do better"):

* Whole files only. Local writes go to a temporary name in the same folder, are fsynced and then
  ``os.replace``-d onto the real name, so a reader (or a run killed with SIGKILL) never sees a
  partial file under a real name. Object stores get a single whole-object put (s3fs switches to a
  multipart upload for large bodies; the object only becomes visible when the upload completes).
* Temporary names and the rules that tell a killed writer's leftover from a live writer's file
  are :mod:`.temp_files`' business; :func:`cleanup_temp_files` sweeps a folder with them.
* Credentials come from the usual AWS environment variables or credential chain and are never
  put into exception messages: storage errors are re-raised as :class:`StorageError` with
  redacted text and without the original exception chained.
* s3fs caches directory listings per filesystem instance; every listing/existence check here
  invalidates the cache for that path first, so files written by another process are seen.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any, BinaryIO

import fsspec
from fsspec.implementations.local import LocalFileSystem

from . import temp_files
from .redaction import redact, register_secret
from .storage_errors import NoSpaceError, StorageError, StorageNotFoundError, _guarded, is_no_space, no_space_message
from .urls import S3_PROTOCOLS, is_local, join, local_path, normalize_url, relative_to, resolve_under, scheme

__all__ = [
    "INPUT_BLOCK_SIZE", "FileInfo", "NoSpaceError", "StorageError", "StorageNotFoundError", "cleanup_temp_files",
    "exists", "file_info", "fsync_dir", "get_fs", "is_local", "is_no_space", "is_object_store", "join", "list_files",
    "lock", "no_space_message",
    "move", "normalize_url", "open_input", "read_bytes", "redact",
    "register_secret", "relative_to", "remove_files", "resolve_under", "write_bytes_atomic",
    "write_text_atomic",
]

#: Block size for ranged reads of inputs on object stores (one block is buffered at a time).
INPUT_BLOCK_SIZE = 8 * 2**20


# Filesystems where a single put is atomic (whole object or nothing).
_OBJECT_STORE_PROTOCOLS = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss", "memory"}


# --------------------------------------------------------------------------------------------
# filesystems
# --------------------------------------------------------------------------------------------


def _s3_endpoint_from_env() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def _fs_options(protocol: str) -> dict:
    if protocol in S3_PROTOCOLS:
        # Recent botocore reads AWS_ENDPOINT_URL(_S3) itself; passing it explicitly also works
        # with older versions and makes fsspec's instance cache key depend on the endpoint (two
        # endpoints never share a cached filesystem).
        endpoint = _s3_endpoint_from_env()
        if endpoint:
            return {"endpoint_url": endpoint}
    return {}


def get_fs(url: str, fs_options: dict | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return ``(filesystem, path inside it)`` for a local path or fsspec URL.

    Local paths (and ``file://`` URLs) are made absolute. For ``s3://`` the endpoint comes from
    ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``; credentials from the AWS environment or
    credential chain. ``fs_options``: extra filesystem arguments (the upload watcher's listing
    session). An unknown scheme is a :class:`StorageError` naming it.
    """
    if not isinstance(url, str) or not url:
        raise ValueError("storage URL must be a non-empty string")
    if is_local(url):
        return LocalFileSystem(), local_path(url)
    proto = scheme(url)
    assert proto is not None
    options = {**_fs_options(proto), **(fs_options or {})}
    fs, path = _guarded("open filesystem for", url, lambda: fsspec.core.url_to_fs(url, **options))
    return fs, path.rstrip("/") or path


def is_object_store(url: str) -> bool:
    """True where a single put is atomic and there are no folders (S3, GCS, Azure, memory)."""
    return not is_local(url) and (scheme(url) or "") in _OBJECT_STORE_PROTOCOLS


def _protocol_of(fs: fsspec.AbstractFileSystem) -> str:
    proto = fs.protocol
    if isinstance(proto, (tuple, list)):
        proto = proto[0]
    return str(proto)


def _is_local_fs(fs: fsspec.AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def _to_url(fs: fsspec.AbstractFileSystem, proto: str | None, path: str) -> str:
    """Full URL for ``path`` inside ``fs``, in the style of the caller's URL."""
    if _is_local_fs(fs):
        return path
    return f"{proto or _protocol_of(fs)}://{path.lstrip('/')}"


def fsync_dir(path: str) -> None:
    """Flush a local folder's entries (a rename into it survives a crash); errors are ignored."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------


def _write_local_atomic(path: str, data: bytes | bytearray | memoryview, temp_name: str | None) -> None:
    """``data`` to a temporary file in the target's folder, fsynced, renamed onto ``path``.

    ``temp_name``: a name derived from the target (the caller holds the target's lock, so a file
    of that name is a dead writer's leftover: it is truncated and reused); ``None``: a fresh name
    unique to this writer (created exclusively)."""
    folder = os.path.dirname(path)
    for attempt in range(2):
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, temp_name or temp_files.temp_file_name())
        flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | (os.O_TRUNC if temp_name else os.O_EXCL)
        try:
            fd = os.open(tmp, flags, 0o666)  # 0o666 & ~umask like a normal open()
        except FileNotFoundError:
            if attempt == 0:  # folder removed concurrently: recreate and retry once
                continue
            raise
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except FileNotFoundError:
            # the temporary file was removed under us: nothing was published, write it again once
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if attempt == 0:
                continue
            raise
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        fsync_dir(folder)
        return


def write_bytes_atomic(url: str, data: bytes | bytearray | memoryview, *, temp_name: str | None = None) -> None:
    """Write ``data`` so that ``url`` holds either the old content or all of ``data``.

    Local: temporary file in the same folder (``temp_name``, see :func:`_write_local_atomic`),
    fsync, ``os.replace`` (parent folders created). Object stores: one whole-object put.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    fs, path = get_fs(url)

    def _do() -> None:
        if _is_local_fs(fs):
            _write_local_atomic(path, data, temp_name)
            return
        if _protocol_of(fs) in _OBJECT_STORE_PROTOCOLS:
            fs.pipe_file(path, bytes(data))
        else:
            # other (file-like) remote filesystems: temporary name + move
            parent = fs._parent(path)
            tmp = f"{parent.rstrip('/')}/{temp_name or temp_files.temp_file_name()}"
            fs.makedirs(parent, exist_ok=True)
            fs.pipe_file(tmp, bytes(data))
            try:
                fs.mv(tmp, path)
            except BaseException:
                with contextlib.suppress(Exception):
                    fs.rm_file(tmp)
                raise
        fs.invalidate_cache(path)

    _guarded("write", url, _do, writes=url)


def write_text_atomic(url: str, text: str, *, temp_name: str | None = None) -> None:
    """UTF-8 text version of :func:`write_bytes_atomic`."""
    write_bytes_atomic(url, text.encode("utf-8"), temp_name=temp_name)


def move(src: str, dst: str) -> None:
    """Move a whole file onto ``dst``: a rename on one local filesystem (nothing is copied), a
    server-side copy then delete on an object store (nothing is uploaded again), else a copy to a
    temporary name, a rename and a delete. ``dst`` never holds part of the file."""
    sfs, spath = get_fs(src)
    dfs, dpath = get_fs(dst)

    def _do() -> None:
        if _is_local_fs(sfs) and _is_local_fs(dfs):
            os.makedirs(os.path.dirname(dpath), exist_ok=True)
            try:
                os.replace(spath, dpath)
            except OSError as exc:
                if exc.errno != errno.EXDEV:  # another filesystem
                    raise
                tmp = os.path.join(os.path.dirname(dpath), temp_files.temp_file_name())
                try:
                    shutil.copyfile(spath, tmp)
                    os.replace(tmp, dpath)
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
                    raise
                os.unlink(spath)
            fsync_dir(os.path.dirname(dpath))
            return
        if sfs is dfs and not _is_local_fs(sfs):
            sfs.copy(spath, dpath)
            sfs.rm_file(spath)
            sfs.invalidate_cache(spath)
            sfs.invalidate_cache(dpath)
            return
        with _open_read(sfs, spath) as f:  # across filesystems: one whole write of the bytes
            data = f.read()
        write_bytes_atomic(dst, data)
        if _is_local_fs(sfs):
            os.unlink(spath)
        else:
            sfs.rm_file(spath)

    _guarded("move", f"{src} -> {dst}", _do, writes=dst)


def _open_read(fs: fsspec.AbstractFileSystem, path: str) -> IO[bytes]:
    return open(path, "rb") if _is_local_fs(fs) else fs.open(path, "rb")


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


def read_bytes(url: str) -> bytes:
    """The whole content of a file."""
    fs, path = get_fs(url)

    def _do() -> bytes:
        if _is_local_fs(fs):
            with open(path, "rb") as f:
                return f.read()
        return fs.cat_file(path)

    return _guarded("read", url, _do)


def open_input(url: str, block_size: int = INPUT_BLOCK_SIZE) -> BinaryIO:
    """A seekable binary file object for reading ``url`` (usable with ``av.open(f)``).

    Local files are opened directly. On object stores reads are ranged requests of
    ``block_size`` bytes with a read-ahead cache of one block, so memory stays flat
    whatever the size of the video. Use as a context manager or close it.
    """
    fs, path = get_fs(url)

    def _do() -> BinaryIO:
        if _is_local_fs(fs):
            return open(path, "rb")  # noqa: SIM115 - caller owns it
        return fs.open(path, "rb", block_size=block_size, cache_type="readahead")

    return _guarded("open", url, _do)


def exists(url: str) -> bool:
    """True if a file or (non-empty, for object stores) folder exists at ``url``."""
    fs, path = get_fs(url)

    def _do() -> bool:
        if _is_local_fs(fs):
            return os.path.exists(path)
        fs.invalidate_cache(path)
        return bool(fs.exists(path))

    return _guarded("check", url, _do)


@dataclass(frozen=True)
class FileInfo:
    """What identifies a file's content without reading it: its size and its mtime (local) or
    ETag (object stores)."""

    size: int
    version: str
    modified: float | None = None  # seconds since the epoch, where the store says

    def as_dict(self) -> dict[str, Any]:
        """The content identity (``modified`` aside: an object store's copy in place changes it)."""
        return {"size": self.size, "version": self.version}


def file_info(url: str) -> FileInfo | None:
    """The :class:`FileInfo` of a file, ``None`` when it does not exist (one stat or HEAD)."""
    fs, path = get_fs(url)

    def _do() -> FileInfo | None:
        if _is_local_fs(fs):
            try:
                st = os.stat(path)
            except FileNotFoundError:
                return None
            return FileInfo(st.st_size, str(st.st_mtime_ns), st.st_mtime)
        fs.invalidate_cache(path)
        try:
            info = fs.info(path)
        except FileNotFoundError:
            return None
        if info.get("type") == "directory":
            return None
        stamp = info.get("LastModified") or info.get("mtime")
        modified = (stamp.timestamp() if hasattr(stamp, "timestamp")
                    else float(stamp) if isinstance(stamp, (int, float)) else None)
        version = info.get("ETag") or info.get("etag") or info.get("md5Hash") or str(stamp or "")
        return FileInfo(int(info.get("size") or 0), str(version).strip('"'), modified)

    return _guarded("check", url, _do)


def _find_files(fs: fsspec.AbstractFileSystem, path: str) -> list[str]:
    """All file paths under ``path`` (recursive), fresh (no cached listing). [] if missing."""
    if _is_local_fs(fs):
        if not os.path.isdir(path):
            return [path] if os.path.isfile(path) else []
        out = []
        for root, _dirs, files in os.walk(path):
            for name in files:
                out.append(os.path.join(root, name))
        return out
    fs.invalidate_cache(path)
    try:
        found = fs.find(path, withdirs=False)
    except FileNotFoundError:
        return []
    # directory-marker objects ("folder/") are not files
    return [p for p in found if not p.endswith("/")]


def list_files(url: str) -> list[str]:
    """All files under the folder ``url`` (recursive, temporary files included), as full
    URLs in the caller's style (plain absolute paths for local), sorted. ``[]`` if missing."""
    fs, path = get_fs(url)
    found = _guarded("list", url, lambda: _find_files(fs, path))
    return sorted(_to_url(fs, scheme(url), p) for p in found)


def file_names(url: str) -> list[str]:
    """The names of the files directly in the folder ``url`` (not recursive), sorted; ``[]`` if
    missing. A local folder is read with one ``scandir`` (no walk and no stat per file: a folder of
    10k fragments is listed several times per one-video update)."""
    fs, path = get_fs(url)
    if _is_local_fs(fs):
        def scan() -> list[str]:
            try:
                with os.scandir(path) as entries:
                    return sorted(e.name for e in entries if e.is_file(follow_symlinks=False))
            except (FileNotFoundError, NotADirectoryError):
                return []

        return _guarded("list", url, scan)
    return sorted(name for name, found in ((u.rsplit("/", 1)[-1], u) for u in list_files(url))
                  if found[len(url):].strip("/") == name)


# --------------------------------------------------------------------------------------------
# removing
# --------------------------------------------------------------------------------------------


def _group_by_fs(urls: Iterable[str]) -> list[tuple[fsspec.AbstractFileSystem, list[str]]]:
    groups: dict[int, tuple[fsspec.AbstractFileSystem, list[str]]] = {}
    for u in urls:
        fs, path = get_fs(u)
        groups.setdefault(id(fs), (fs, []))[1].append(path)
    return list(groups.values())


def _s3_bulk_delete(fs: Any, paths: list[str]) -> None:
    by_bucket: dict[str, list[str]] = {}
    for p in paths:
        bucket, key, _ = fs.split_path(p)
        if not key:
            raise ValueError(f"refusing to delete a bucket: {p!r}")
        by_bucket.setdefault(bucket, []).append(key)
    for bucket, keys in by_bucket.items():
        for i in range(0, len(keys), 1000):
            chunk = keys[i : i + 1000]
            out = fs.call_s3(
                "delete_objects",
                Bucket=bucket,
                Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True},
            )
            errors = out.get("Errors") or []
            if errors:
                first = errors[0]
                raise OSError(
                    f"{len(errors)} object(s) not deleted, e.g. {bucket}/{first.get('Key')}: "
                    f"{first.get('Code')} {first.get('Message')}"
                )
    for p in paths:
        fs.invalidate_cache(p)


def _prune_empty_dirs(start: str, stop: str) -> None:
    stop = os.path.abspath(stop)
    d = os.path.dirname(start)
    while d != stop and d.startswith(stop + os.sep):
        try:
            os.rmdir(d)
        except OSError:
            return
        d = os.path.dirname(d)


def _remove_paths(fs: fsspec.AbstractFileSystem, paths: list[str], stop: str | None) -> None:
    if _is_local_fs(fs):
        for p in paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)
            if stop:
                _prune_empty_dirs(p, stop)
    elif _protocol_of(fs) in S3_PROTOCOLS and hasattr(fs, "call_s3"):
        _s3_bulk_delete(fs, paths)
    else:
        # fs.rm() would glob-expand names like "a[1].mp4"; delete one literal name at a time
        for p in paths:
            with contextlib.suppress(FileNotFoundError):
                fs.rm_file(p)
            fs.invalidate_cache(p)


def remove_files(urls: Iterable[str], *, prune_empty_dirs_under: str | None = None) -> None:
    """Delete files; ones already missing are ignored. Names are taken literally (no glob
    expansion, so ``a[1].mp4`` deletes exactly that file).

    ``prune_empty_dirs_under``: for local paths, also remove parent folders left empty, up to
    (not including) that folder.
    """
    urls = list(urls)
    if not urls:
        return
    stop = local_path(prune_empty_dirs_under) if prune_empty_dirs_under and is_local(prune_empty_dirs_under) else None
    for fs, paths in _group_by_fs(urls):
        what = paths[0] if len(paths) == 1 else f"{len(paths)} files, e.g. {paths[0]}"
        _guarded("remove", what, functools.partial(_remove_paths, fs, paths, stop))


def prune_empty_parents(urls: Iterable[str], under: str) -> None:
    """For local paths: remove the folders of ``urls`` left empty (files moved or deleted), up to
    (not including) ``under``. Object stores have no folders: nothing to do."""
    if not is_local(under):
        return
    stop = local_path(under)
    for url in urls:
        if is_local(url):
            _prune_empty_dirs(local_path(url), stop)


@contextlib.contextmanager
def lock(url: str, *, timeout_s: float = 0.0, shared: bool = False) -> Iterator[bool]:
    """A lock named by ``url`` (a local file, locked with ``flock``: released when the holder exits,
    however it exits), exclusive or ``shared``. Yields True when held; False when another process
    holds it and ``timeout_s`` passed. Object-store URLs have no locks: it yields True at once."""
    if not is_local(url):
        yield True
        return
    import fcntl

    path = local_path(url)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.1)
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def cleanup_temp_files(
    folder_url: str,
    *,
    min_age_s: float = 0.0,
    recursive: bool = True,
) -> int:
    """Remove leftover ``.tmp-*.partial`` files (from a killed run) under ``folder_url``.
    Returns how many were removed. ``recursive=False`` looks in the folder itself only.

    ``min_age_s`` <= 0 removes every temporary file: only for callers that know nobody else
    writes there. ``min_age_s`` > 0 makes it safe next to concurrent writers (another run, another
    partition, another machine on a shared disk): a temporary file is removed when it is at least
    that old, or, on local disks, at once when its name says that it was written on this host by
    a process that no longer exists (a run killed with SIGKILL). A live writer's file is never
    pulled from under it, and a killed run's leftovers go on the next run without waiting.
    """
    fs, path = get_fs(folder_url)
    if recursive:
        temps = [u for u in list_files(folder_url) if temp_files.is_temp_file_name(u)]
    elif _is_local_fs(fs):
        try:
            with os.scandir(path) as it:
                temps = [e.path for e in it
                         if temp_files.is_temp_file_name(e.name) and e.is_file(follow_symlinks=False)]
        except (FileNotFoundError, NotADirectoryError):
            temps = []
    else:
        def _ls() -> list[str]:
            fs.invalidate_cache(path)
            try:
                entries = fs.ls(path, detail=True)
            except FileNotFoundError:
                return []
            return [e["name"] for e in entries if e.get("type") == "file" and temp_files.is_temp_file_name(e["name"])]

        temps = [_to_url(fs, scheme(folder_url), p) for p in _guarded("list", folder_url, _ls)]
    if min_age_s > 0 and temps:
        now = time.time()
        removable = []
        for u in temps:
            if _is_local_fs(fs) and temp_files.temp_file_owner_is_dead(u):
                removable.append(u)
                continue
            try:
                if _is_local_fs(fs):
                    mtime = os.stat(local_path(u)).st_mtime
                else:
                    m = fs.modified(get_fs(u)[1])
                    mtime = m.timestamp()
            except (OSError, IsADirectoryError):
                continue
            if now - mtime >= min_age_s:
                removable.append(u)
        temps = removable
    remove_files(temps)
    return len(temps)
