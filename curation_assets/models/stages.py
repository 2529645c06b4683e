"""The model stages over a run's videos: aesthetic scores, embeddings, captions.

Each stage takes ``{partition: VideoResult}`` and returns ``{partition: ClipAnnotations}`` keyed
by clip uuid, batching model calls across every clip of every video in the run. The rules that put
them back onto the clips (the aesthetic filter, then embeddings and captions for the clips that
passed) are :mod:`curation_assets.core.filters`. Each model gets the
frames the transcode's decode pass stored for the clip (``Clip.model_frames``, with
``model_frames=source``) and decodes the clip only for what they do not hold.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..core.model import Clip, ClipAnnotations, VideoResult
from ._runtime import ClipError

__all__ = ["caption", "embed", "score_aesthetics"]

ERROR_CAPTION = "caption"  # not named by the reference: the caption endpoint gave no text
ERROR_ENHANCE = "enhanced_caption"


def _clips(results: dict[str, VideoResult]) -> list[tuple[str, Clip]]:
    """Every encoded clip no filter has taken out, with its partition key."""
    return [(key, clip) for key, result in results.items() for clip in result.clips
            if clip.encoded and clip.passed]


def _collect(items: list[tuple[str, Clip]], values: list[Any], errors: dict[int, ClipError],
             keys: Iterable[str]) -> dict[str, ClipAnnotations]:
    out = {key: ClipAnnotations() for key in keys}
    for i, (key, clip) in enumerate(items):
        if i in errors:
            out[key].errors[str(clip.uuid)] = (errors[i].key, errors[i].message)
        elif values[i] is not None:
            out[key].values[str(clip.uuid)] = values[i]
    return out


def score_aesthetics(results: dict[str, VideoResult], scorer: Any) -> dict[str, ClipAnnotations]:
    """Aesthetic score per clip not already filtered by motion."""
    items = _clips(results)
    errors: dict[int, ClipError] = {}
    scores = scorer.score_clips([c.encoded for _, c in items], errors=errors,
                                frames=[c.model_frames for _, c in items]) if items else []
    return _collect(items, [None if s is None else float(s) for s in scores], errors, results)


def embed(results: dict[str, VideoResult], embedder: Any) -> dict[str, ClipAnnotations]:
    """Cosmos-Embed1 vector per passed clip (call after ``apply_filters`` applied the filters)."""
    items = _clips(results)
    errors: dict[int, ClipError] = {}
    vectors = embedder.embed_clips([c.encoded for _, c in items], errors=errors,
                                   frames=[c.model_frames for _, c in items]) if items else []
    return _collect(items, vectors, errors, results)


def caption(results: dict[str, VideoResult], client: Any, *, enhance: bool) -> dict[str, ClipAnnotations]:
    """Caption (and optionally enhance) every window of every passed clip, once per caption model.

    ``client``: a ``CaptionClient`` or a ``CaptionModels`` (one client per model, in order; an
    empty one captions nothing). Values are ``{window_key: {"captions": {model: text},
    "enhanced": {enhanced_model: text}, "errors": {key: error}}}`` per clip uuid: a model that
    fails on a window records its own error there (``<model>_caption`` /
    ``<model>_enhanced_caption``) and the other models' texts stay.
    """
    many = getattr(client, "clients", None)  # a CaptionModels (a CaptionClient's .enhance is its method)
    clients, enhances = (list(many), list(client.enhance)) if many is not None else ([client], [enhance])
    items = [(k, c) for k, c in _clips(results) if c.windows]
    out = {key: ClipAnnotations() for key in results}

    def slot(key: str, uid: str, wkey: str) -> dict:
        return out[key].values.setdefault(uid, {}).setdefault(wkey, {"captions": {}, "enhanced": {}, "errors": {}})

    def fail(key: str, uid: str, wkey: str, name: str, error: str | None) -> None:
        slot(key, uid, wkey)["errors"][name] = error or "no text"
        out[key].errors.setdefault(uid, (name, f"window {wkey}: {error}"))

    for model, do_enhance in zip(clients, enhances, strict=True):
        answers = model.caption_clips([(c.encoded, [(w.start_frame, w.end_frame) for w in c.windows])
                                       for _, c in items], frames=[c.model_frames for _, c in items]) if items else []
        texts: list[tuple[str, str, str, str]] = []  # partition, clip uuid, window key, caption
        for (key, clip), per_window in zip(items, answers, strict=True):
            uid = str(clip.uuid)
            for window, answer in zip(clip.windows, per_window, strict=True):
                if answer.ok:
                    slot(key, uid, window.key)["captions"][model.caption_key] = answer.text
                    texts.append((key, uid, window.key, answer.text))
                else:
                    fail(key, uid, window.key, f"{model.caption_key}_{ERROR_CAPTION}", answer.error)
        if enhance and do_enhance and texts:
            for (key, uid, wkey, _), answer in zip(texts, model.enhance_many([t[3] for t in texts]), strict=True):
                if answer.ok:
                    slot(key, uid, wkey)["enhanced"][model.enhance_key] = answer.text
                else:
                    fail(key, uid, wkey, f"{model.enhance_key}_{ERROR_ENHANCE}", answer.error)
    return out
