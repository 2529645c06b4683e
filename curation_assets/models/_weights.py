"""Finding model weights on disk, the missing-weights error, and the per-process model cache.

Lookup order for a Hugging Face repo ``owner/name``:

1. ``<model_dir>/owner/name`` (the reference's folder convention), when ``model_dir`` is given;
2. the Hugging Face cache (``snapshot_download(..., local_files_only=True)``);
3. a download, only when ``allow_download`` is true (into ``<model_dir>/owner/name`` when
   ``model_dir`` is given, else into the cache).

Nothing is fetched unless the caller allows it; otherwise ``ModelWeightsMissing`` names the
folders searched and the command that downloads the weights.
"""

from __future__ import annotations

import logging
import shlex
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class ModelWeightsMissing(FileNotFoundError):
    """A model's weights are not on disk and downloading was not allowed (or failed).

    ``searched`` lists the places looked at; ``download_command`` is a shell command that
    fetches the weights into the folder the loader reads.
    """

    def __init__(
        self,
        what: str,
        repo_id: str,
        searched: Sequence[str],
        download_command: str,
        reason: str = "",
        note: str = "",
    ):
        self.what = what
        self.repo_id = repo_id
        self.searched = list(searched)
        self.download_command = download_command
        msg = f"{what} weights not found ({repo_id}). Searched: " + "; ".join(self.searched) + "."
        if reason:
            msg += f" {reason}"
        msg += f" Download them with: {download_command}"
        if note:
            msg += f" ({note})"
        super().__init__(msg)


class ModelLoadError(RuntimeError):
    """The weights were found but the model could not be loaded from them."""


def hf_cache_dir(cache_dir: str | Path | None = None) -> str:
    if cache_dir is not None:
        return str(cache_dir)
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def download_command(repo_id: str, local_dir: Path | None, files: Sequence[str] = ()) -> str:
    parts = ["huggingface-cli", "download", repo_id, *files]
    if local_dir is not None:
        parts += ["--local-dir", str(local_dir)]
    return shlex.join(parts)


def resolve_repo(
    repo_id: str,
    *,
    what: str,
    is_complete: Callable[[Path], bool],
    requirement: str,
    model_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    allow_download: bool = False,
    files: Sequence[str] = (),
    note: str = "",
) -> Path:
    """Folder holding ``repo_id``'s files, per the lookup order in this module's docstring.

    ``is_complete(folder)`` decides whether a folder holds what the loader needs (described in
    words by ``requirement`` for the error message); ``files`` restricts a download (and the
    suggested command) to those file names.
    """
    local = Path(model_dir).expanduser() / repo_id if model_dir is not None else None
    searched: list[str] = []
    if local is not None:
        if is_complete(local):
            return local
        searched.append(f"{local} ({'incomplete: needs ' if local.exists() else 'missing; needs '}{requirement})")

    cached = _from_hf_cache(repo_id, cache_dir)
    if cached is not None and is_complete(cached):
        return cached
    searched.append(f"Hugging Face cache {hf_cache_dir(cache_dir)} ({'incomplete' if cached else 'not cached'})")

    command = download_command(repo_id, local, files)
    if not allow_download:
        raise ModelWeightsMissing(what, repo_id, searched, command, "Downloads are off (offline by default).", note)

    from huggingface_hub import snapshot_download

    log.info("downloading %s into %s", repo_id, local or hf_cache_dir(cache_dir))
    try:
        path = Path(
            snapshot_download(
                repo_id,
                local_dir=str(local) if local is not None else None,
                cache_dir=str(cache_dir) if cache_dir is not None else None,
                allow_patterns=list(files) or None,
            )
        )
    except Exception as exc:  # network, auth, disk: all end the same way for the caller
        raise ModelWeightsMissing(what, repo_id, searched, command, f"The download failed: {exc}.", note) from exc
    if not is_complete(path):
        raise ModelWeightsMissing(
            what, repo_id, searched + [f"{path} (downloaded, still incomplete)"], command, "", note
        )
    return path


def _from_hf_cache(repo_id: str, cache_dir: str | Path | None) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, cache_dir=str(cache_dir) if cache_dir else None, local_files_only=True))
    except Exception:  # LocalEntryNotFoundError and friends: simply not cached
        return None


# ----------------------------------------------------------------------------------------------
# One model per process per key: Dagster runs many partitions in one process; loading a 1B
# model once per partition would dominate the run.

_CACHE: dict[tuple[Any, ...], Any] = {}
_CACHE_LOCK = threading.Lock()
_KEY_LOCKS: dict[tuple[Any, ...], threading.Lock] = {}


def cached(key: tuple[Any, ...], loader: Callable[[], Any]) -> Any:
    """``loader()``'s result, computed once per process for ``key`` (thread-safe)."""
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
        key_lock = _KEY_LOCKS.setdefault(key, threading.Lock())
    with key_lock:
        with _CACHE_LOCK:
            if key in _CACHE:
                return _CACHE[key]
        value = loader()
        with _CACHE_LOCK:
            _CACHE[key] = value
        return value


def clear_model_cache() -> None:
    """Drop every cached model (tests; freeing GPU memory between configurations)."""
    with _CACHE_LOCK:
        _CACHE.clear()
        _KEY_LOCKS.clear()


def cache_keys() -> list[tuple[Any, ...]]:
    with _CACHE_LOCK:
        return list(_CACHE)
