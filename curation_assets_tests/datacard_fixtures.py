"""A written layout for the data card tests: filtered clips (by motion and by aesthetics), captions
from two caption models (the second, under a hostile name, on the clips of ``a.mp4`` only)
and one enhancement model, a clip with no aesthetic score, and a source with a hostile name; then
its manifest, written by the manifest's own writer from the layout read back.

Made by the core without Dagster, through the production pipeline, embedder and writer
(``packaging_fixtures``), only the model stages' values chosen here.
"""

from __future__ import annotations

from pathlib import Path

from curation_assets.core import filters, storage
from curation_assets.core.layout_read import read_video_layout
from curation_assets.core.model import ClipAnnotations, VideoResult
from curation_assets.models import stages
from curation_assets.models.embeddings import CosmosEmbedder
from curation_assets.models.video import process_video
from curation_assets.packaging import manifest

from .packaging_fixtures import make_inputs, options_for, write_result

HOSTILE_SOURCE = "<img src=y onerror=alert(3)> & 'q'|*/b.mp4"
HOSTILE_MODEL = '<img src=x onerror="alert(1)">|*m*'
VIDEOS: dict[str, dict] = {
    "a.mp4": dict(seconds=4, width=320, height=256, audio=True),
    HOSTILE_SOURCE: dict(seconds=2, width=256, height=256, audio=False),
    "still.mp4": dict(still=True, seconds=2),
}
#: Aesthetic scores by video, in clip order; a video not here gets none (null in the manifest).
AESTHETICS = {"a.mp4": [3.0, 6.0], "still.mp4": [5.0]}
AESTHETIC_THRESHOLD = 4.5
CAPTION_MODELS = ["qwen", HOSTILE_MODEL]
ENHANCED_MODELS = ["qwen_lm"]


def _captions(result: VideoResult, hostile: bool) -> ClipAnnotations:
    """qwen and qwen_lm on every window of every passed clip; the hostile model where ``hostile``."""
    out = ClipAnnotations()
    for clip in result.clips:
        if clip.passed:
            out.values[str(clip.uuid)] = {
                w.key: {"captions": {"qwen": f"caption of {w.key}",
                                     **({HOSTILE_MODEL: "<script>alert(2)</script>"} if hostile else {})},
                        "enhanced": {"qwen_lm": f"enhanced {w.key}"}}
                for w in clip.windows
            }
    return out


def write_card_layout(input_dir: Path | str, output: str, model_dir: Path | str) -> dict[str, VideoResult]:
    """Curate and write every video of :data:`VIDEOS`, then write the manifest."""
    options = options_for(input_dir, output, model_dir, caption_models=CAPTION_MODELS,
                          enhanced_caption_models=ENHANCED_MODELS, aesthetic_threshold=AESTHETIC_THRESHOLD)
    embedder = CosmosEmbedder(model_dir=str(model_dir), device="cpu")
    results = {}
    for rel in VIDEOS:
        url = storage.join(str(input_dir), rel)
        result = process_video(url, rel, lambda url=url: storage.open_input(url), options)
        aesthetics = ClipAnnotations(values={str(c.uuid): s for c, s in zip(result.clips, AESTHETICS.get(rel, []),
                                                                            strict=False)})
        embeddings = stages.embed({rel: result}, embedder)[rel]
        filters.annotate_and_filter(result, options, aesthetics=aesthetics, embeddings=embeddings,
                                    captions=_captions(result, rel == "a.mp4"))
        write_result(result, options)
        manifest.write_fragment(output, read_video_layout(output, rel, url))
        results[rel] = result
    return results


def make_card_inputs(folder: Path) -> Path:
    return make_inputs(folder, VIDEOS)
