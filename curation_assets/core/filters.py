"""The filter rules and how the model steps' values land on a video's clips (no models, no Dagster).

The reference's stage order: motion filter (run with the transcode, ``core.pipeline``) ->
aesthetic filter -> embeddings and captions for the clips that passed. The values come from the
model stages (``models.stages``) as :class:`~.model.ClipAnnotations` keyed by clip uuid; a step's
error on a clip is kept on the clip (the first one recorded wins).
"""

from __future__ import annotations

from typing import Any

from .model import ClipAnnotations, VideoResult
from .options import PipelineOptions


def apply_filters(result: VideoResult, options: PipelineOptions, aesthetics: ClipAnnotations | None) -> VideoResult:
    """The aesthetic filter (the motion filter ran with the transcode), in place: clips scored
    below ``aesthetic_threshold`` are filtered; a scoring error stays on the clip."""
    for clip in result.clips:
        uid = str(clip.uuid)
        if aesthetics is None:
            continue
        if uid in aesthetics.values:
            clip.aesthetic_score = aesthetics.values[uid]
            if (options.aesthetic_threshold is not None and clip.passed
                    and clip.aesthetic_score < options.aesthetic_threshold):
                clip.filtered_by = "aesthetic"
        if uid in aesthetics.errors:
            clip.errors.setdefault(*aesthetics.errors[uid])
    return result


def _by_model(texts: Any, part: str) -> dict:
    """One part of a window's caption values (``models.stages.caption``); anything else (a value
    stored in another shape) gives nothing rather than a wrong caption."""
    value = texts.get(part) if isinstance(texts, dict) else None
    return value if isinstance(value, dict) else {}


def annotate_and_filter(
    result: VideoResult,
    options: PipelineOptions,
    *,
    aesthetics: ClipAnnotations | None = None,
    embeddings: ClipAnnotations | None = None,
    captions: ClipAnnotations | None = None,
) -> VideoResult:
    """The filters, then every model stage's values on the clips that passed, in place, in the
    reference's order (motion -> aesthetic filter -> embeddings and captions)."""
    apply_filters(result, options, aesthetics)
    for clip in result.clips:
        uid = str(clip.uuid)
        if embeddings is not None and clip.passed:
            if uid in embeddings.values:
                clip.embedding = embeddings.values[uid]
            if uid in embeddings.errors:
                clip.errors.setdefault(*embeddings.errors[uid])
        if captions is not None and clip.passed:
            for window in clip.windows:
                texts = captions.values.get(uid, {}).get(window.key) or {}
                # by model: the layout writes them in caption_models / enhanced_caption_models order
                window.captions.update({m: t for m, t in _by_model(texts, "captions").items()
                                        if m in options.caption_models and isinstance(t, str)})
                window.enhanced_captions.update({m: t for m, t in _by_model(texts, "enhanced").items()
                                                 if m in options.enhanced_caption_models and isinstance(t, str)})
                for name, error in _by_model(texts, "errors").items():
                    clip.errors.setdefault(name, f"window {window.key}: {error}")
            if uid in captions.errors:
                clip.errors.setdefault(*captions.errors[uid])
    return result
