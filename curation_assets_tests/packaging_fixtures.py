"""Real clip-writer layouts for the packaging tests, written by the core without Dagster.

``write_layout`` runs ``core.pipeline.process_video`` on videos made with ``video_factory``,
embeds the passed clips with the Cosmos-Embed1 stand-in through the production embedder, gives
every window a caption and an enhanced caption through ``core.filters.annotate_and_filter`` (the values the
caption stage hands it), and writes ``core.layout.video_files`` through the production writer (``core.writer``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from curation_assets.core import filters, layout, storage, writer
from curation_assets.core.model import ClipAnnotations, VideoResult
from curation_assets.core.work import WorkArea
from curation_assets.core.options import PipelineOptions
from curation_assets.models.video import process_video
from curation_assets.models import stages
from curation_assets.models.embeddings import CosmosEmbedder

from .model_fixtures import build_cosmos_standin, make_clip
from .video_factory import make_video

# rel path -> how to make it. "still" is a clip without motion: the motion filter removes it.
VIDEOS: dict[str, dict] = {
    "a.mp4": dict(seconds=4, width=320, height=256, audio=True),
    "sub/b c.mp4": dict(seconds=2, width=256, height=256, audio=False),
    "still.mp4": dict(still=True, seconds=2),
}


def make_inputs(folder: Path, videos: dict[str, dict] = VIDEOS) -> Path:
    for rel, spec in videos.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        spec = dict(spec)
        if spec.pop("still", False):
            path.write_bytes(make_clip(seconds=spec.get("seconds", 2), fps=25, size=(256, 256), square=False,
                                       color_fn=lambda k: (90, 120, 150)))
        else:
            make_video(path, fps=25, **spec)
    return folder


def build_models(folder: Path) -> Path:
    build_cosmos_standin(folder, "224p")
    return folder


def options_for(input_dir: Path | str, output: str, model_dir: Path | str, **overrides) -> PipelineOptions:
    values = dict(input_path=str(input_dir), output_path=output, fixed_stride_split_duration=2.0,
                  motion_filter="enable", generate_previews=True, model_dir=str(model_dir),
                  generate_embeddings="on", generate_captions=True, enhance_captions=True)
    values.update(overrides)
    return PipelineOptions(**values)


def _captions(result: VideoResult, tag: str) -> ClipAnnotations:
    """The caption stage's value shape (``models.stages.caption``): {clip uuid: {window key:
    {captions: {model: text}, enhanced: {model: text}}}}, for the default models qwen / qwen_lm."""
    out = ClipAnnotations()
    for clip in result.clips:
        if clip.passed:
            out.values[str(clip.uuid)] = {
                w.key: {"captions": {"qwen": f"{tag} caption of {clip.uuid} {w.key}"},
                        "enhanced": {"qwen_lm": f"{tag} enhanced {w.key}"}}
                for w in clip.windows
            }
    return out


def process(input_dir: Path | str, rel: str, options: PipelineOptions, embedder: CosmosEmbedder | None,
            tag: str = "v1") -> VideoResult:
    url = storage.join(str(input_dir), rel) if not storage.is_local(str(input_dir)) else str(Path(input_dir) / rel)
    result = process_video(url, rel, lambda: storage.open_input(url), options)
    embeddings = stages.embed({rel: result}, embedder)[rel] if embedder is not None else None
    filters.annotate_and_filter(result, options, embeddings=embeddings,
                    captions=_captions(result, tag) if options.generate_captions else None)
    return result


def write_result(result: VideoResult, options: PipelineOptions) -> None:
    """The video's files through the production writer (``core.writer``), as the clip_writer step does."""
    captions = layout.CaptionConfig(tuple(options.caption_models), tuple(options.enhanced_caption_models))
    files = layout.video_files(result, options.output_path, captions=captions, upload_clips=options.upload_clips,
                               dry_run=options.dry_run, chunk_budget=options.chunk_duration_budget,
                               pipeline=options.record())
    writer.write_video(result, files, options.output_path, WorkArea.for_options(options), remove_stale=not options.dry_run)


def write_layout(input_dir: Path | str, output: str, model_dir: Path | str, rels: list[str] | None = None,
                 tag: str = "v1", **overrides) -> dict[str, VideoResult]:
    """Process and write every video (or ``rels``); returns the results by rel path."""
    options = options_for(input_dir, output, model_dir, **overrides)
    embedder = CosmosEmbedder(model_dir=str(model_dir), device="cpu") if options.generate_embeddings != "off" else None
    results = {}
    for rel in rels or list(VIDEOS):
        result = process(input_dir, rel, options, embedder, tag)
        write_result(result, options)
        results[rel] = result
    return results



# ---------------------------------------------------------------------------------------------
# pytest fixtures (import them into a test module to use them)

@pytest.fixture(scope="session")
def packaging_models(tmp_path_factory) -> Path:
    return build_models(tmp_path_factory.mktemp("packaging-models"))


@pytest.fixture(scope="session")
def packaging_inputs(tmp_path_factory) -> Path:
    return make_inputs(tmp_path_factory.mktemp("packaging-in"))


@pytest.fixture(scope="session")
def written_layout(tmp_path_factory, packaging_inputs, packaging_models) -> Path:
    """A local output written once per session (read-only for the tests: copy it to change it)."""
    out = tmp_path_factory.mktemp("packaging-out") / "out"
    write_layout(packaging_inputs, str(out), packaging_models)
    return out
