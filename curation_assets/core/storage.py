"""Storage helpers: local paths and fsspec URLs (``s3://bucket/prefix``) behind one API.

Plain Python (no Dagster import) so the pipeline core, the CLI and tests can all use it.

Guarantees (see ``spec/clip-writer-layout.md``, "Where we deliberately do better", items 1-3):

* Whole files only. Local writes go to a temporary name in the same folder
  (``.tmp-<host>_<pid>_<uuid>.partial``), are fsynced and then ``os.replace``-d onto the real name, so a
  reader (or a run killed with SIGKILL) never sees a partial file under a real name. Object
  stores get a single whole-object put (s3fs switches to a multipart upload for large bodies;
  the object only becomes visible when the upload completes).
* Paths are compared by normalised path components, never by string prefix
  (``/data/vid`` is not a parent of ``/data/videos/x.mp4``).
* Relative keys coming from outside (partition keys typed into the UI) are validated by
  :func:`resolve_under` before anything is read or written.
* Credentials come from the usual AWS environment variables or ``storage_options`` and are
  never put into exception messages: storage errors are re-raised as :class:`StorageError`
  with :func:`redact`-ed text and without the original exception chained.
* s3fs caches directory listings per filesystem instance; every listing/existence check here
  invalidates the cache for that path first, so files written by this process or another
  process (a previous run) are always seen.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import IO, Any, TypeVar

import fsspec
from fsspec.implementations.local import LocalFileSystem

__all__ = [
    "DEFAULT_VIDEO_EXTENSIONS",
    "INPUT_BLOCK_SIZE",
    "TEMP_PREFIX",
    "TEMP_SUFFIX",
    "StorageError",
    "StorageNotFoundError",
    "TEMP_MAX_AGE_S",
    "cleanup_temp_files",
    "exists",
    "get_fs",
    "is_local",
    "is_temp_file_name",
    "join",
    "list_files",
    "list_videos",
    "open_input",
    "read_bytes",
    "redact",
    "register_secret",
    "relative_to",
    "remove_files",
    "resolve_under",
    "temp_file_name",
    "temp_file_owner_is_dead",
    "write_bytes_atomic",
    "write_text_atomic",
]

#: The extensions NeMo Curator's ``VideoReader`` accepts (1.4.0), so a folder yields the same videos
#: here as there; matched case-insensitively. Other containers (``.m4v``, ``.mpg``, ``.ts``, which
#: also names TypeScript sources) are opt-in: callers pass their own list.
DEFAULT_VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".mov", ".avi", ".mkv", ".webm")

#: Temporary files written next to their target by :func:`write_bytes_atomic` (local only).
TEMP_PREFIX = ".tmp-"
TEMP_SUFFIX = ".partial"

#: Block size for ranged reads of inputs on object stores (one block is buffered at a time).
INPUT_BLOCK_SIZE = 8 * 2**20

_T = TypeVar("_T")

_LOCAL_PROTOCOLS = {"file", "local"}
# Filesystems where a single put is atomic (whole object or nothing).
_OBJECT_STORE_PROTOCOLS = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss", "memory"}
_S3_PROTOCOLS = {"s3", "s3a"}

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
# Anything that looks like "scheme:/" — used to refuse URLs where a relative key is expected.
_URLISH_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:/")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


# --------------------------------------------------------------------------------------------
# errors and redaction
# --------------------------------------------------------------------------------------------


class StorageError(OSError):
    """A storage operation failed. The message has been passed through :func:`redact`."""


class StorageNotFoundError(StorageError, FileNotFoundError):
    """The file or folder does not exist (still catchable as ``FileNotFoundError``)."""


# Values removed wherever they appear. Access key *ids* are identifiers, not secrets, and are
# not listed (a short fake id such as "testing" would otherwise mangle unrelated text); real
# ones (AKIA.../ASIA...) are still removed by pattern.
_SECRET_ENV_VARS = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
)
_SECRET_OPTION_NAMES = {
    "secret",
    "token",
    "password",
    "aws_secret_access_key",
    "aws_session_token",
    "session_token",
    "api_key",
    "secret_key",
    "account_key",
    "sas_token",
    "client_secret",
}
_registered_secrets: set[str] = set()
# shorter values are not treated as secrets (real ones are far longer; fake test values
# like "testing" would otherwise be cut out of every message)
_MIN_SECRET_LEN = 8

_SECRET_NAMES_RE = (
    r"(?:aws_)?(?:secret_access_key|access_key_id|session_token|security_token|"
    r"secret_key|access_key|account_key|sas_token|client_secret|api_key|apikey|"
    r"secret|password|passwd|token|key)"
)
_REDACT_PATTERNS = [
    # name=value (query strings, CLI flags, repr of kwargs)
    re.compile(r"(?i)(\b" + _SECRET_NAMES_RE + r"\s*=\s*)(['\"]?)([^\s'\",&;)}\]]+)"),
    # 'name': 'value' / "name": "value" (dict / JSON repr)
    re.compile(r"(?i)(['\"]" + _SECRET_NAMES_RE + r"['\"]\s*:\s*)(['\"]?)([^\s'\",}\]]+)"),
    # presigned-URL parameters
    re.compile(r"(?i)(X-Amz-(?:Signature|Credential|Security-Token)=)()([^&\s'\"]+)"),
    # HTTP Authorization header
    re.compile(r"(?i)(Authorization\s*[:=]\s*)(['\"]?)([^'\"\n]+)"),
    # user:password@ in URLs
    re.compile(r"(://[^/\s:@]*:)()([^@/\s]+)(?=@)"),
]
# AWS access key ids (AKIA... long-term, ASIA... temporary)
_AWS_KEY_ID_RE = re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")


def register_secret(value: str | None) -> None:
    """Register an extra secret value (e.g. a caption endpoint key) for :func:`redact`."""
    if value and len(value) >= _MIN_SECRET_LEN:
        _registered_secrets.add(value)


def _register_option_secrets(storage_options: dict | None) -> None:
    if not storage_options:
        return
    for k, v in storage_options.items():
        if isinstance(v, dict):
            _register_option_secrets(v)
        elif isinstance(v, str) and k.lower() in _SECRET_OPTION_NAMES:
            register_secret(v)


def redact(text: Any) -> str:
    """Return ``str(text)`` with known secret values and ``key=``/``secret=``-style values
    replaced by ``***``.

    Known secrets: the AWS credential environment variables, secrets passed in any
    ``storage_options`` seen by this module, and values given to :func:`register_secret`.
    """
    s = str(text)
    secrets = set(_registered_secrets)
    for name in _SECRET_ENV_VARS:
        v = os.environ.get(name)
        if v and len(v) >= _MIN_SECRET_LEN:
            secrets.add(v)
    # longest first, so a secret that contains another is removed whole
    for v in sorted(secrets, key=len, reverse=True):
        s = s.replace(v, "***")
    for pat in _REDACT_PATTERNS:
        s = pat.sub(lambda m: m.group(1) + m.group(2) + "***", s)
    s = _AWS_KEY_ID_RE.sub("***", s)
    return s


def _guarded(op: str, url: str, fn: Callable[[], _T]) -> _T:
    """Run ``fn()``; re-raise storage errors as :class:`StorageError` with a redacted message.

    The new exception is raised after the ``except`` block has ended, so neither
    ``__cause__`` nor ``__context__`` carries the original (unredacted) exception and no
    traceback printer or error serialiser can show it. (A context manager cannot do this:
    its ``__exit__`` runs while the original exception is being handled.)
    """
    err: tuple[type[Exception], str] | None = None
    try:
        return fn()
    except StorageError:
        raise
    except (ValueError, TypeError) as e:  # validation / programming errors: keep the type
        err = (ValueError if isinstance(e, ValueError) else TypeError, str(e))
    except FileNotFoundError as e:
        err = (StorageNotFoundError, f"{op} {url!r}: not found ({e})")
    except Exception as e:  # noqa: BLE001 - any backend error (botocore, aiohttp, OSError)
        err = (StorageError, f"{op} {url!r} failed: {type(e).__name__}: {e}")
    cls, msg = err
    raise cls(redact(msg))


# --------------------------------------------------------------------------------------------
# URLs and filesystems
# --------------------------------------------------------------------------------------------


def _scheme(url: str) -> str | None:
    m = _SCHEME_RE.match(url)
    return m.group(1).lower() if m else None


def is_local(url: str) -> bool:
    """True for plain paths and ``file://`` / ``local://`` URLs."""
    scheme = _scheme(url)
    return scheme is None or scheme in _LOCAL_PROTOCOLS


def _local_path(url: str) -> str:
    scheme = _scheme(url)
    if scheme is not None:
        url = url[len(scheme) + 3 :]
        if not url.startswith("/"):
            url = "/" + url
    return os.path.abspath(url)


def normalize_url(url: str) -> str:
    """A local path made absolute (``file://`` dropped); other URLs unchanged but for a trailing ``/``."""
    if not url:
        raise ValueError("empty path")
    if is_local(url):
        return _local_path(url)
    return url.rstrip("/") if not url.endswith("://") else url


def _s3_endpoint_from_env() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def _prepare_options(protocol: str, storage_options: dict | None) -> dict:
    opts = dict(storage_options or {})
    _register_option_secrets(opts)
    if protocol in _S3_PROTOCOLS:
        client_kwargs = opts.get("client_kwargs") or {}
        if not opts.get("endpoint_url") and not client_kwargs.get("endpoint_url"):
            # Recent botocore reads AWS_ENDPOINT_URL(_S3) itself; passing it explicitly also
            # works with older versions and makes fsspec's instance cache key depend on the
            # endpoint (two endpoints never share a cached filesystem).
            endpoint = _s3_endpoint_from_env()
            if endpoint:
                opts["endpoint_url"] = endpoint
    return opts


def get_fs(
    url: str, storage_options: dict | None = None
) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return ``(filesystem, path inside it)`` for a local path or fsspec URL.

    Local paths (and ``file://`` URLs) are made absolute. For ``s3://`` the endpoint comes
    from ``storage_options`` or ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``; credentials
    from ``storage_options`` or the standard AWS environment/credential chain.
    """
    if not isinstance(url, str) or not url:
        raise ValueError("storage URL must be a non-empty string")
    if is_local(url):
        return LocalFileSystem(), _local_path(url)
    scheme = _scheme(url)
    assert scheme is not None
    opts = _prepare_options(scheme, storage_options)
    fs, path = _guarded("open filesystem for", url, lambda: fsspec.core.url_to_fs(url, **opts))
    return fs, path.rstrip("/") or path


def _protocol_of(fs: fsspec.AbstractFileSystem) -> str:
    proto = fs.protocol
    if isinstance(proto, (tuple, list)):
        proto = proto[0]
    return str(proto)


def _is_local_fs(fs: fsspec.AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def _to_url(fs: fsspec.AbstractFileSystem, scheme: str | None, path: str) -> str:
    """Full URL for ``path`` inside ``fs``, in the style of the caller's URL."""
    if _is_local_fs(fs):
        return path
    return f"{scheme or _protocol_of(fs)}://{path.lstrip('/')}"


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
    scheme = _scheme(base)
    if scheme is not None:
        prefix = base[: len(scheme) + 3]
        rest = base[len(scheme) + 3 :]
        trimmed = rest.rstrip("/")
        if trimmed == "":
            return prefix + ("/" if rest.startswith("/") else "") + joined
        return prefix + trimmed + "/" + joined
    if base.strip("/") == "":
        return ("/" if base.startswith("/") else "") + joined
    return base.rstrip("/") + "/" + joined


def _components(url: str) -> tuple[str, tuple[str, ...]]:
    """(namespace, normalised path components). Namespace is ``"file"`` for local paths and
    ``"<scheme>"`` otherwise (the bucket is the first component)."""
    if is_local(url):
        path = _local_path(url)
        return "file", tuple(c for c in path.split("/") if c)
    scheme = _scheme(url)
    assert scheme is not None
    ns = "s3" if scheme in _S3_PROTOCOLS else scheme
    rest = url[len(scheme) + 3 :]
    norm = posixpath.normpath("/" + rest)
    return ns, tuple(c for c in norm.split("/") if c)


def relative_to(base_url: str, url: str) -> str:
    """Posix path of ``url`` relative to ``base_url``, by normalised path components.

    ``relative_to("/data/vid", "/data/videos/x.mp4")`` raises ``ValueError`` (not a prefix
    component-wise). Relative local paths are resolved against the current directory.
    Returns ``""`` when both name the same location.
    """
    ns_b, comps_b = _components(base_url)
    ns_u, comps_u = _components(url)
    if ns_b != ns_u or comps_u[: len(comps_b)] != comps_b:
        raise ValueError(f"{redact(url)!r} is not inside {redact(base_url)!r}")
    return "/".join(comps_u[len(comps_b) :])


def resolve_under(base_url: str, rel: str) -> str:
    """Join an untrusted relative key under ``base_url``; the result is always inside it.

    Refused with ``ValueError``: empty keys, absolute paths, URLs (any ``scheme:/``, so also
    another bucket), ``.``/``..`` segments, empty segments (``a//b``, trailing ``/``), and
    NUL/control characters.
    """
    if not isinstance(rel, str):
        raise ValueError(f"path key must be a string, got {type(rel).__name__}")
    shown = redact(rel)
    if rel == "":
        raise ValueError("path key is empty")
    if _CONTROL_RE.search(rel):
        raise ValueError(f"path key {shown!r} contains NUL or control characters")
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


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------


def is_temp_file_name(name: str) -> bool:
    """True for the temporary names :func:`write_bytes_atomic` uses."""
    base = name.rsplit("/", 1)[-1]
    return base.startswith(TEMP_PREFIX) and base.endswith(TEMP_SUFFIX)


def _host_tag() -> str:
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:40] or "host"


def temp_file_name() -> str:
    """A fresh temporary name: ``.tmp-<host>_<pid>_<uuid>.partial``. The writer's host and process
    id let :func:`cleanup_temp_files` tell the leftovers of a dead (killed) writer from the files
    of a writer that is still running."""
    return f"{TEMP_PREFIX}{_host_tag()}_{os.getpid()}_{uuid.uuid4().hex}{TEMP_SUFFIX}"


_TEMP_OWNER_RE = re.compile(r"^\.tmp-(?P<host>[A-Za-z0-9]+)_(?P<pid>\d+)_[0-9a-f]{32}\.partial$")


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


def _fsync_dir(path: str) -> None:
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


def _write_local_atomic(path: str, data: bytes | bytearray) -> None:
    folder = os.path.dirname(path)
    for attempt in range(2):
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, temp_file_name())
        # O_EXCL: never write into somebody else's file; 0o666 & ~umask like a normal open()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(tmp, flags, 0o666)
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
            # our temporary file was removed under us (a concurrent cleanup_temp_files):
            # nothing was published, write it again once
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if attempt == 0:
                continue
            raise
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_dir(folder)
        return


def write_bytes_atomic(url: str, data: bytes, storage_options: dict | None = None) -> None:
    """Write ``data`` so that ``url`` holds either the old content or all of ``data``.

    Local: temporary file in the same folder, fsync, ``os.replace`` (parent folders created).
    Object stores: one whole-object put (multipart above s3fs's threshold).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    fs, path = get_fs(url, storage_options)

    def _do() -> None:
        if _is_local_fs(fs):
            _write_local_atomic(path, bytes(data) if isinstance(data, memoryview) else data)
            return
        proto = _protocol_of(fs)
        if proto in _OBJECT_STORE_PROTOCOLS:
            fs.pipe_file(path, bytes(data))
        else:
            # other (file-like) remote filesystems: temporary name + move
            parent = fs._parent(path)
            tmp = f"{parent.rstrip('/')}/{temp_file_name()}"
            fs.makedirs(parent, exist_ok=True)
            fs.pipe_file(tmp, bytes(data))
            try:
                fs.mv(tmp, path)
            except BaseException:
                with contextlib.suppress(Exception):
                    fs.rm_file(tmp)
                raise
        fs.invalidate_cache(path)

    _guarded("write", url, _do)


def write_text_atomic(url: str, text: str, storage_options: dict | None = None) -> None:
    """UTF-8 text version of :func:`write_bytes_atomic`."""
    write_bytes_atomic(url, text.encode("utf-8"), storage_options)


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


def read_bytes(url: str, storage_options: dict | None = None) -> bytes:
    """The whole content of a file."""
    fs, path = get_fs(url, storage_options)

    def _do() -> bytes:
        if _is_local_fs(fs):
            with open(path, "rb") as f:
                return f.read()
        return fs.cat_file(path)

    return _guarded("read", url, _do)


def open_input(
    url: str, storage_options: dict | None = None, block_size: int = INPUT_BLOCK_SIZE
) -> IO[bytes]:
    """A seekable binary file object for reading ``url`` (usable with ``av.open(f)``).

    Local files are opened directly. On object stores reads are ranged requests of
    ``block_size`` bytes with a read-ahead cache of one block, so memory stays flat
    whatever the size of the video. Use as a context manager or close it.
    """
    fs, path = get_fs(url, storage_options)

    def _do() -> IO[bytes]:
        if _is_local_fs(fs):
            return open(path, "rb")  # noqa: SIM115 - caller owns it
        return fs.open(path, "rb", block_size=block_size, cache_type="readahead")

    return _guarded("open", url, _do)


def exists(url: str, storage_options: dict | None = None) -> bool:
    """True if a file or (non-empty, for object stores) folder exists at ``url``."""
    fs, path = get_fs(url, storage_options)

    def _do() -> bool:
        if _is_local_fs(fs):
            return os.path.exists(path)
        fs.invalidate_cache(path)
        return bool(fs.exists(path))

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


def list_files(url: str, storage_options: dict | None = None) -> list[str]:
    """All files under the folder ``url`` (recursive, temporary files included), as full
    URLs in the caller's style (plain absolute paths for local), sorted. ``[]`` if missing."""
    fs, path = get_fs(url, storage_options)
    scheme = _scheme(url)
    found = _guarded("list", url, lambda: _find_files(fs, path))
    return sorted(_to_url(fs, scheme, p) for p in found)


def list_videos(
    input_url: str,
    extensions: Sequence[str] = DEFAULT_VIDEO_EXTENSIONS,
    storage_options: dict | None = None,
) -> list[str]:
    """Relative posix paths (sorted) of the video files under ``input_url``, recursively.

    Extensions match case-insensitively; hidden files and files in hidden folders
    (any component starting with ``.``, which includes our temporary files) are skipped.
    Raises :class:`StorageNotFoundError` when ``input_url`` does not exist (for object
    stores: no object under the prefix).
    """
    exts = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
    fs, path = get_fs(input_url, storage_options)

    def _do() -> list[str]:
        if _is_local_fs(fs) and not os.path.isdir(path):
            raise FileNotFoundError(f"input folder {path} does not exist")
        found = _find_files(fs, path)
        if not found and not _is_local_fs(fs) and not fs.exists(path):
            raise FileNotFoundError("no object under this prefix")
        return found

    found = _guarded("list", input_url, _do)
    _ns, base_comps = _components(_to_url(fs, _scheme(input_url), path))
    out = []
    for p in found:
        comps = tuple(c for c in p.split("/") if c)
        if comps[: len(base_comps)] != base_comps or len(comps) == len(base_comps):
            continue
        rel = comps[len(base_comps) :]
        if any(c.startswith(".") for c in rel):
            continue
        if not rel[-1].lower().endswith(exts):
            continue
        out.append("/".join(rel))
    return sorted(out)


# --------------------------------------------------------------------------------------------
# removing
# --------------------------------------------------------------------------------------------


def _group_by_fs(
    urls: Iterable[str], storage_options: dict | None
) -> list[tuple[fsspec.AbstractFileSystem, list[str]]]:
    groups: dict[int, tuple[fsspec.AbstractFileSystem, list[str]]] = {}
    for u in urls:
        fs, path = get_fs(u, storage_options)
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
    elif _protocol_of(fs) in _S3_PROTOCOLS and hasattr(fs, "call_s3"):
        _s3_bulk_delete(fs, paths)
    else:
        # fs.rm() would glob-expand names like "a[1].mp4"; delete one literal name at a time
        for p in paths:
            with contextlib.suppress(FileNotFoundError):
                fs.rm_file(p)
            fs.invalidate_cache(p)


def remove_files(
    urls: Iterable[str],
    storage_options: dict | None = None,
    *,
    prune_empty_dirs_under: str | None = None,
) -> None:
    """Delete files; ones already missing are ignored. Names are taken literally (no glob
    expansion, so ``a[1].mp4`` deletes exactly that file).

    ``prune_empty_dirs_under``: for local paths, also remove parent folders left empty, up to
    (not including) that folder.
    """
    urls = list(urls)
    if not urls:
        return
    stop = _local_path(prune_empty_dirs_under) if prune_empty_dirs_under and is_local(prune_empty_dirs_under) else None
    for fs, paths in _group_by_fs(urls, storage_options):
        what = paths[0] if len(paths) == 1 else f"{len(paths)} files, e.g. {paths[0]}"
        _guarded("remove", what, lambda fs=fs, paths=paths: _remove_paths(fs, paths, stop))


#: Age after which a temporary file counts as abandoned whoever wrote it (no single whole-file
#: write takes this long). Files of dead writers on this host go at once (see below).
TEMP_MAX_AGE_S = 3600.0


def cleanup_temp_files(
    folder_url: str,
    storage_options: dict | None = None,
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
    fs, path = get_fs(folder_url, storage_options)
    if recursive:
        temps = [u for u in list_files(folder_url, storage_options) if is_temp_file_name(u)]
    elif _is_local_fs(fs):
        try:
            with os.scandir(path) as it:
                temps = [e.path for e in it if is_temp_file_name(e.name) and e.is_file(follow_symlinks=False)]
        except (FileNotFoundError, NotADirectoryError):
            temps = []
    else:
        def _ls() -> list[str]:
            fs.invalidate_cache(path)
            try:
                entries = fs.ls(path, detail=True)
            except FileNotFoundError:
                return []
            return [e["name"] for e in entries if e.get("type") == "file" and is_temp_file_name(e["name"])]

        temps = [_to_url(fs, _scheme(folder_url), p) for p in _guarded("list", folder_url, _ls)]
    if min_age_s > 0 and temps:
        now = time.time()
        keep = []
        for u in temps:
            if _is_local_fs(fs) and temp_file_owner_is_dead(u):
                keep.append(u)
                continue
            try:
                if _is_local_fs(fs):
                    mtime = os.stat(_local_path(u)).st_mtime
                else:
                    m = fs.modified(get_fs(u, storage_options)[1])
                    mtime = m.timestamp()
            except (OSError, IsADirectoryError):
                continue
            if now - mtime >= min_age_s:
                keep.append(u)
        temps = keep
    remove_files(temps, storage_options)
    return len(temps)
