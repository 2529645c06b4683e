"""Listing the videos under an input folder or object-store prefix, with each file's content
identity, for the upload watcher.

Local folders are walked with ``os.scandir`` (one ``stat`` per video-named file, none for other
files); object stores are listed with ``list_objects_v2`` pages, whose entries already carry
size, ETag and LastModified, so no per-object request is made. S3 has no change feed and keys
are not time-ordered: a new key can land anywhere in the key space, so seeing every new upload
takes a listing of every key. Two things make that listing cheaper:

* **Ranges listed side by side.** The keys known from the previous tick cut the key space into
  ranges of one page each (``StartAfter`` = the range's lower bound, stop past its upper
  bound); a new key lands in some range and is listed with it, so the union is exactly a full
  listing, fetched ``concurrency`` requests at a time instead of one after another.
* **A page budget** (optional): list at most that many pages per tick, continuing where the
  previous tick stopped and wrapping around, so one tick costs a bounded number of requests and
  the whole prefix is seen once every ``pages / budget`` ticks. Only the ranges actually listed
  are compared with the table (see :attr:`Scan.covered`), so nothing is taken for deleted.

Symbolic links (local) are followed only when their target lies inside the input; a link to a
file or folder that the walk reaches under its own name anyway is skipped (one partition per
video, not one per name).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import stat as stat_mod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from . import storage
from .keys import rel_path_problem

__all__ = [
    "LIST_CONCURRENCY",
    "PAGE_SIZE",
    "Scan",
    "Seen",
    "is_hidden",
    "normalize_extensions",
    "plan_ranges",
    "scan_local",
    "scan_object_store",
]

#: Keys per ``list_objects_v2`` page (S3's maximum).
PAGE_SIZE = 1000
#: Listing requests in flight at once on an object store.
LIST_CONCURRENCY = 8

#: A listed range ``(after, upto]`` of relative names; ``None`` = unbounded on that side.
Range = tuple[str | None, str | None]


class Seen(NamedTuple):
    """One listed file: size, modification time and (object stores) ETag. (A tuple: a tick
    makes one per video, and a frozen dataclass costs several times more to build.)"""

    size: int
    mtime_ns: int
    etag: str | None = None

    def identity(self) -> bytes:
        """Digest of the content identity: size + mtime locally, ETag + size on object stores
        (there LastModified changes on a copy in place, the ETag does not)."""
        text = f"o{self.size}:{self.etag}" if self.etag is not None else f"f{self.size}:{self.mtime_ns}"
        return hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()


@dataclass
class Scan:
    """What one listing found."""

    files: dict[str, Seen] = field(default_factory=dict)
    #: ``(relative path, why)`` for video-named entries not taken (links leaving the input,
    #: aliases, non-regular files, unreadable entries).
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: Relative paths (folders or files) that could not be read: what the table knows under
    #: them is kept as it is, never reported deleted. ``""`` is the whole input.
    unreadable: list[str] = field(default_factory=list)
    #: The ranges of names listed whole; rows outside them were not looked at this tick.
    covered: list[Range] = field(default_factory=lambda: [(None, None)])
    #: Listing requests made (object stores) or folders read (local).
    requests: int = 0
    #: Object stores with a page budget: the last key listed, where the next tick goes on.
    sweep_after: str | None = None

    def covers(self, rel: str) -> bool:
        """True when ``rel`` lies in a listed range and not under an unreadable path."""
        for blocked in self.unreadable:
            if blocked == "" or rel == blocked or rel.startswith(blocked + "/"):
                return False
        return any((lo is None or rel > lo) and (hi is None or rel <= hi) for lo, hi in self.covered)


def normalize_extensions(extensions: Iterable[str]) -> tuple[str, ...]:
    """Lower-case extensions with their dot, sorted; refuses an empty list or a malformed entry."""
    if isinstance(extensions, str):
        extensions = [e for e in extensions.replace(",", " ").split() if e]
    out = set()
    for e in extensions:
        if not isinstance(e, str) or not e.strip(". ") or "/" in e or any(c.isspace() for c in e.strip()):
            raise ValueError(f"video extension {e!r}: expected something like '.mp4'")
        e = e.strip().lower()
        out.add(e if e.startswith(".") else "." + e)
    if not out:
        raise ValueError("the list of video extensions is empty: no file would ever be picked up")
    return tuple(sorted(out))


def is_hidden(rel: str) -> bool:
    """Hidden files and anything in a hidden folder (also temporary and in-progress uploads:
    ``.tmp-*.partial``, rsync's ``.name.XXXXXX``)."""
    return rel.startswith(".") or "/." in rel


def is_inside(path: str, root: str) -> bool:
    """True when the local ``path`` is ``root`` or lies under it (both already resolved)."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


# --------------------------------------------------------------------------------------------
# local folders
# --------------------------------------------------------------------------------------------


def scan_local(root: str, extensions: Sequence[str], exclude: Iterable[str] = ()) -> Scan:
    """Every video under the local folder ``root`` (extensions as from
    :func:`normalize_extensions`); ``exclude``: relative folder paths not to walk (an output
    folder inside the input). Raises :class:`~.storage.StorageNotFoundError` when ``root`` is
    not a folder."""
    exts = tuple(extensions)
    excluded = set(exclude)
    real_root = os.path.realpath(root)
    if not os.path.isdir(real_root):
        raise storage.StorageNotFoundError(f"input folder {storage.redact(root)!r} does not exist")
    scan = Scan()
    by_inode: dict[tuple[int, int], str] = {}
    linked: list[tuple[str, Seen, tuple[int, int]]] = []
    linked_dirs: set[str] = set()
    stack: list[tuple[str, str, bool]] = [("", real_root, False)]
    while stack:
        rel_dir, path, via_link = stack.pop()
        try:
            it = os.scandir(path)
        except FileNotFoundError:
            continue  # removed since it was listed: what it held is gone
        except OSError as e:
            scan.unreadable.append(rel_dir)
            scan.skipped.append((rel_dir or ".", f"folder not readable ({e.strerror})"))
            continue
        scan.requests += 1
        with it:
            for entry in it:
                name = entry.name
                if name.startswith("."):
                    continue
                rel = f"{rel_dir}/{name}" if rel_dir else name
                if rel in excluded:
                    continue
                try:
                    is_link = entry.is_symlink()
                    st: os.stat_result | None = None
                    if is_link:
                        target = os.path.realpath(entry.path)
                        if not is_inside(target, real_root):
                            scan.skipped.append((rel, "symbolic link to outside the input"))
                            continue
                        st = os.stat(entry.path)
                        is_dir = stat_mod.S_ISDIR(st.st_mode)
                    else:
                        is_dir = entry.is_dir(follow_symlinks=False)
                    if is_dir:
                        if not is_link:
                            stack.append((rel, entry.path, via_link))
                            continue
                        target_rel = os.path.relpath(target, real_root)
                        if target_rel == "." or not is_hidden(target_rel.replace(os.sep, "/")):
                            continue  # the walk reaches that folder under its own name
                        if target not in linked_dirs:
                            linked_dirs.add(target)
                            stack.append((rel, entry.path, True))
                        continue
                    if not name.lower().endswith(exts):
                        continue
                    if st is None:
                        st = entry.stat(follow_symlinks=False)
                    if not stat_mod.S_ISREG(st.st_mode):
                        scan.skipped.append((rel, "not a regular file"))
                        continue
                except FileNotFoundError:
                    continue  # removed between the listing and the stat
                except OSError as e:
                    scan.unreadable.append(rel)
                    scan.skipped.append((rel, f"not readable ({e.strerror})"))
                    continue
                seen = Seen(st.st_size, st.st_mtime_ns)
                inode = (st.st_dev, st.st_ino)
                if is_link or via_link:
                    linked.append((rel, seen, inode))
                else:
                    scan.files[rel] = seen
                    by_inode[inode] = rel
    for rel, seen, inode in sorted(linked, key=lambda t: t[0]):
        if inode in by_inode:
            scan.skipped.append((rel, f"link to {by_inode[inode]!r}, taken under that name"))
            continue
        by_inode[inode] = rel
        scan.files[rel] = seen
    return scan


# --------------------------------------------------------------------------------------------
# object stores
# --------------------------------------------------------------------------------------------


def plan_ranges(known: Sequence[str], page_size: int = PAGE_SIZE) -> list[tuple[str | None, str | None, int]]:
    """Ranges ``(after, upto, known count)`` of about one page each, cut at the sorted
    ``known`` names; together they cover the whole key space."""
    bounds = [known[i] for i in range(page_size - 1, len(known), page_size)]
    out: list[tuple[str | None, str | None, int]] = []
    lo: str | None = None
    for b in bounds:
        out.append((lo, b, page_size))
        lo = b
    out.append((lo, None, len(known) - len(bounds) * page_size))
    return out


def _to_seen(obj: dict[str, Any]) -> Seen:
    modified = obj.get("LastModified")
    mtime_ns = int(modified.timestamp() * 1e9) if modified is not None else 0
    return Seen(int(obj.get("Size", 0)), mtime_ns, str(obj.get("ETag", "")).strip('"'))


def _iso_timestamp(value: Any) -> Any:
    """S3 listings carry ISO 8601 times; ``datetime.fromisoformat`` reads them several times
    faster than botocore's general parser (dateutil), which took most of a listing's client
    CPU. Anything else goes to botocore's parser."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed
    from botocore.utils import parse_timestamp

    return parse_timestamp(value)


@functools.lru_cache(maxsize=1)
def _listing_session() -> Any:
    """One aiobotocore session for listings, whose clients parse timestamps with
    :func:`_iso_timestamp` (the same tz-aware datetimes, for every call on those clients)."""
    from aiobotocore.session import get_session

    session = get_session()
    session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=_iso_timestamp)
    return session


def _listing_options(url: str) -> dict | None:
    return {"session": _listing_session()} if url.startswith(("s3://", "s3a://")) else None


class _Lister:
    """Listing pages of one prefix, keeping only video entries (relative names)."""

    def __init__(self, fs: Any, path: str, exts: tuple[str, ...], exclude: Iterable[str]) -> None:
        bucket, key, _ = fs.split_path(path)
        self.fs = fs
        self.bucket = bucket
        self.prefix = key.strip("/") + "/" if key.strip("/") else ""
        self.exts = exts
        self.exclude = tuple(e.strip("/") + "/" for e in exclude)
        self.requests = 0

    async def page(self, after: str | None, token: str | None,
                   max_keys: int) -> tuple[list[tuple[str, Any]], str | None]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix, "MaxKeys": max_keys}
        if token:
            kwargs["ContinuationToken"] = token
        elif after is not None:
            kwargs["StartAfter"] = self.prefix + after
        self.requests += 1
        resp = await self.fs._call_s3("list_objects_v2", **kwargs)
        n = len(self.prefix)
        rows = [(o["Key"][n:], o) for o in resp.get("Contents", ())]
        return rows, resp.get("NextContinuationToken") if resp.get("IsTruncated") else None

    def keep(self, rel: str) -> bool:
        """A video-named key (exactly as listed) not hidden nor excluded; one that is kept may still
        be unusable as a partition (``keys.rel_path_problem``: skipped with its reason)."""
        if not rel or rel.endswith("/") or not rel.lower().endswith(self.exts) or rel.startswith(self.exclude):
            return False
        return rel_path_problem(rel) is not None or not is_hidden(rel)


async def _sweep(
    lister: _Lister,
    scan: Scan,
    after: str | None,
    upto: str | None,
    budget: float,
    page_size: int,
    first_keys: int | None = None,
    sem: asyncio.Semaphore | None = None,
) -> tuple[int, str | None, bool]:
    """List names in ``(after, upto]`` page by page, at most ``budget`` pages.

    Returns ``(pages used, upper end covered, whether the range was finished)``; when the
    budget runs out first, everything up to the returned name has been listed."""
    token: str | None = None
    used = 0
    last = after
    max_keys = first_keys or page_size
    while used < budget:
        if sem is None:
            rows, token = await lister.page(after, token, max_keys)
        else:
            async with sem:
                rows, token = await lister.page(after, token, max_keys)
        used += 1
        max_keys = page_size
        for rel, obj in rows:
            if upto is not None and rel > upto:
                return used, upto, True
            if lister.keep(rel):
                problem = rel_path_problem(rel)
                if problem:
                    scan.skipped.append((rel, problem))
                else:
                    scan.files[rel] = _to_seen(obj)
        if rows:
            last = rows[-1][0]
        if token is None or (upto is not None and last == upto):
            return used, upto, True
    return used, last, False


async def _list_window(lister: _Lister, scan: Scan, start_after: str | None, max_pages: int, page_size: int) -> None:
    """At most ``max_pages`` pages going on after ``start_after``, wrapping round to the start."""
    used, hi, done = await _sweep(lister, scan, start_after, None, max_pages, page_size)
    scan.covered = [(start_after, hi)]
    if not done:
        scan.sweep_after = hi
        return
    scan.sweep_after = None
    if start_after is None or used >= max_pages:
        return
    _used, hi2, done2 = await _sweep(lister, scan, None, start_after, max_pages - used, page_size)
    scan.covered.append((None, hi2))
    scan.sweep_after = start_after if done2 else hi2


def scan_object_store(
    url: str,
    extensions: Sequence[str],
    *,
    known: Sequence[str] = (),
    exclude: Iterable[str] = (),
    max_pages: int | None = None,
    sweep_after: str | None = None,
    page_size: int = PAGE_SIZE,
    concurrency: int = LIST_CONCURRENCY,
) -> Scan:
    """Every video under an object-store prefix.

    ``known``: the sorted names from the previous tick, which cut the listing into ranges
    fetched ``concurrency`` at a time. ``max_pages``: list at most that many pages this tick,
    going on after ``sweep_after`` (see :attr:`Scan.sweep_after`, :attr:`Scan.covered`).
    """
    if page_size < 1 or page_size > PAGE_SIZE:
        raise ValueError(f"page_size must be 1..{PAGE_SIZE}")
    if max_pages is not None and max_pages < 1:
        raise ValueError("max_pages must be at least 1 (or None: the whole prefix every tick)")
    fs, path = storage.get_fs(url, _listing_options(url))
    lister = _Lister(fs, path, tuple(extensions), exclude)
    scan = Scan()

    async def _run() -> None:
        if max_pages is not None:
            await _list_window(lister, scan, sweep_after, max_pages, page_size)
            return
        sem = asyncio.Semaphore(max(1, concurrency))
        await asyncio.gather(
            *(_sweep(lister, scan, lo, hi, float("inf"), page_size, count if hi is not None and count else None, sem)
              for lo, hi, count in plan_ranges(known, page_size))
        )

    err: str | None = None
    try:
        from fsspec.asyn import sync

        sync(fs.loop, _run)
    except storage.StorageError:
        raise
    except FileNotFoundError:
        err = f"list {url!r}: bucket not found"
    except Exception as e:  # noqa: BLE001 - botocore/aiohttp errors; the text is redacted below
        err = f"list {url!r} failed: {type(e).__name__}: {e}"
    if err is not None:
        raise storage.StorageError(storage.redact(err))
    scan.requests = lister.requests
    return scan
