"""Resources: the pipeline settings (one place for every writer parameter and stage option).

Defaults come from ``PipelineOptions`` and may be overridden by ``CURATION_<FIELD>`` environment
variables when the code location loads; the UI launchpad overrides them per run and the CLI
builds them from its flags.
"""


import functools
import os
from typing import Any

import dagster as dg

from ..core.options import PipelineOptions

_DEFAULTS = PipelineOptions()
_PACKAGE = __name__.split(".")[0] + "."


def _memoise_resource_schemas() -> None:
    """Infer each of our resources' config schemas once, not on every copy Dagster makes.

    Dagster 1.13 copies every pythonic resource three times when a run initialises it, and each
    copy re-derives the config schema from the pydantic fields: ~20 ms for ``CurationSettings``'
    ~35 fields, a few hundred ms of every run. The schema depends only on the class and the
    omitted (nested-resource) fields, and Dagster never mutates it, so it is memoised, for this
    package's classes only. Should Dagster's internals move, the patch is skipped and runs are
    merely slower.
    """
    try:
        from dagster._config.pythonic_config import resource as pythonic_resource
    except ImportError:  # pragma: no cover - a Dagster without this module
        return
    original = getattr(pythonic_resource, "infer_schema_from_config_class", None)
    if original is None or getattr(original, "curation_memoised", False):
        return
    cache: dict[tuple, Any] = {}

    @functools.wraps(original)
    def infer_schema(model_cls, description=None, fields_to_omit=None, default=None):
        if description is not None or default is not None or not model_cls.__module__.startswith(_PACKAGE):
            return original(model_cls, description, fields_to_omit, default)
        key = (model_cls, frozenset(fields_to_omit or ()))
        if key not in cache:
            cache[key] = original(model_cls, fields_to_omit=fields_to_omit)
        return cache[key]

    infer_schema.curation_memoised = True  # type: ignore[attr-defined]
    pythonic_resource.infer_schema_from_config_class = infer_schema


_memoise_resource_schemas()


class CurationSettings(dg.ConfigurableResource):
    """Writer parameters and stage options (the spec's table plus the reference's CLI flags)."""

    input_path: str = _DEFAULTS.input_path
    output_path: str = _DEFAULTS.output_path
    splitting_algorithm: str = _DEFAULTS.splitting_algorithm
    fixed_stride_split_duration: float = _DEFAULTS.fixed_stride_split_duration
    fixed_stride_min_clip_length_s: float = _DEFAULTS.fixed_stride_min_clip_length_s
    limit_clips: int = _DEFAULTS.limit_clips
    transnetv2_threshold: float = _DEFAULTS.transnetv2_threshold
    transnetv2_min_length_s: float = _DEFAULTS.transnetv2_min_length_s
    transnetv2_max_length_s: float = _DEFAULTS.transnetv2_max_length_s
    transnetv2_max_length_mode: str = _DEFAULTS.transnetv2_max_length_mode
    transnetv2_crop_s: float = _DEFAULTS.transnetv2_crop_s
    transnetv2_device: str = _DEFAULTS.transnetv2_device
    transcode_encoder: str = _DEFAULTS.transcode_encoder
    transcode_encoder_threads: int = _DEFAULTS.transcode_encoder_threads
    transcode_preset: str = _DEFAULTS.transcode_preset
    clip_re_chunk_size: int = _DEFAULTS.clip_re_chunk_size
    motion_filter: str = _DEFAULTS.motion_filter
    motion_global_mean_threshold: float = _DEFAULTS.motion_global_mean_threshold
    motion_per_patch_min_256_threshold: float = _DEFAULTS.motion_per_patch_min_256_threshold
    aesthetic_threshold: float | None = _DEFAULTS.aesthetic_threshold
    aesthetic_reduction: str = _DEFAULTS.aesthetic_reduction
    generate_embeddings: str = _DEFAULTS.generate_embeddings
    embedding_algorithm: str = _DEFAULTS.embedding_algorithm
    model_dir: str = _DEFAULTS.model_dir
    allow_model_download: bool = _DEFAULTS.allow_model_download
    model_frames: str = _DEFAULTS.model_frames
    generate_previews: bool = _DEFAULTS.generate_previews
    preview_target_fps: float = _DEFAULTS.preview_target_fps
    preview_target_height: int = _DEFAULTS.preview_target_height
    generate_captions: bool = _DEFAULTS.generate_captions
    enhance_captions: bool = _DEFAULTS.enhance_captions
    caption_models: list[str] = list(_DEFAULTS.caption_models)
    enhanced_caption_models: list[str] = list(_DEFAULTS.enhanced_caption_models)
    upload_clips: bool = _DEFAULTS.upload_clips
    dry_run: bool = _DEFAULTS.dry_run
    verbose: bool = _DEFAULTS.verbose
    max_workers: int = _DEFAULTS.max_workers
    log_stats: bool = _DEFAULTS.log_stats

    def options(self) -> PipelineOptions:
        """The plain options the core functions take (validated)."""
        return PipelineOptions.from_mapping({name: getattr(self, name) for name in PipelineOptions.field_names()})

    @classmethod
    def from_options(cls, options: PipelineOptions) -> "CurationSettings":
        values = {name: getattr(options, name) for name in PipelineOptions.field_names()}
        for key in ("caption_models", "enhanced_caption_models"):
            values[key] = list(values[key])
        return cls(**values)


def _decode_workers(configured: int) -> int:
    """``configured`` threads, or one per CPU this process may use when 0 (or less)."""
    from ..core.cpus import usable_cores

    return configured if configured > 0 else usable_cores()


class EmbeddingModel(dg.ConfigurableResource):
    """Owns the Cosmos-Embed1 model: device, dtype and batch size. The loaded model is cached per
    process, so every partition of a run (and every run of a long-lived process) reuses it."""

    device: str = ""  # "" = cuda when available, else cpu
    dtype: str = ""  # "" = bf16 on GPU, fp32 on CPU
    batch_size: int = 16
    # threads decoding clips ahead of the model; 0 = one per usable core. At 720p decoding, not
    # the GPU, sets the embedding rate (README, "where the GPU step should run").
    decode_workers: int = 0

    def embedder(self, options: PipelineOptions):
        from ..models import CosmosEmbedder

        return CosmosEmbedder(options.embedding_algorithm, model_dir=options.model_dir or None,
                              allow_download=options.allow_model_download, device=self.device or None,
                              dtype=self.dtype or None, batch_size=self.batch_size,
                              decode_workers=_decode_workers(self.decode_workers))


class AestheticModel(dg.ConfigurableResource):
    """Owns CLIP ViT-L/14 and the aesthetic MLP (cached per process like the embedder)."""

    device: str = ""
    dtype: str = ""
    batch_size: int = 64
    decode_workers: int = 0  # as EmbeddingModel's: 0 = one per usable core

    def scorer(self, options: PipelineOptions):
        from ..models import AestheticScorer

        return AestheticScorer(model_dir=options.model_dir or None, allow_download=options.allow_model_download,
                               reduction=options.aesthetic_reduction, device=self.device or None,
                               dtype=self.dtype or None, batch_size=self.batch_size,
                               decode_workers=_decode_workers(self.decode_workers))


class CaptionService(dg.ConfigurableResource):
    """The OpenAI-compatible chat-completions endpoints for captions and their enhancement.

    The API key is never part of the config: ``api_key_env`` names the environment variable that
    holds it, read at request time and never logged.
    """

    base_url: str = "http://localhost:8000/v1"
    model: str = "Qwen/Qwen2.5-VL-7B-Instruct"
    api_key_env: str = "CURATION_CAPTION_API_KEY"
    prompt: str = ""
    timeout_s: float = 120.0
    max_retries: int = 3
    backoff_s: float = 1.0
    max_concurrency: int = 8
    max_frames: int = 0  # 0 = no limit
    enhance_base_url: str = ""  # "" = the caption endpoint
    enhance_model: str = "Qwen/Qwen2.5-7B-Instruct"
    enhance_api_key_env: str = ""  # "" = api_key_env

    def client(self, options: PipelineOptions):
        from ..models import CaptionClient
        from ..models.captions import DEFAULT_CAPTION_PROMPT

        return CaptionClient(
            self.base_url, self.model, api_key_env=self.api_key_env or None,
            prompt=self.prompt or DEFAULT_CAPTION_PROMPT, caption_key=options.caption_models[0],
            timeout_s=self.timeout_s, max_retries=self.max_retries, backoff_s=self.backoff_s,
            max_concurrency=self.max_concurrency, max_frames=self.max_frames or None,
            enhance_base_url=self.enhance_base_url or None, enhance_model=self.enhance_model,
            enhance_api_key_env=self.enhance_api_key_env or None, enhance_key=options.enhanced_caption_models[0],
        )


def caption_service_from_env(environ: dict[str, str] | None = None) -> CaptionService:
    """``CURATION_CAPTION_<FIELD>`` environment variables applied to the caption service config."""
    environ = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    for name, info in CaptionService.model_fields.items():
        raw = environ.get(f"CURATION_CAPTION_{name.upper()}")
        if raw is not None:
            values[name] = _parse_env(raw, info.default)
    return CaptionService(**values)


def _parse_env(raw: str, default: Any) -> Any:
    if isinstance(default, bool):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"not a boolean: {raw!r}")
    if isinstance(default, tuple):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float) or default is None and raw:
        return float(raw) if raw else None
    return raw


def options_from_env(environ: dict[str, str] | None = None, prefix: str = "CURATION_") -> PipelineOptions:
    """PipelineOptions with every ``CURATION_<FIELD>`` environment variable applied."""
    environ = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    for name in PipelineOptions.field_names():
        raw = environ.get(prefix + name.upper())
        if raw is None:
            continue
        try:
            values[name] = _parse_env(raw, getattr(_DEFAULTS, name))
        except ValueError as exc:
            raise ValueError(f"{prefix}{name.upper()}: {exc}") from None
    return PipelineOptions.from_mapping(values)
