"""Partition keys <-> video paths relative to ``input_path``.

A key is the relative path with the characters that the Dagster UI, partition ranges and
URL handling trip on percent-encoded: ``%`` itself, spaces, ``,``, ``[``, ``]``, control
characters, and every ``.`` of a run of two or more dots (``...`` separates range ends).
Decoding is plain percent-decoding, so the mapping is reversible and stable across runs.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

_ALWAYS = set("%,[] ") | {chr(c) for c in range(0x20)} | {"\x7f"}
_DOT_RUN = re.compile(r"\.{2,}")


def _encode_char(ch: str) -> str:
    return "".join(f"%{b:02X}" for b in ch.encode("utf-8"))


def key_from_rel_path(rel_path: str) -> str:
    """Encode a posix relative path as a partition key."""
    if not rel_path:
        raise ValueError("empty video path")
    encoded = "".join(_encode_char(ch) if ch in _ALWAYS else ch for ch in rel_path)
    return _DOT_RUN.sub(lambda m: "%2E" * len(m.group(0)), encoded)


def rel_path_from_key(key: str) -> str:
    """Decode a partition key back to the relative path (validation happens where it is resolved)."""
    if not key:
        raise ValueError("empty partition key")
    return unquote(key, errors="strict")
