"""Curated video clip datasets as partitioned Dagster assets.

The package top is NeMo Curator's Python API (``curation_assets/stages.py``): a NeMo video
pipeline script ports by changing its imports. The names load on first use, so importing the
package (the CLI, the code location) stays light.
"""

from typing import Any

__version__ = "0.1.0"

__all__ = ["CaptionEnhancementStage", "CaptionGenerationStage", "CaptionPreparationStage", "ClipAestheticFilterStage",
           "ClipFrameExtractionStage", "ClipTranscodingStage", "ClipWriterStage", "CosmosEmbed1EmbeddingStage",
           "CosmosEmbed1FrameCreationStage", "FixedStrideExtractorStage", "FrameExtractionPolicy", "FramePurpose",
           "MotionFilterStage", "MotionVectorDecodeStage", "Pipeline", "PipelineOptions", "PipelineResult",
           "PreviewStage", "RayDataExecutor", "TransNetV2ClipExtractionStage", "VideoFrameExtractionStage",
           "VideoReader", "XennaExecutor", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "PipelineOptions":
        from .core.options import PipelineOptions

        return PipelineOptions
    if name in __all__:
        from . import stages

        return getattr(stages, name)
    from .stages import NOT_IMPLEMENTED, not_implemented

    if name in NOT_IMPLEMENTED:  # a NeMo name this project lacks: say what to use instead
        raise not_implemented(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
