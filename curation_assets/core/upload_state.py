"""What the upload watcher remembers between ticks, and the small cursor string that names it.

Dagster keeps a sensor's cursor in its database, on the sensor's state and again on every tick
record, so a cursor that grows with the input (ten bytes a file is a megabyte at 100,000 files)
would be copied into the tick history once a minute. The watcher therefore keeps its per-file
table as a compressed blob, either inside the cursor while it is small or, past
:data:`INLINE_STATE_MAX_BYTES`, in a :class:`StateStore` (a folder, or Dagster's own key-value
storage); the cursor then holds only the blob's slot and digest and stays under 200 bytes
whatever the input's size.

The table, one row per file, sorted by relative path:

* the path (UTF-8; names with NUL or control characters never get here, they are refused
  before, so NUL separates them),
* an 8-byte digest of the file's content identity (size + mtime, or ETag + size),
* its status: requested, or seen and waiting (settling, or over the tick cap).

Two store slots are written in turn: a tick writes the slot its cursor does not name, so when
the daemon loses a tick after the write (the cursor is not committed), the committed cursor
still names an intact blob. A blob is trusted only when its SHA-256 matches the cursor's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from . import storage

__all__ = [
    "CURSOR_PREFIX",
    "INLINE_STATE_MAX_BYTES",
    "REQUESTED",
    "SEEN_NEW",
    "SEEN_REPLACED",
    "CursorError",
    "FolderStateStore",
    "KeyValueStateStore",
    "StateStore",
    "WatchState",
    "config_digest",
    "decode_state",
    "encode_state",
    "load_cursor",
    "save_cursor",
    "with_sweep",
]

#: Status of a row: the file was requested with this identity.
REQUESTED = 0
#: Seen with this identity, never requested yet (settling, or waiting behind the tick cap).
SEEN_NEW = 1
#: Requested before with another identity; seen now with this one and not yet re-requested.
SEEN_REPLACED = 2
_STATUSES = (REQUESTED, SEEN_NEW, SEEN_REPLACED)

DIGEST_BYTES = 8

CURSOR_PREFIX = "caw1"
#: Largest table kept inside the cursor itself (a few hundred files; the cursor is then at most
#: about 5.5 kB); larger ones go to the state store when there is one.
INLINE_STATE_MAX_BYTES = 4096

_BLOB_MAGIC = b"CAW1"
_HEADER = struct.Struct("<I")
_STORE_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,120}$")
_HEX_RE = re.compile(r"^[0-9a-f]+$")


class CursorError(ValueError):
    """A cursor or state blob that cannot be used (corrupt, old format, another input)."""


@dataclass
class WatchState:
    """The per-file table: ``rows[rel_path] = (identity digest, status)``, plus where a
    partial listing sweep stopped (``sweep_after``: the last key listed, ``None`` = start)."""

    rows: dict[str, tuple[bytes, int]]
    sweep_after: str | None = None

    def sorted_names(self) -> list[str]:
        return sorted(self.rows)


def encode_state(rows: Mapping[str, tuple[bytes, int]]) -> bytes:
    """The table as one compressed blob (columns: statuses, digests, NUL-separated names)."""
    names = sorted(rows)
    statuses = bytes(rows[n][1] for n in names)
    digests = b"".join(rows[n][0] for n in names)
    body = _HEADER.pack(len(names)) + statuses + digests + "\0".join(names).encode("utf-8")
    return _BLOB_MAGIC + zlib.compress(body, 6)


def decode_state(blob: bytes) -> dict[str, tuple[bytes, int]]:
    """Inverse of :func:`encode_state`; :class:`CursorError` for anything malformed."""
    if not blob.startswith(_BLOB_MAGIC):
        raise CursorError("state blob: unknown format")
    try:
        body = zlib.decompress(blob[len(_BLOB_MAGIC) :])
    except zlib.error as e:
        raise CursorError(f"state blob: not compressed data ({e})") from None
    if len(body) < _HEADER.size:
        raise CursorError("state blob: truncated")
    (count,) = _HEADER.unpack_from(body)
    pos = _HEADER.size
    statuses = body[pos : pos + count]
    pos += count
    digests = body[pos : pos + count * DIGEST_BYTES]
    pos += count * DIGEST_BYTES
    if len(statuses) != count or len(digests) != count * DIGEST_BYTES:
        raise CursorError("state blob: truncated")
    try:
        text = body[pos:].decode("utf-8")
    except UnicodeDecodeError:
        raise CursorError("state blob: names are not UTF-8") from None
    names = text.split("\0") if count else []
    if text and not count or len(names) != count:
        raise CursorError("state blob: name count does not match")
    if any(s not in _STATUSES for s in set(statuses)):
        raise CursorError("state blob: unknown status")
    rows = {
        name: (digests[i * DIGEST_BYTES : (i + 1) * DIGEST_BYTES], statuses[i]) for i, name in enumerate(names)
    }
    if len(rows) != count or "" in rows:
        raise CursorError("state blob: repeated or empty names")
    return rows


# --------------------------------------------------------------------------------------------
# where big tables live
# --------------------------------------------------------------------------------------------


class StateStore(Protocol):
    """Somewhere to keep a blob by name between ticks."""

    def load(self, name: str) -> bytes | None:
        """The blob saved under ``name``, or ``None`` when there is none."""

    def save(self, name: str, data: bytes) -> None:
        """Replace the blob under ``name`` whole."""


def _check_store_key(name: str) -> str:
    if not isinstance(name, str) or not _STORE_KEY_RE.match(name):
        raise ValueError(f"state key {name!r}: use letters, digits, '_', '.', '-' (at most 121)")
    return name


class FolderStateStore:
    """Blobs as files in a folder (local path or fsspec URL), each written whole."""

    def __init__(self, folder_url: str) -> None:
        self.folder_url = storage.normalize_url(folder_url)

    def _url(self, name: str) -> str:
        return storage.resolve_under(self.folder_url, _check_store_key(name))

    def load(self, name: str) -> bytes | None:
        try:
            return storage.read_bytes(self._url(name))
        except FileNotFoundError:
            return None

    def save(self, name: str, data: bytes) -> None:
        storage.write_bytes_atomic(self._url(name), data)


class KeyValueStateStore:
    """Blobs in a string key-value store, base64-encoded under ``prefix + name``.

    Made for Dagster's daemon cursor storage (the store its automation daemon keeps its own
    large cursor in): ``KeyValueStateStore(instance.daemon_cursor_storage.get_cursor_values,
    instance.daemon_cursor_storage.set_cursor_values)``; any pair of callables with those
    shapes works.
    """

    def __init__(
        self,
        get_values: Callable[[set[str]], Mapping[str, str]],
        set_values: Callable[[Mapping[str, str]], None],
        prefix: str = "curation_assets.uploads.",
    ) -> None:
        self._get = get_values
        self._set = set_values
        self.prefix = prefix

    def load(self, name: str) -> bytes | None:
        key = self.prefix + _check_store_key(name)
        value = self._get({key}).get(key)
        if not value:
            return None
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return b""  # present but not ours: the digest check turns it into a fresh start

    def save(self, name: str, data: bytes) -> None:
        self._set({self.prefix + _check_store_key(name): base64.b64encode(data).decode("ascii")})


# --------------------------------------------------------------------------------------------
# the cursor string
# --------------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise CursorError("cursor: bad base64 field")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise CursorError("cursor: bad base64 field") from None


def _blob_digest(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()[:32]


def save_cursor(
    state: WatchState,
    config_digest: str,
    *,
    previous_slot: int | None,
    store: StateStore | None,
    store_key: str,
) -> tuple[str, int | None]:
    """Encode ``state`` into a cursor string; returns ``(cursor, slot used or None if inline)``.

    Small tables (or any table when there is no store) travel inside the cursor; larger ones
    are saved in the store's slot that ``previous_slot`` does not name.
    """
    blob = encode_state(state.rows)
    fields = [CURSOR_PREFIX, f"c={config_digest}", f"n={len(state.rows)}"]
    slot: int | None = None
    if store is not None and len(blob) > INLINE_STATE_MAX_BYTES:
        slot = 1 - previous_slot if previous_slot in (0, 1) else 0
        store.save(f"{_check_store_key(store_key)}.{slot}", blob)
        fields += [f"s={slot}", f"h={_blob_digest(blob)}"]
    else:
        fields.append(f"i={_b64(blob)}")
    fields.append(_sweep_field(state.sweep_after))
    return ";".join(fields), slot


def _sweep_field(sweep_after: str | None) -> str:
    return f"p={'' if sweep_after is None else _b64(sweep_after.encode('utf-8'))}"


def with_sweep(cursor: str, sweep_after: str | None) -> str:
    """``cursor`` (a valid one) with only its sweep position changed: the table, and so the
    store, are not touched when a tick changed nothing but where the listing goes on."""
    head, sep, _old = cursor.rpartition(";p=")
    if not sep:
        raise CursorError("cursor: no sweep position")
    return f"{head};{_sweep_field(sweep_after)}"


def load_cursor(
    cursor: str,
    config_digest: str,
    *,
    store: StateStore | None,
    store_key: str,
) -> tuple[WatchState, int | None]:
    """Decode a cursor written by :func:`save_cursor` for the same configuration.

    Raises :class:`CursorError` (with the reason) for a cursor of another format or
    configuration, a corrupt one, or one whose blob is missing from the store or altered.
    """
    if not isinstance(cursor, str) or not cursor.startswith(CURSOR_PREFIX + ";"):
        raise CursorError("cursor: not written by this version of the watcher")
    fields: dict[str, str] = {}
    for part in cursor.split(";")[1:]:
        name, sep, value = part.partition("=")
        if not sep or name in fields:
            raise CursorError("cursor: malformed field")
        fields[name] = value
    if fields.get("c") != config_digest:
        raise CursorError("cursor: written for another input folder or extension list")
    try:
        count = int(fields["n"])
    except (KeyError, ValueError):
        raise CursorError("cursor: no file count") from None
    slot: int | None = None
    if "i" in fields:
        blob = _unb64(fields["i"])
    elif "s" in fields and "h" in fields:
        if fields["s"] not in ("0", "1") or not _HEX_RE.match(fields["h"]):
            raise CursorError("cursor: bad store slot")
        if store is None:
            raise CursorError("cursor: its table is in a state store, and none was given")
        slot = int(fields["s"])
        found = store.load(f"{_check_store_key(store_key)}.{slot}")
        if found is None:
            raise CursorError(f"cursor: state slot {slot} is missing from the store")
        if _blob_digest(found) != fields["h"]:
            raise CursorError(f"cursor: state slot {slot} does not match the cursor (overwritten or corrupt)")
        blob = found
    else:
        raise CursorError("cursor: no state")
    rows = decode_state(blob)
    if len(rows) != count:
        raise CursorError("cursor: file count does not match its table")
    sweep_after: str | None = None
    if fields.get("p"):
        try:
            sweep_after = _unb64(fields["p"]).decode("utf-8")
        except UnicodeDecodeError:
            raise CursorError("cursor: bad sweep position") from None
    return WatchState(rows=rows, sweep_after=sweep_after), slot


def config_digest(parts: Iterable[str]) -> str:
    """A short digest of what a table is valid for (input URL, extension list)."""
    h = hashlib.blake2b(digest_size=6)
    for p in parts:
        h.update(p.encode("utf-8", "surrogateescape") + b"\0")
    return h.hexdigest()
