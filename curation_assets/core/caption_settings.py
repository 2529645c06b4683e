"""The caption service's settings: the OpenAI-compatible chat-completions endpoints that caption
each clip window and enhance the captions, declared once (``core/settings.py`` says how).

The Dagster resource ``CaptionService`` (``defs/shared/resources.py``) is a subclass; the
``CURATION_CAPTION_<FIELD>`` environment variables fill it (:data:`ENV_PREFIX`). The API key is
never a setting: ``api_key_env`` names the environment variable that holds it, read at request
time and never logged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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


def caption_env_values(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The ``CURATION_CAPTION_<FIELD>`` variables that are set, parsed."""
    return read_env(CaptionSection, ENV_PREFIX, environ)
