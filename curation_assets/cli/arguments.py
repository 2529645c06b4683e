"""The flags of `curation-assets run | demo`: one per setting of ``core/options.py`` (same
names, defaults, validation and help), the CLI's own (batching, instance, caption endpoint), and
their translation into ``PipelineOptions``."""

from __future__ import annotations

import argparse
import functools
from typing import Any

from ..core.caption_settings import ENV_PREFIX as CAPTION_ENV_PREFIX
from ..core.caption_settings import CaptionSection
from ..core.options import VIDEOS_PER_RUN as VIDEOS_PER_RUN_DEFAULT
from ..core.options import PipelineOptions, Setting, base_type, parse_text, setting_fields
from ..core.settings import flag_help

# where `curation-assets demo` puts its footage and its outputs unless told otherwise
DEMO_INPUT_PATH = "data/videos"
DEMO_OUTPUT_PATH = "data/outputs"


def _flag(name: str, meta: Setting) -> str:
    return meta.flag or "--" + name.replace("_", "-")


def _default_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(value)
    if value is None or value == "":
        return "off" if value is None else "none"
    return str(value)


def add_pipeline_arguments(p: argparse.ArgumentParser, *, demo: bool = False) -> None:
    """A flag for every setting, with its default and meaning; values left out keep the defaults
    (settings not given are absent from the namespace, so explicit flags can be told apart)."""
    for name, kind, default, meta in setting_fields():
        if meta.location:  # the code location's sensor, schedule and checks: not a setting of a CLI run
            continue
        flag = _flag(name, meta)
        if name == "input_path" and not demo:
            p.add_argument(flag, dest=name, required=True, help=flag_help(meta.help))
            continue
        if name == "output_path" and not demo:
            p.add_argument(flag, dest=name, required=True, help=flag_help(meta.help))
            continue
        shown = {"input_path": DEMO_INPUT_PATH, "output_path": DEMO_OUTPUT_PATH}.get(name) or _default_text(default)
        help_text = flag_help(meta.help if default == "" else f"{meta.help} (default: {shown})")
        scalar, _optional = base_type(kind)
        if name == "generate_embeddings":
            group = p.add_mutually_exclusive_group()
            group.add_argument(flag, dest=name, nargs="?", const="on", choices=meta.choices, default=argparse.SUPPRESS,
                               help=flag_help(f"{meta.help} (default: auto; the flag alone means on)"))
            group.add_argument("--no-generate-embeddings", dest=name, action="store_const", const="off",
                               default=argparse.SUPPRESS,
                               help="skip the Cosmos-Embed1 embeddings (generate_embeddings=off)")
        elif scalar is bool:
            p.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                           help=help_text)
        else:
            p.add_argument(flag, dest=name, default=argparse.SUPPRESS, help=help_text, choices=meta.choices,
                           metavar=None if meta.choices else name.split("_")[-1].upper(),
                           type=functools.partial(_parse_flag, kind=kind))
    p.add_argument("--video-limit", type=int, default=None, help="process at most this many videos (default: all)")
    p.add_argument("--videos-per-run", type=int, default=None,
                   help=f"videos per Dagster run, a partition range (default: {VIDEOS_PER_RUN_DEFAULT})")
    p.add_argument("--dagster-home", default=None,
                   help="Dagster instance folder (default: $DAGSTER_HOME, else ./.dagster_home; an instance holds "
                        "one input folder's videos, so another folder gets its own under <home>/datasets/)")
    caption = p.add_argument_group("caption endpoint (the caption_service resource)")
    caption.add_argument("--caption-endpoint", default=None,
                         help="OpenAI-compatible API root of the vision-language model "
                              f"(default: ${CAPTION_ENV_PREFIX}BASE_URL or "
                              f"{CaptionSection.model_fields['base_url'].default})")
    caption.add_argument("--caption-served-model", default=None, help="model name the endpoint serves")
    caption.add_argument("--caption-api-key-env", default=None,
                         help="environment variable holding the endpoint's API key (the key itself never goes on the "
                              "command line)")
    caption.add_argument("--enhance-endpoint", default=None,
                         help="API root of the text model (default: the caption endpoint)")
    caption.add_argument("--enhance-served-model", default=None, help="text model name the enhance endpoint serves")
    caption.add_argument("--caption-model-endpoint", action="append", default=None, metavar="NAME=URL|MODEL|KEY_ENV",
                         help="a caption or enhanced caption model's own endpoint, served model and API-key "
                              "variable (repeat per model; the first models default to the flags above; "
                              f"adds to ${CAPTION_ENV_PREFIX}ENDPOINTS)")


def _parse_flag(raw: str, kind: Any) -> Any:
    try:
        return parse_text(raw, kind)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class UsageError(Exception):
    """A flag combination the pipeline cannot honour; printed without a traceback."""


def caption_service_from_args(args: argparse.Namespace):
    """The ``caption_service`` resource of :func:`caption_section_from_args` (imports Dagster)."""
    from ..definitions import CaptionService

    return CaptionService(**caption_section_from_args(args).model_dump())


def caption_section_from_args(args: argparse.Namespace):
    """The caption endpoint config, the ``caption_service`` resource's section without Dagster (the
    CLI's first video begins before Dagster is imported): ``CURATION_CAPTION_*`` environment
    variables, then flags."""
    from ..core.caption_settings import caption_env_values
    from ..models.owners import CaptionServiceSection

    overrides = {"base_url": args.caption_endpoint, "model": args.caption_served_model,
                 "api_key_env": args.caption_api_key_env, "enhance_base_url": args.enhance_endpoint,
                 "enhance_model": args.enhance_served_model}
    values = {**caption_env_values(), **{k: v for k, v in overrides.items() if v is not None}}
    if args.caption_model_endpoint:
        from ..core.caption_settings import parse_endpoints

        entries = [*values.get("endpoints", ()), *args.caption_model_endpoint]
        try:
            parse_endpoints(entries)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        values["endpoints"] = entries
    service = CaptionServiceSection(**values)
    options = options_from_args(args)
    if options.generate_captions:
        try:  # every caption model has an endpoint: said before any video is decoded, not per step
            service.client(options)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    return service


def options_from_args(args: argparse.Namespace) -> PipelineOptions:
    """The settings the flags give (the rest keep their defaults); an explicit
    ``--embedding-algorithm`` asks for embeddings, as ``--generate-embeddings`` does."""
    given = {name: getattr(args, name) for name in PipelineOptions.field_names() if hasattr(args, name)}
    if given.get("enhance_captions") and not given.get("generate_captions"):
        raise UsageError("--enhance-captions needs --generate-captions")
    if "embedding_algorithm" in given and "generate_embeddings" not in given:
        given["generate_embeddings"] = "on"
    if args.command == "demo":
        given.setdefault("input_path", DEMO_INPUT_PATH)
        given.setdefault("output_path", DEMO_OUTPUT_PATH)
    try:
        return PipelineOptions.from_mapping(given)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
