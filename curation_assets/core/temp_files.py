"""Temporary file names: how a whole-file write names its temporary file, and how a later run
tells a killed writer's leftover from a live writer's file.

Two kinds of name, both ``.tmp-…partial`` so one rule (:func:`is_temp_file_name`) finds them:

* :func:`temp_name_for` derives the name from the target, for writers that hold the target's lock:
  the next writer of the same file finds a killed writer's leftover by name
  (:func:`remove_temp_leftovers`), without listing the folder.
* :func:`temp_file_name` is unique per writer and carries its host and process id, so
  :func:`temp_file_owner_is_dead` can tell that its writer no longer runs.

No storage I/O here beyond local ``unlink``: ``core.storage`` writes under these names and sweeps a
folder's leftovers (``storage.cleanup_temp_files``) with these rules.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import uuid
from collections.abc import Iterable

from .urls import is_local, local_path

__all__ = [
    "TEMP_MAX_AGE_S", "TEMP_PREFIX", "TEMP_SUFFIX", "is_temp_file_name", "remove_temp_leftovers",
    "temp_file_name", "temp_file_owner_is_dead", "temp_name_for",
]

#: Temporary files written next to their target by ``storage.write_bytes_atomic`` (local only).
TEMP_PREFIX = ".tmp-"
TEMP_SUFFIX = ".partial"

#: Age after which a temporary file counts as abandoned whoever wrote it (no single whole-file
#: write takes this long). Files of dead writers on this host go at once (see
#: ``storage.cleanup_temp_files``).
TEMP_MAX_AGE_S = 3600.0

_TEMP_OWNER_RE = re.compile(
    rf"^{re.escape(TEMP_PREFIX)}(?P<host>[A-Za-z0-9]+)_(?P<pid>\d+)_[0-9a-f]{{32}}{re.escape(TEMP_SUFFIX)}$")


def is_temp_file_name(name: str) -> bool:
    """True for the temporary names this module makes (``name`` may be a path or URL)."""
    base = name.rsplit("/", 1)[-1]
    return base.startswith(TEMP_PREFIX) and base.endswith(TEMP_SUFFIX)


def temp_name_for(target: str) -> str:
    """The temporary name of a write to ``target`` by a writer that holds its lock.

    Derived from the target's name (short whatever its length), so the next writer of the same file
    finds a killed writer's leftover by name and reuses or removes it, without listing the folder.
    """
    base = target.rstrip("/").rsplit("/", 1)[-1]
    return f"{TEMP_PREFIX}{hashlib.sha256(base.encode('utf-8', 'surrogateescape')).hexdigest()[:32]}{TEMP_SUFFIX}"


def _host_tag() -> str:
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:40] or "host"


def temp_file_name() -> str:
    """A fresh temporary name: ``.tmp-<host>_<pid>_<uuid>.partial``. The writer's host and process
    id let :func:`temp_file_owner_is_dead` tell the leftovers of a dead (killed) writer from the
    files of a writer that is still running."""
    return f"{TEMP_PREFIX}{_host_tag()}_{os.getpid()}_{uuid.uuid4().hex}{TEMP_SUFFIX}"


def temp_file_owner_is_dead(name: str) -> bool:
    """True when ``name`` was written by a process of this host that no longer runs.

    False when the owner is alive, on another host, or unknown (an old-style name): such files
    are only removed by age. A recycled pid makes a dead writer look alive; its file is then
    removed by age instead.
    """
    m = _TEMP_OWNER_RE.match(name.rsplit("/", 1)[-1])
    if not m or m.group("host") != _host_tag():
        return False
    pid = int(m.group("pid"))
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: it exists (another user's process)
        return False
    return False


def remove_temp_leftovers(targets: Iterable[str]) -> int:
    """Remove what killed writers of ``targets`` left (the :func:`temp_name_for` names next to
    them; one ``unlink`` each, no listing). Object stores have no temporary files. Returns how
    many were found."""
    removed = 0
    for url in targets:
        if not is_local(url):
            continue
        path = local_path(url)
        try:
            os.unlink(os.path.join(os.path.dirname(path), temp_name_for(path)))
            removed += 1
        except (FileNotFoundError, NotADirectoryError):
            pass
    return removed
