"""Partition keys <-> video paths relative to ``input_path``.

A key is the relative path with the characters that the Dagster UI, partition ranges, the
instance's database and URL handling trip on percent-encoded: ``%`` itself, spaces, ``,``, ``[``,
``]``, control characters, every ``.`` of a run of two or more dots (``...`` separates range
ends), and each byte of a file name that is not UTF-8 (held by Python as a surrogate escape), so a
key is always printable text whatever the name. Decoding reverses it exactly, and only the one
canonical key of a path is accepted (``%61.mp4`` is not another name for ``a.mp4``).
"""

from __future__ import annotations

import re
from urllib.parse import unquote

_ALWAYS = set("%,[] ") | {chr(c) for c in range(0x20)} | {"\x7f"}
_DOT_RUN = re.compile(r"\.{2,}")


def _encode_char(ch: str) -> str:
    return "".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogateescape"))


def _needs_encoding(ch: str) -> bool:
    return ch in _ALWAYS or "\udc80" <= ch <= "\udcff"


def key_from_rel_path(rel_path: str) -> str:
    """Encode a posix relative path (as ``os`` gives it: surrogate escapes for undecodable bytes)."""
    if not rel_path:
        raise ValueError("empty video path")
    encoded = "".join(_encode_char(ch) if _needs_encoding(ch) else ch for ch in rel_path)
    return _DOT_RUN.sub(lambda m: "%2E" * len(m.group(0)), encoded)


def rel_path_problem(rel_path: str) -> str | None:
    """Why a listed name (an object key relative to the input prefix, taken exactly as listed)
    cannot be a video partition, or None.

    On object stores ``in/./a.mp4``, ``in//a.mp4`` and ``in/../a.mp4`` are legal keys, distinct
    from ``in/a.mp4``; but a video's layout documents are named by its relative path
    (``processed_videos/<rel>.json``), where ``.``, empty and ``..`` segments would name another
    video's documents or a place outside the layout. Such keys are skipped with this reason,
    never normalised into another key's name."""
    segments = rel_path.split("/")
    if ".." in segments:
        return "its key has a '..' segment: a partition names a path under input_path (rename the object)"
    if "" in segments or "." in segments:
        return ("its key has an empty or '.' segment: its layout documents would take the name of another key's "
                "(rename the object)")
    return None


def rel_path_from_key(key: str) -> str:
    """Decode a partition key back to the relative path; refuses anything but a canonical key
    (validation of the path itself happens where it is resolved)."""
    if not key:
        raise ValueError("empty partition key")
    rel = unquote(key, errors="surrogateescape")
    canonical = key_from_rel_path(rel)
    if canonical != key:
        raise ValueError(f"partition key {key!r} is not the key of that path: its key is {canonical!r}")
    return rel
