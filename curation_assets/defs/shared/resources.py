"""Resources: the pipeline settings, the model owners and the caption endpoint.

``CurationSettings`` is generated from ``core.options.PipelineOptions`` (one definition of every
setting); ``CURATION_<FIELD>`` environment variables apply when the code location loads, the
launchpad overrides them per run and the CLI builds them from its flags.
"""


import os
import typing
from typing import TYPE_CHECKING, Any

import dagster as dg
import pydantic

from ...core.options import (
    ENV_PREFIX,
    PipelineOptions,
    base_type,
    location_settings,
    options_from_env,
    parse_text,
    setting_fields,
)
from .dagster_workarounds import memoise_resource_schemas

__all__ = ["AestheticModel", "CaptionService", "CurationSettings", "EmbeddingModel", "caption_service_from_env",
           "options_from_env"]

memoise_resource_schemas()  # a Dagster workaround, for speed: see dagster_workarounds.py


class _SettingsResource:
    """The methods of :data:`CurationSettings` (its fields are generated from ``PipelineOptions``)."""

    def options(self) -> PipelineOptions:
        """The plain options the core functions take (validated)."""
        return PipelineOptions.from_mapping({name: getattr(self, name) for name in PipelineOptions.field_names()})

    @classmethod
    def from_options(cls, options: PipelineOptions):
        return cls(**{name: _config_value(getattr(options, name)) for name in PipelineOptions.field_names()})

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # a launchpad config that cannot work fails the run before any step starts, with the reason
        try:
            self.options()
        except ValueError as exc:
            raise dg.Failure(str(exc)) from None
        given = _run_settings_config(context)
        fixed = [name for name in location_settings() if name in given]
        if fixed:
            raise dg.Failure(
                f"{', '.join(fixed)}: settings of the code location (the upload sensor, the backfill schedule, the "
                "layout checks), read when it loads or ticks; a run does not use them, so its config may not set "
                f"them. Set {', '.join(ENV_PREFIX + n.upper() for n in fixed)} where the code location runs, and "
                "leave them out of the run's settings", allow_retries=False) from None


def _run_settings_config(context: dg.InitResourceContext) -> dict[str, Any]:
    """The ``settings`` fields a run's own config gives (launchpad), ``{}`` outside a run."""
    run = context.run
    resources = (run.run_config or {}).get("resources") if run is not None else None
    block = resources.get("settings") if isinstance(resources, dict) else None
    config = block.get("config") if isinstance(block, dict) else None
    return config if isinstance(config, dict) else {}


def _config_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _config_type(kind: Any) -> Any:
    scalar, optional = base_type(kind)
    config = list[str] if scalar is tuple else scalar
    return config | None if optional else config


def _settings_resource_class() -> type:
    """A ConfigurableResource with one config field per PipelineOptions field: same names, types,
    defaults and help text (shown in the launchpad)."""
    annotations: dict[str, Any] = {}
    namespace: dict[str, Any] = {"__module__": __name__, "__qualname__": "CurationSettings",
                                 "__doc__": "Writer parameters and stage options (core/options.py defines each one)."}
    for name, kind, default, meta in setting_fields():
        annotations[name] = _config_type(kind)
        namespace[name] = pydantic.Field(default=_config_value(default), description=meta.help)
    namespace["__annotations__"] = annotations
    return type("CurationSettings", (_SettingsResource, dg.ConfigurableResource), namespace)


if TYPE_CHECKING:  # what a type checker sees of the generated class: its methods (the fields are generated)
    class CurationSettings(_SettingsResource, dg.ConfigurableResource):
        def __getattr__(self, name: str) -> Any: ...
else:
    CurationSettings = _settings_resource_class()


def _decode_workers(configured: int) -> int:
    """``configured`` threads, or one per CPU this process may use when 0 (or less)."""
    from ...core.cpus import usable_cores

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
        from ...models import CosmosEmbedder

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
        from ...models import AestheticScorer

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
        from ...models import CaptionClient
        from ...models.captions import DEFAULT_CAPTION_PROMPT

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
    hints = typing.get_type_hints(CaptionService)
    values: dict[str, Any] = {}
    for name in CaptionService.model_fields:
        raw = environ.get(f"CURATION_CAPTION_{name.upper()}")
        if raw is not None:
            try:
                values[name] = parse_text(raw, hints[name])
            except ValueError as exc:
                raise ValueError(f"CURATION_CAPTION_{name.upper()}: {exc}") from None
    return CaptionService(**values)
