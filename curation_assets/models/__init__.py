"""The models of issue 3, as plain Python (no Dagster): Cosmos-Embed1 embeddings, aesthetic
scores, window captions, and the frame decoding they share. Torch and transformers are imported
only when a model is loaded."""

from ._runtime import ClipError, ClipFailure
from ._weights import ModelLoadError, ModelWeightsMissing, clear_model_cache
from .aesthetics import AestheticScorer
from .captions import CaptionClient, CaptionModels, CaptionResult
from .embeddings import EMBEDDING_DIMS, VARIANTS, CosmosEmbedder
from .frames import FrameDecodeError, TooFewFrames, decode_frames, decode_windows, frames_for_embedding, sample_evenly

__all__ = [
    "AestheticScorer",
    "CaptionClient",
    "CaptionModels",
    "CaptionResult",
    "ClipError",
    "ClipFailure",
    "CosmosEmbedder",
    "EMBEDDING_DIMS",
    "FrameDecodeError",
    "ModelLoadError",
    "ModelWeightsMissing",
    "TooFewFrames",
    "VARIANTS",
    "clear_model_cache",
    "decode_frames",
    "decode_windows",
    "frames_for_embedding",
    "sample_evenly",
]
