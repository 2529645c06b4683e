"""The model owners' settings, and the models they build from the pipeline's options.

The Dagster resources (``defs/shared/resources.py``: ``EmbeddingModel``, ``AestheticModel``,
``CaptionService``) subclass these sections, so a run's steps and the CLI's preflight, which checks
the weights and endpoints before Dagster is even imported, build the very same owners."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.caption_settings import CaptionSection
from ..core.settings import Section

if TYPE_CHECKING:
    from ..core.options import PipelineOptions
    from .aesthetics import AestheticScorer
    from .captions import CaptionModels
    from .embeddings import CosmosEmbedder

__all__ = ["AestheticSection", "CaptionServiceSection", "EmbedderSection", "caption_models"]


def _decode_workers(configured: int) -> int:
    """``configured`` threads, or one per CPU this process may use when 0 (or less)."""
    from ..core.cpus import usable_cores

    return configured if configured > 0 else usable_cores()


class EmbedderSection(Section):
    """Cosmos-Embed1's owner: device, dtype and batch size."""

    device: str = ""  # "" = cuda when available, else cpu
    dtype: str = ""  # "" = bf16 on GPU, fp32 on CPU
    batch_size: int = 16
    # threads decoding clips ahead of the model; 0 = one per usable core. At 720p decoding, not
    # the GPU, sets the embedding rate (README, "where the GPU step should run").
    decode_workers: int = 0

    def embedder(self, options: PipelineOptions) -> CosmosEmbedder:
        from .embeddings import CosmosEmbedder

        return CosmosEmbedder(options.embedding_algorithm, model_dir=options.model_dir or None,
                              allow_download=options.allow_model_download, device=self.device or None,
                              dtype=self.dtype or None, batch_size=self.batch_size,
                              decode_workers=_decode_workers(self.decode_workers))


class AestheticSection(Section):
    """CLIP ViT-L/14 and the aesthetic MLP's owner."""

    device: str = ""
    dtype: str = ""
    batch_size: int = 64
    decode_workers: int = 0  # as EmbedderSection's: 0 = one per usable core

    def scorer(self, options: PipelineOptions) -> AestheticScorer:
        from .aesthetics import AestheticScorer

        return AestheticScorer(model_dir=options.model_dir or None, allow_download=options.allow_model_download,
                               reduction=options.aesthetic_reduction, device=self.device or None,
                               dtype=self.dtype or None, batch_size=self.batch_size,
                               decode_workers=_decode_workers(self.decode_workers))


def caption_models(service: CaptionSection, options: PipelineOptions) -> CaptionModels:
    """One client per caption model, in ``caption_models`` order; the i-th enhanced caption model
    enhances the i-th caption model's text (``[]``: no captions). ValueError: a model without an
    endpoint."""
    from ..core.caption_settings import model_endpoint
    from .captions import DEFAULT_CAPTION_PROMPT, CaptionClient, CaptionModels

    clients, enhance = [], []
    for i, key in enumerate(options.caption_models):
        own = model_endpoint(service, key, first=i == 0, enhance=False)
        paired = options.enhanced_caption_models[i] if i < len(options.enhanced_caption_models) else None
        text = model_endpoint(service, paired, first=i == 0, enhance=True) if paired else None
        clients.append(CaptionClient(
            own.base_url, own.model, api_key_env=own.api_key_env or None,
            prompt=service.prompt or DEFAULT_CAPTION_PROMPT, caption_key=key,
            timeout_s=service.timeout_s, max_retries=service.max_retries, backoff_s=service.backoff_s,
            max_concurrency=service.max_concurrency, max_frames=service.max_frames or None,
            enhance_base_url=text.base_url if text else None, enhance_model=text.model if text else None,
            enhance_api_key_env=(text.api_key_env or None) if text else None,
            enhance_key=paired or f"{key}_lm",
        ))
        enhance.append(paired is not None and options.enhance_captions)
    return CaptionModels(clients, enhance)


class CaptionServiceSection(CaptionSection):
    """The caption endpoints' settings (``core/caption_settings.py``) with the clients they make."""

    def client(self, options: PipelineOptions) -> CaptionModels:
        """``caption_models``: one client per caption model (ValueError: a model without an endpoint)."""
        return caption_models(self, options)
