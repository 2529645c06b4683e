"""The caption service's settings: the OpenAI-compatible chat-completions endpoints that caption
each clip window and enhance the captions, declared once (``core/settings.py`` says how).

The Dagster resource ``CaptionService`` (``defs/shared/resources.py``) is a subclass; the
``CURATION_CAPTION_<FIELD>`` environment variables fill it (:data:`ENV_PREFIX`). The API key is
never a setting: ``api_key_env`` names the environment variable that holds it, read at request
time and never logged.

Several models: ``caption_models=["qwen", "nemotron"]`` asks each model for every window. The
first caption model uses ``base_url`` / ``model`` / ``api_key_env`` and the first enhanced model
``enhance_*`` (today's single-model settings); any model may get its own endpoint from an
``endpoints`` entry ``name=base_url|served_model|api_key_env`` (the key variable may be left
off), parsed by :func:`model_endpoint`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from .settings import Section, read_env, setting_field

ENV_PREFIX = "CURATION_CAPTION_"


class CaptionSection(Section):
    """Where captions and enhanced captions come from, and how requests are paced."""

    base_url: str = setting_field("http://localhost:8000/v1", "API root of the vision-language model "
                                                               "(OpenAI-compatible)")
    model: str = setting_field("Qwen/Qwen2.5-VL-7B-Instruct", "model name the caption endpoint serves")
    api_key_env: str = setting_field("CURATION_CAPTION_API_KEY", "environment variable holding the caption "
                                                                 "endpoint's API key ('': none)")
    prompt: str = setting_field("", "caption prompt ('': the built-in one)")
    timeout_s: float = setting_field(120.0, "seconds a request may take")
    max_retries: int = setting_field(3, "retries of a failed request")
    backoff_s: float = setting_field(1.0, "retry k waits backoff_s x 2**k seconds (at most 30, or what "
                                          "Retry-After asks)")
    max_concurrency: int = setting_field(8, "requests in flight at most")
    max_frames: int = setting_field(0, "frames sent per window at most (0: no limit)")
    enhance_base_url: str = setting_field("", "API root of the text model ('': the caption endpoint)")
    enhance_model: str = setting_field("Qwen/Qwen2.5-7B-Instruct", "text model name the enhance endpoint serves")
    enhance_api_key_env: str = setting_field("", "environment variable holding the enhance endpoint's API key "
                                                 "('': api_key_env)")
    endpoints: list[str] = setting_field([], "per-model endpoints, each 'name=base_url|served_model|api_key_env' "
                                             "(name: a caption or enhanced caption model; the first models "
                                             "default to the settings above)")


class ModelEndpoint(NamedTuple):
    """Where one caption or enhancement model is served."""

    base_url: str
    model: str
    api_key_env: str


def parse_endpoints(entries: Sequence[str]) -> dict[str, ModelEndpoint]:
    """``endpoints`` entries by model name; a malformed entry raises ``ValueError`` naming it."""
    out: dict[str, ModelEndpoint] = {}
    for entry in entries:
        name, sep, rest = entry.partition("=")
        parts = [p.strip() for p in rest.split("|")]
        if not sep or not name.strip() or len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise ValueError(f"endpoints entry {entry!r}: expected 'name=base_url|served_model|api_key_env'")
        if name.strip() in out:
            raise ValueError(f"endpoints names {name.strip()!r} twice")
        out[name.strip()] = ModelEndpoint(parts[0], parts[1], parts[2] if len(parts) == 3 else "")
    return out


def model_endpoint(section: CaptionSection, name: str, *, first: bool, enhance: bool) -> ModelEndpoint:
    """The endpoint of caption (or, ``enhance``, enhanced caption) model ``name``: its
    ``endpoints`` entry, else for the first model the single-model settings; any other model
    without an entry is refused (two models on one served model would be the same captions)."""
    own = parse_endpoints(section.endpoints).get(name)
    if own is not None:
        return own
    if not first:
        raise ValueError(f"model {name!r} has no endpoint: add an endpoints entry "
                         f"'{name}=base_url|served_model|api_key_env'")
    if enhance:
        return ModelEndpoint(section.enhance_base_url or section.base_url, section.enhance_model,
                             section.enhance_api_key_env or section.api_key_env)
    return ModelEndpoint(section.base_url, section.model, section.api_key_env)


def caption_env_values(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The ``CURATION_CAPTION_<FIELD>`` variables that are set, parsed."""
    return read_env(CaptionSection, ENV_PREFIX, environ)
