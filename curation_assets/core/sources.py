"""Source videos under an input folder or prefix: which files are videos, and whether one may be
opened.

The run's one rule for both (the upload watcher's incremental listing is ``core.upload_scan``,
which shares the local walk): hidden files and folders are skipped, extensions match
case-insensitively, and locally a symlink is followed only inside the input and only regular
files are opened. Object-store keys are names taken exactly as listed; a key that cannot be a
partition (``core.keys.rel_path_problem``) is skipped with its reason.
"""

from __future__ import annotations

import os
import stat as stat_mod
from collections.abc import Sequence
from dataclasses import dataclass

from . import storage
from .keys import rel_path_problem
from .options import VIDEO_EXTENSIONS
from .redaction import redact
from .upload_scan import is_hidden, is_inside, normalize_extensions, scan_local
from .urls import is_local, local_path, normalize_url, scheme

__all__ = ["VideoScan", "canonical_input", "list_videos", "scan_videos", "source_problem"]


def canonical_input(input_url: str) -> str:
    """The one spelling of an input folder: a local path with every symbolic link resolved
    (``inlink/`` and ``in/`` are one folder, so their videos get one source URL, one set of clip
    ids and one partition each); object-store URLs as given (a key is a name)."""
    url = normalize_url(input_url)
    return os.path.realpath(url) if is_local(url) else url


@dataclass(frozen=True)
class VideoScan:
    """The videos under an input folder (relative posix paths, sorted) and what was passed over."""

    videos: list[str]
    skipped: list[tuple[str, str]]  # (relative path, why)


def scan_videos(input_url: str, extensions: Sequence[str] | None = None) -> VideoScan:
    """The video files under ``input_url``, recursively, and the entries passed over (with why).

    ``extensions`` (default: the reference's, ``core.options.VIDEO_EXTENSIONS``) match
    case-insensitively; hidden files and folders (any component starting with ``.``) are skipped.
    Raises ``storage.StorageNotFoundError`` when ``input_url`` does not exist (for object stores:
    no object under the prefix).
    """
    exts = normalize_extensions(extensions or VIDEO_EXTENSIONS)
    if is_local(input_url):  # the upload watcher's walk: symlinks only inside the input, no FIFOs or devices
        found = scan_local(local_path(input_url), exts)
        return VideoScan(sorted(found.files), sorted(found.skipped))
    urls = storage.list_files(input_url)
    if not urls and not storage.exists(input_url):
        raise storage.StorageNotFoundError(redact(f"list {input_url!r}: not found (no object under this prefix)"))
    # a key is a name, not a path: taken exactly as listed (never normalised onto another key's name)
    proto = scheme(input_url) or ""
    base = f"{proto}://{normalize_url(input_url)[len(proto) + 3:].lstrip('/')}/"  # as storage.list_files spells them
    out, skipped = [], []
    for url in urls:
        if not url.startswith(base):
            continue
        rel = url[len(base):]
        if not rel or not rel.lower().endswith(exts):
            continue
        problem = rel_path_problem(rel)
        if problem:
            skipped.append((rel, problem))
        elif not is_hidden(rel):
            out.append(rel)
    return VideoScan(sorted(out), sorted(skipped))


def list_videos(input_url: str, extensions: Sequence[str] | None = None) -> list[str]:
    """Relative posix paths (sorted) of the video files under ``input_url`` (see :func:`scan_videos`)."""
    return scan_videos(input_url, extensions).videos


def source_problem(input_url: str, source_url: str) -> str | None:
    """Why a source must not be opened, or None: locally, a path that is not a regular file (a FIFO
    would block forever, a device read without end) or whose real path leaves ``input_url``."""
    if not is_local(source_url):
        return None
    path, root = local_path(source_url), os.path.realpath(local_path(input_url))
    if not is_inside(os.path.realpath(path), root):
        return "a symlink to a place outside input_path (not followed)"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None  # missing: the caller's "no such video"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if not stat_mod.S_ISREG(st.st_mode):
        return "not a regular file (a FIFO, device or socket is never opened)"
    return None
