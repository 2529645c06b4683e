"""Paths and URLs: local paths and fsspec URLs (``s3://bucket/prefix``) compared and joined by
normalised path components, never by string prefix (``/data/vid`` is not a parent of
``/data/videos/x.mp4``), and untrusted relative keys resolved only inside their base.
"""

from __future__ import annotations

import os
import posixpath
import re

from .redaction import redact

LOCAL_PROTOCOLS = {"file", "local"}
S3_PROTOCOLS = {"s3", "s3a"}

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
# Anything that looks like "scheme:/": refused where a relative key is expected.
_URLISH_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:/")
_NUL_RE = re.compile(r"\x00")


def scheme(url: str) -> str | None:
    m = _SCHEME_RE.match(url)
    return m.group(1).lower() if m else None


def is_local(url: str) -> bool:
    """True for plain paths and ``file://`` / ``local://`` URLs."""
    proto = scheme(url)
    return proto is None or proto in LOCAL_PROTOCOLS


def local_path(url: str) -> str:
    proto = scheme(url)
    if proto is not None:
        url = url[len(proto) + 3 :]
        if not url.startswith("/"):
            url = "/" + url
    return os.path.abspath(url)


def normalize_url(url: str) -> str:
    """A local path made absolute (``file://`` dropped); other URLs unchanged but for a trailing ``/``."""
    if not url:
        raise ValueError("empty path")
    if is_local(url):
        return local_path(url)
    return url.rstrip("/") if not url.endswith("://") else url


def join(base: str, *parts: str) -> str:
    """Join path parts onto a local path or URL, keeping the scheme and avoiding ``//``.

    ``join("s3://b/out/", "clips", "x.mp4") == "s3://b/out/clips/x.mp4"``. Parts are taken
    as relative (leading/trailing slashes stripped, empty parts skipped); no ``..`` handling,
    use :func:`resolve_under` for untrusted input.
    """
    pieces = [p.strip("/") for p in parts if p is not None and p.strip("/")]
    if not pieces:
        return base
    joined = "/".join(pieces)
    proto = scheme(base)
    if proto is not None:
        prefix = base[: len(proto) + 3]
        rest = base[len(proto) + 3 :]
        trimmed = rest.rstrip("/")
        if trimmed == "":
            return prefix + ("/" if rest.startswith("/") else "") + joined
        return prefix + trimmed + "/" + joined
    if base.strip("/") == "":
        return ("/" if base.startswith("/") else "") + joined
    return base.rstrip("/") + "/" + joined


def components(url: str) -> tuple[str, tuple[str, ...]]:
    """(namespace, normalised path components). Namespace is ``"file"`` for local paths and
    ``"<scheme>"`` otherwise (the bucket is the first component)."""
    if is_local(url):
        path = local_path(url)
        return "file", tuple(c for c in path.split("/") if c)
    proto = scheme(url)
    assert proto is not None
    ns = "s3" if proto in S3_PROTOCOLS else proto
    rest = url[len(proto) + 3 :]
    norm = posixpath.normpath("/" + rest)
    return ns, tuple(c for c in norm.split("/") if c)


def relative_to(base_url: str, url: str) -> str:
    """Posix path of ``url`` relative to ``base_url``, by normalised path components.

    ``relative_to("/data/vid", "/data/videos/x.mp4")`` raises ``ValueError`` (not a prefix
    component-wise). Relative local paths are resolved against the current directory.
    Returns ``""`` when both name the same location.
    """
    ns_b, comps_b = components(base_url)
    ns_u, comps_u = components(url)
    if ns_b != ns_u or comps_u[: len(comps_b)] != comps_b:
        raise ValueError(f"{redact(url)!r} is not inside {redact(base_url)!r}")
    return "/".join(comps_u[len(comps_b) :])


def resolve_under(base_url: str, rel: str) -> str:
    """Join an untrusted relative key under ``base_url``; the result is always inside it.

    Refused with ``ValueError``: empty keys, absolute paths, URLs (any ``scheme:/``, so also
    another bucket), ``.``/``..`` segments, empty segments (``a//b``, trailing ``/``), and
    NUL characters.
    """
    if not isinstance(rel, str):
        raise ValueError(f"path key must be a string, got {type(rel).__name__}")
    shown = redact(rel)
    if rel == "":
        raise ValueError("path key is empty")
    if _NUL_RE.search(rel):
        raise ValueError(f"path key {shown!r} contains a NUL character")
    if _URLISH_RE.match(rel):
        raise ValueError(
            f"path key {shown!r} is a URL; expected a path relative to {redact(base_url)!r}"
        )
    if rel.startswith("/"):
        raise ValueError(
            f"path key {shown!r} is absolute; expected a path relative to {redact(base_url)!r}"
        )
    segments = rel.split("/")
    for seg in segments:
        if seg == "":
            raise ValueError(f"path key {shown!r} has an empty path segment")
        if seg in (".", ".."):
            raise ValueError(f"path key {shown!r} has a {seg!r} segment; it must stay inside {redact(base_url)!r}")
    result = join(base_url, *segments)
    # belt and braces: the component-wise check must give back exactly the key
    if relative_to(base_url, result) != "/".join(segments):
        raise ValueError(f"path key {shown!r} does not resolve inside {redact(base_url)!r}")
    return result


def is_inside(base_url: str, url: str) -> bool:
    """True when ``url`` is ``base_url`` or lies under it, by normalised path components (``..``
    resolved, never a string prefix: ``<base>/../x`` is not inside ``<base>``)."""
    try:
        relative_to(base_url, url)
    except ValueError:
        return False
    return True


def key_under(base_url: str, url: str) -> str:
    """The key of a URL read back from storage under ``base_url``: only when ``url`` is exactly
    ``resolve_under(base_url, key)`` (same spelling, no ``.``/``..``/empty segments), so a stored
    URL is used only when it could have been made from its base; ``ValueError`` otherwise."""
    if not isinstance(url, str):
        raise ValueError(f"a URL must be a string, got {type(url).__name__}")
    rel = relative_to(base_url, url)
    if not rel or resolve_under(base_url, rel) != url:
        raise ValueError(f"{redact(url)!r} is not a canonical path under {redact(base_url)!r}")
    return rel


def regular_file_problem(root_url: str, url: str) -> str | None:
    """Why ``url`` must not be read or moved as a file of ``root_url`` (None when it may): it must be
    a canonical key under the root and, locally, a regular file (not a symlink, FIFO or device)
    whose real path stays inside the root's real path (no symlinked folder leads out). On object
    stores the key is the whole question (there are no links). A missing file is no problem here."""
    try:
        key_under(root_url, url)
    except ValueError as exc:
        return str(exc)
    if not is_local(url):
        return None
    import stat

    path = local_path(url)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"{redact(url)!r} cannot be checked ({exc.strerror or exc})"
    if stat.S_ISLNK(st.st_mode):
        return f"{redact(url)!r} is a symbolic link (never followed)"
    if not stat.S_ISREG(st.st_mode):
        return f"{redact(url)!r} is not a regular file"
    real, root = os.path.realpath(path), os.path.realpath(local_path(root_url))
    if not is_inside(root, real):
        return f"{redact(url)!r} leads outside {redact(root_url)!r} through a symbolic link"
    return None
