"""Settings that cannot work are refused before any video is decoded.

The CLI calls :func:`problems` before it registers a single partition and the first step of
every run calls it before the first video: weights missing where a model was asked for
explicitly, an encoder this machine's FFmpeg lacks, an unreachable caption endpoint, a storage
scheme fsspec does not know. ``auto`` embeddings stay best-effort (skipped with a note).
"""

from __future__ import annotations

from typing import Any

import fsspec

from .core import storage
from .core.options import PipelineOptions


def _scheme_problem(name: str, url: str) -> str | None:
    if not url or storage.is_local(url):
        return None
    proto = storage.scheme(url) or ""
    if proto not in fsspec.available_protocols():
        return f"{name}={storage.redact(url)!r}: unknown storage scheme {proto!r} (fsspec knows local paths, s3://, gs://, ...)"
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


def problems(options: PipelineOptions, *, embedder: Any = None, scorer: Any = None,
             caption_client: Any = None) -> list[str]:
    """Everything about ``options`` that would fail every video, as messages (empty: good to go).

    ``embedder`` / ``scorer`` / ``caption_client``: the model owners the run would use (their
    ``resolve()`` finds the weights; ``unreachable()`` probes the endpoint)."""
    from .models._weights import ModelWeightsMissing

    found = [p for p in (_scheme_problem("input_path", options.input_path),
                         _scheme_problem("output_path", options.output_path),
                         _scheme_problem("work_path", options.work_path)) if p]
    found += overlap_problems(options)
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
