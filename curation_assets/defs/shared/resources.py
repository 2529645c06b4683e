"""Resources: the settings of the pipeline, the training packages and the caption endpoint, and
the model owners.

Each settings resource subclasses its section, the one definition of its fields (core: Dagster-free):
``CurationSettings`` is ``core.options.PipelineSection``, ``PackagingSettings`` is
``packaging.settings.PackagingSection``, ``CaptionService`` is ``models.owners.CaptionServiceSection``
(``core.caption_settings.CaptionSection`` and the clients it makes); the model owners ``EmbeddingModel``
and ``AestheticModel`` are ``models.owners.EmbedderSection`` and ``AestheticSection``, so the CLI's
preflight builds the same owners before it imports Dagster.
The environment (``CURATION_*``, ``CURATION_PACKAGE_*``, ``CURATION_CAPTION_*``) applies when the
code location loads, the launchpad overrides it per run and the CLI builds them from its flags.
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg
import pydantic

from ...core.caption_settings import caption_env_values
from ...core.options import ENV_PREFIX, PipelineOptions, PipelineSection, location_settings, options_from_env
from ...models.owners import AestheticSection, CaptionServiceSection, EmbedderSection
from ...packaging.settings import PackagingSection, packaging_env_values

__all__ = ["AestheticModel", "CaptionService", "CurationSettings", "EmbeddingModel", "PackagingSettings",
           "caption_service_from_env", "options_from_env", "packaging_settings_from_env"]


class CurationSettings(dg.ConfigurableResource, PipelineSection):
    """Writer parameters and stage options (``core/options.py`` defines each one)."""

    # NeMo's bool or the setting's auto/on/off: a String field would refuse `true` in the launchpad
    generate_embeddings: Any = PipelineSection.model_fields["generate_embeddings"]
    # the validated options, made once per resource instance (the IO managers ask for every value)
    _options: PipelineOptions | None = pydantic.PrivateAttr(default=None)

    def options(self) -> PipelineOptions:
        """The plain options the core functions take (validated)."""
        if self._options is None:
            self._options = PipelineOptions.from_mapping({name: getattr(self, name)
                                                          for name in PipelineSection.model_fields})
        return self._options

    @classmethod
    def from_options(cls, options: PipelineOptions) -> "CurationSettings":
        return cls(**config_values(options))

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


def config_values(options: PipelineOptions) -> dict[str, Any]:
    """``options`` as resource config values (lists for tuples)."""
    return {name: list(value) if isinstance(value, tuple) else value for name, value in options.values().items()}


def _run_settings_config(context: dg.InitResourceContext) -> dict[str, Any]:
    """The ``settings`` fields a run's own config gives (launchpad), ``{}`` outside a run."""
    run = context.run
    resources = (run.run_config or {}).get("resources") if run is not None else None
    block = resources.get("settings") if isinstance(resources, dict) else None
    config = block.get("config") if isinstance(block, dict) else None
    return config if isinstance(config, dict) else {}


class PackagingSettings(dg.ConfigurableResource, PackagingSection):
    """How the training packages are cut: shards, selection, split, buckets, dedup. Defaults and
    checks are the core's (``packaging/settings.py``); a value they refuse fails the run before any
    step starts, with the reason."""

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        problems = self.problems()
        if problems:
            raise dg.Failure("packaging settings that cannot work: " + "; ".join(problems))


def packaging_settings_from_env(environ: Mapping[str, str] | None = None) -> PackagingSettings:
    """``CURATION_PACKAGE_<FIELD>`` environment variables applied to :class:`PackagingSettings`."""
    return PackagingSettings(**packaging_env_values(environ))


class EmbeddingModel(dg.ConfigurableResource, EmbedderSection):
    """Owns the Cosmos-Embed1 model (``models/owners.py`` defines its settings). The loaded model is
    cached per process, so every partition of a run (and every run of a long-lived process) reuses it."""


class AestheticModel(dg.ConfigurableResource, AestheticSection):
    """Owns CLIP ViT-L/14 and the aesthetic MLP (cached per process like the embedder)."""


class CaptionService(dg.ConfigurableResource, CaptionServiceSection):
    """The OpenAI-compatible chat-completions endpoints for captions and their enhancement
    (``core/caption_settings.py`` defines each setting; the API key is never one of them)."""


def caption_service_from_env(environ: Mapping[str, str] | None = None) -> CaptionService:
    """``CURATION_CAPTION_<FIELD>`` environment variables applied to the caption service config."""
    return CaptionService(**caption_env_values(environ))
