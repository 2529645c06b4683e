"""Settings that cannot work are refused before any video is decoded.

The CLI calls :func:`problems` before it registers a single partition and the first step of
every run calls it before the first video: weights missing where a model was asked for
explicitly, an encoder this machine's FFmpeg lacks, an unreachable caption endpoint, a storage
scheme fsspec does not know, an output or work path that is a file (or an object where the
prefix should be), a work area inside the layout's folders. ``auto`` embeddings stay
best-effort (skipped with a note). Each problem is one line; out-of-bounds values are refused
earlier, by ``PipelineOptions`` itself, with the allowed range.
"""

from __future__ import annotations

import os
from typing import Any

import fsspec

from .core import layout, storage
from .core.options import DEFAULT_WORK_DIR, PipelineOptions


def _scheme_problem(name: str, url: str) -> str | None:
    if not url or storage.is_local(url):
        return None
    proto = storage.scheme(url) or ""
    if proto not in fsspec.available_protocols():
        return (f"{name}={storage.redact(url)!r}: unknown storage scheme {proto!r} "
                "(fsspec knows local paths, s3://, gs://, ...)")
    try:
        fsspec.get_filesystem_class(proto)
    except (ImportError, ValueError) as exc:
        return f"{name}={storage.redact(url)!r}: the {proto}:// filesystem is not installed ({exc})"
    return None


def _inside(base: str, url: str) -> bool:
    try:
        storage.relative_to(base, url)
    except ValueError:
        return False
    return True


def overlap_problems(options: PipelineOptions) -> list[str]:
    """The input must not overlap the output or the work area: an output inside the input would be
    curated as new source videos by the next run (and the sensor), and a later run with other
    settings would delete files it had just read as sources."""
    out = []
    for name, url in (("output_path", options.output_path), ("work_path", options.work_url)):
        if _inside(options.input_path, url) or _inside(url, options.input_path):
            out.append(f"{name}={storage.redact(url)!r} overlaps input_path={storage.redact(options.input_path)!r}: "
                       "choose folders (or prefixes) outside each other")
    return out


def _not_a_folder(name: str, url: str) -> str | None:
    """``url`` (or a folder above it) is a file, so no folder can be made there. Local: the nearest
    existing path must be a folder; object stores: one HEAD of the key itself (an object where the
    prefix should be); a storage error is left to the run, which reports it per video."""
    if not url:
        return None
    if storage.is_local(url):
        path = storage.local_path(url)
        while not os.path.lexists(path):
            parent = os.path.dirname(path)
            if parent == path:
                return None
            path = parent
        if os.path.isdir(path):
            return None
        what = "is a file" if path == storage.local_path(url) else f"is under {path!r}, a file"
        return f"{name}={url!r} {what}, not a folder: choose a folder (it is created when missing)"
    try:
        info = storage.file_info(url)
    except (storage.StorageError, ValueError):
        return None
    if info is None:
        return None
    return (f"{name}={storage.redact(url)!r} is an object ({info.size} bytes), not a prefix: choose a prefix no "
            "object is named after")


def _package_dirs() -> tuple[str, ...]:
    from .packaging.dedup import DEDUP_DIR
    from .packaging.manifest import MANIFEST_DIR
    from .packaging.shards import WEBDATASET_DIR

    return layout.ALL_DIRECTORIES + (MANIFEST_DIR, WEBDATASET_DIR, DEDUP_DIR)


def work_problems(options: PipelineOptions) -> list[str]:
    """The work area must be a folder of its own beside the layout: inside ``clips/`` (or any
    folder of the layout or of the training packages) the writer's and the packagers' cleanups
    would delete its files, and an output inside it would be swept with the work area's leftovers."""
    work, out = options.work_url, options.output_path
    if _inside(work, out):
        return [f"work_path={storage.redact(work)!r} holds output_path={storage.redact(out)!r}: the work area "
                f"needs a folder of its own (default: {DEFAULT_WORK_DIR}/ under the output)"]
    for folder in _package_dirs():
        if _inside(storage.join(out, folder), work):
            return [f"work_path={storage.redact(work)!r} is inside the output's {folder}/, which the writer and "
                    f"the packagers own: choose a folder outside it (default: {DEFAULT_WORK_DIR}/ under the output)"]
    return []


def cli_problems(*, video_limit: int | None, videos_per_run: int | None) -> list[str]:
    """The CLI's own counts: a video limit is a count of videos (left out: every video)."""
    found = []
    if video_limit is not None and video_limit < 1:
        found.append(f"--video-limit {video_limit}: a count of videos, at least 1 "
                     "(leave it out to process every video)")
    if videos_per_run is not None and videos_per_run < 1:
        found.append(f"--videos-per-run {videos_per_run}: must be at least 1")
    return found


def problems(options: PipelineOptions, *, embedder: Any = None, scorer: Any = None,
             caption_client: Any = None) -> list[str]:
    """Everything about ``options`` that would fail every video, as messages (empty: good to go).

    ``embedder`` / ``scorer`` / ``caption_client``: the model owners the run would use (their
    ``resolve()`` finds the weights; ``unreachable()`` probes the endpoint)."""
    from .models._weights import ModelWeightsMissing

    found = [p for p in (_scheme_problem("input_path", options.input_path),
                         _scheme_problem("output_path", options.output_path),
                         _scheme_problem("work_path", options.work_path)) if p]
    found += [p for p in (_not_a_folder("output_path", options.output_path),
                          _not_a_folder("work_path", options.work_path)) if p]
    found += overlap_problems(options)
    found += work_problems(options)
    if options.transcode_encoder == "h264_nvenc":
        from .core.transcode import available_encoders

        if "h264_nvenc" not in available_encoders():
            found.append("transcode_encoder=h264_nvenc: this machine's FFmpeg has no usable NVENC encoder; "
                         "use libx264 or libvpx-vp9")
    if options.transnetv2_device == "cuda":
        from .core.devices import cuda_available

        if not cuda_available():
            found.append("transnetv2_device=cuda: torch sees no CUDA device here; use auto or cpu")
    if options.generate_embeddings == "on" and embedder is not None:
        try:
            embedder.resolve()
        except ModelWeightsMissing as exc:
            found.append(f"embeddings were asked for but the weights are missing: {exc}")
    if options.aesthetic_threshold is not None and scorer is not None:
        try:
            scorer.resolve()
        except ModelWeightsMissing as exc:
            found.append(f"aesthetic_threshold is set but the weights are missing: {exc}")
    if options.generate_captions and caption_client is not None:
        reason = caption_client.unreachable()
        if reason:
            found.append(f"generate_captions is on but {reason}")
    return found
