"""Every setting of the pipeline, defined once: name, type, default, bounds and help text.

Field names follow NeMo Curator's example script (`video_split_clip_example.py`) with dashes
turned into underscores, so a reference command line maps one to one. :class:`PipelineSection`
declares the fields (``core/settings.py`` says how); everything else derives from it with the same
defaults, validation and help text: :class:`PipelineOptions` (the validated value of one run), the
Dagster resource ``CurationSettings`` (a subclass, ``defs/shared/resources.py``), the
``CURATION_<FIELD>`` environment variables (:func:`options_from_env`), the CLI flags
(`cli/arguments.py`) and docs/settings.md (`settings_doc.py`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import types
import typing
from collections.abc import Mapping
from typing import Any

import pydantic

from .layout import STEPS
from .settings import (
    Section,
    Setting,
    allowed_range,
    base_type,
    bound_text,
    check,
    coerce,
    parse_text,
    read_env,
    section_fields,
    setting_field,
    setting_of,
)

__all__ = ["DEFAULTS", "ENV_PREFIX", "PipelineOptions", "PipelineSection", "Setting", "allowed_range", "base_type",
           "bound_text", "env_values", "location_settings", "options_from_env", "parse_text", "recorded_settings",
           "setting", "setting_fields", "settings_digest", "step_digest", "step_settings_changed"]

SPLITTING_ALGORITHMS = ("fixed_stride", "transnetv2")
MAX_LENGTH_MODES = ("stride", "truncate")
MOTION_FILTER_MODES = ("disable", "enable", "score-only")
EMBEDDING_ALGORITHMS = ("cosmos-embed1-224p", "cosmos-embed1-336p", "cosmos-embed1-448p")
# "copy": no re-encode, spans snapped to the source's keyframes (core/stream_copy.py)
ENCODERS = ("libx264", "libvpx-vp9", "h264_nvenc", "copy")
# libx264's presets; "medium" is x264's own default (what `ffmpeg -c:v libx264` and the reference use)
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")
DEFAULT_X264_PRESET = "medium"
GENERATE_MODES = ("auto", "on", "off")
# where the model steps' frames come from: "source" = taken off the single decode pass that feeds the
# clip encoders (no clip is decoded again); "clip" = each model step decodes the transcoded clip
MODEL_FRAME_SOURCES = ("source", "clip")
# "auto" = cuda when torch sees a GPU, else cpu
TRANSNETV2_DEVICES = ("auto", "cpu", "cuda")
AESTHETIC_REDUCTIONS = ("min", "mean")
# The containers the reference's video reader accepts.
VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm")
# Videos per Dagster run (a partition range) for the CLI, the sensor and backfills.
VIDEOS_PER_RUN = 16
#: Videos the upload sensor requests per tick at most; Dagster's sensor daemon checks new
#: partition keys one by one, so a large backlog is spread over ticks.
DEFAULT_MAX_PER_TICK = 500
#: A file whose mtime is older than this qualifies without waiting for a second look: a writer
#: that is still writing keeps the mtime fresh (copies that restore an old mtime do so last).
DEFAULT_SETTLE_AGE_S = 600.0
#: When the backfill schedule runs by default: nightly, 03:00 UTC.
DEFAULT_BACKFILL_CRON = "0 3 * * *"
# Name of the work area under output_path when work_path is not set (see the README, "Work area").
DEFAULT_WORK_DIR = "_work"
# Upper bounds of the numeric settings: past them a value is a typo, not a choice.
DAY_S = 86_400
MAX_COUNT = 1_000_000
MAX_THREADS = 1024
MAX_MOTION = 1_000.0
#: The resource budget per video (core/budget.py): an 8K frame, and 25 Tpx per video (about 28 hours
#: of 4K at 30 fps); FFmpeg itself allocates no frame above 2**28 pixels.
DEFAULT_MAX_FRAME_PIXELS = 7680 * 4320
DEFAULT_MAX_VIDEO_PIXELS = 25 * 10**12
MAX_FRAME_PIXELS = 2**28
MAX_VIDEO_PIXELS = 10**16

ENV_PREFIX = "CURATION_"
# The intermediate steps (core.layout.STEPS, in pipeline order); each stored value records the
# digest of the settings that shape it (Setting.steps), so a later step can tell a value made with
# other settings.
_CLIPS = ("video_clips",)
_FILTERED = ("clip_embeddings", "clip_captions")  # run on the clips that pass the filters


_s = setting_field


class PipelineSection(Section):
    """Every setting of the pipeline: its type, default, bounds and help (:func:`setting_field`)."""

    # where
    input_path: str = _s("data/videos", "folder or s3:// prefix holding the source videos (searched recursively)",
                         flag="--video-dir", path=True, steps=_CLIPS)
    output_path: str = _s("data/outputs", "folder or s3:// prefix the clip-writer layout is written to",
                          path=True)
    work_path: str = _s("", "where intermediate values and clip bytes live between steps; every worker must reach "
                            f"it (default: {DEFAULT_WORK_DIR}/ under the output)", path=True, hashed=False)
    video_extensions: list[str] = _s(list(VIDEO_EXTENSIONS), "file extensions taken as videos (comma-separated)",
                                           hashed=False)
    # splitting
    splitting_algorithm: str = _s("fixed_stride", "how videos are split into clips", choices=SPLITTING_ALGORITHMS,
                                  steps=_CLIPS)
    fixed_stride_split_duration: float = _s(10.0, "clip length and stride in seconds (fixed_stride)", gt=0, le=DAY_S,
                                              steps=_CLIPS)
    fixed_stride_min_clip_length_s: float = _s(2.0, "a last piece shorter than this many seconds is dropped", ge=0,
                                                  le=DAY_S, steps=_CLIPS)
    limit_clips: int = _s(0, "at most this many clips per video (0: all)", ge=0, le=MAX_COUNT, steps=_CLIPS)
    transnetv2_threshold: float = _s(0.4, "TransNetV2 scene-cut probability threshold", gt=0, le=1, steps=_CLIPS)
    transnetv2_min_length_s: float = _s(2.0, "scenes shorter than this many seconds are dropped", ge=0, le=DAY_S,
                                           steps=_CLIPS)
    transnetv2_max_length_s: float = _s(10.0, "scenes longer than this many seconds are cut", gt=0, le=DAY_S,
                                           steps=_CLIPS)
    transnetv2_max_length_mode: str = _s("stride", "how long scenes are cut: into pieces (stride) or once (truncate)",
                                         choices=MAX_LENGTH_MODES, steps=_CLIPS)
    transnetv2_crop_s: float = _s(0.5, "seconds cropped from each end of a scene", ge=0, le=DAY_S, steps=_CLIPS)
    # the resource budget per video (core/budget.py), read from the header before any frame is decoded
    max_frame_pixels: int = _s(DEFAULT_MAX_FRAME_PIXELS, "a video whose frames have more pixels (width x height) fails "
                                                         "before decoding (default: 8K; 0: no limit)",
                               ge=0, le=MAX_FRAME_PIXELS, steps=_CLIPS)
    max_video_pixels: int = _s(DEFAULT_MAX_VIDEO_PIXELS, "a video with more pixels in all (width x height x frames) "
                                                         "fails before decoding (default: 25e12, about 28 hours of 4K "
                                                         "at 30 fps; 0: no limit)",
                               ge=0, le=MAX_VIDEO_PIXELS, steps=_CLIPS)
    transnetv2_device: str = _s("auto", "where TransNetV2 runs (auto: cuda when available)", choices=TRANSNETV2_DEVICES,
                                hashed=False)
    # transcoding and chunks
    transcode_encoder: str = _s("libx264", "clip encoder; copy: cut without re-encoding, each span snapped out to "
                                           "the source's keyframes (recorded as snapped in metas/v0)",
                                 choices=ENCODERS, steps=_CLIPS)
    transcode_encoder_threads: int = _s(0, "encoder threads (0: every usable core)", ge=0, le=MAX_THREADS,
                                        steps=_CLIPS)
    transcode_decode_positions: int = _s(1, "decode positions per video: the later clips encode from a second "
                                            "one at the same time (same bytes); 1: one (the default: two bought no "
                                            "wall time on 2 cores, at more memory: docs/performance.md), 0: two "
                                            "where cores would idle, 2: two",
                                         ge=0, le=2,
                                         hashed=False)
    transcode_preset: str = _s(DEFAULT_X264_PRESET, "libx264 preset (medium: the reference's; veryfast encodes about "
                                                    "twice as fast)", choices=X264_PRESETS, steps=_CLIPS)
    transcode_x264_avx512: bool = _s(False, "libx264's AVX-512 functions where they are exact (frames whose width is "
                                            "a multiple of 8 macroblocks: 1280, 1920, 3840 px ...): about 7% less "
                                            "encode CPU on AVX-512 CPUs, but clip bytes that differ from a CPU "
                                            "without AVX-512 (off: the same bytes on either)", steps=_CLIPS,
                                     recorded_when_set=True)
    clip_re_chunk_size: int = _s(32, "clips per chunk: a chunk closes at this many x 8 seconds of clips", ge=1,
                                 le=MAX_COUNT)
    # motion
    motion_filter: str = _s("score-only", "enable: move low-motion clips to filtered_clips/; disable: no scores",
                            choices=MOTION_FILTER_MODES, steps=_CLIPS)
    motion_global_mean_threshold: float = _s(0.00098, "clips below this mean motion are low-motion", ge=0,
                                             le=MAX_MOTION, steps=_CLIPS)
    motion_per_patch_min_256_threshold: float = _s(0.000001, "clips below this per-patch minimum are low-motion",
                                                   ge=0, le=MAX_MOTION, steps=_CLIPS)
    # aesthetics
    aesthetic_threshold: float | None = _s(None, "score clips (CLIP ViT-L/14 + LAION MLP, frames at 1 fps) and move "
                                                 "those below this value to filtered_clips/ (default: off)",
                                           steps=("aesthetic_scores",) + _FILTERED)
    aesthetic_reduction: str = _s("min", "per-clip aesthetic score from its frames' scores",
                                  choices=AESTHETIC_REDUCTIONS, steps=("aesthetic_scores",))
    # embeddings
    generate_embeddings: str = _s("auto", "Cosmos-Embed1 embeddings: on (missing weights fail the run), off, or auto "
                                          "(embed when the weights are found)", choices=GENERATE_MODES,
                                  flag="--generate-embeddings", steps=("clip_embeddings",))
    embedding_algorithm: str = _s("cosmos-embed1-224p", "Cosmos-Embed1 variant (giving one on the command line "
                                                        "asks for embeddings)", choices=EMBEDDING_ALGORITHMS,
                                  steps=("clip_embeddings",))
    model_dir: str = _s("models", "folder holding model weights (<model-dir>/nvidia/Cosmos-Embed1-224p, ...)",
                        path=True, hashed=False)
    allow_model_download: bool = _s(False, "let missing model weights be downloaded from the Hugging Face hub",
                                    hashed=False)
    model_frames: str = _s("source", "the model steps' frames: source (taken off the transcode's one decode pass) or "
                                     "clip (decode each transcoded clip, the reference's pixels)",
                           choices=MODEL_FRAME_SOURCES, steps=_CLIPS + ("aesthetic_scores",) + _FILTERED)
    # previews
    generate_previews: bool = _s(True, "write an animated WebP preview per clip window", steps=_CLIPS)
    preview_target_fps: float = _s(1.0, "preview frame rate (capped at the source's)", gt=0, le=60, steps=_CLIPS)
    preview_target_height: int = _s(240, "preview height in pixels", ge=2, le=4320, steps=_CLIPS)
    # captions
    generate_captions: bool = _s(False, "caption every window through a vision-language model endpoint",
                                 steps=("clip_captions",))
    enhance_captions: bool = _s(False, "send each caption to a text model for an enhanced caption",
                                steps=("clip_captions",))
    caption_models: list[str] = _s(["qwen"], "ordered caption models: each window of metas gets "
                                             "'<model>_caption' per model ([]: no captions)",
                                   flag="--caption-model", steps=("clip_captions",))
    enhanced_caption_models: list[str] = _s(["qwen_lm"], "ordered enhanced caption models: the i-th enhances "
                                                         "the i-th caption model's text into "
                                                         "'<model>_enhanced_caption'",
                                            flag="--enhance-caption-model", steps=("clip_captions",))
    # writer
    upload_clips: bool = _s(True, "write the clip mp4s")
    dry_run: bool = _s(False, "write only processed_videos and processed_clip_chunks (no clips, previews, metas)",
                       steps=_CLIPS)
    verbose: bool = _s(False, "log every clip, and Dagster's own logs on the console", hashed=False)
    max_workers: int = _s(6, "writer threads per video (files written concurrently)", ge=1, le=256, hashed=False)
    log_stats: bool = _s(False, "log each video's clip statistics (passed, filtered, transcoded, embeddings, "
                                "captions, previews, durations) when it is written", hashed=False)
    # unattended curation: the code location's sensor, schedule and checks (Setting.location)
    watch_interval_s: int = _s(60, "seconds between two ticks of the upload sensor", ge=1, le=DAY_S, hashed=False,
                               location=True)
    watch_max_per_tick: int = _s(DEFAULT_MAX_PER_TICK, "videos the upload sensor requests per tick at most; the rest "
                                                       "wait for the next ticks", ge=1, le=MAX_COUNT, hashed=False,
                                 location=True)
    watch_settle_age_s: float = _s(DEFAULT_SETTLE_AGE_S, "a file is taken as fully uploaded once it is unchanged since "
                                                         "the previous tick, or older than this many seconds", ge=0,
                                   le=7 * DAY_S,
                                   hashed=False, location=True)
    watch_list_pages_per_tick: int = _s(0, "s3:// inputs: list at most this many pages of keys per tick, going on "
                                           "where the previous tick stopped (0: the whole prefix every tick)", ge=0,
                                        le=MAX_COUNT,
                                        hashed=False, location=True)
    watch_remove_deleted: bool = _s(False, "when a source video is deleted, remove its files from the output and its "
                                           "partition (off: the deletion is reported, nothing is removed)",
                                    hashed=False, location=True)
    backfill_cron: str = _s(DEFAULT_BACKFILL_CRON, "when the backfill schedule requests every missing, failed or stale "
                                                   "video (cron, UTC)", hashed=False, location=True)
    checks_block_downstream: bool = _s(True, "a failing layout check fails the writer step and holds back the assets "
                                             "that depend on the layout (packaging)", hashed=False, location=True)


#: The pipeline's defaults, as declared (no path made absolute): for core functions' own defaults.
DEFAULTS = PipelineSection()


class PipelineOptions(PipelineSection):
    """The pipeline settings of one run, validated: what the core functions take. Lists are tuples
    here; a value out of its bounds or choices, or a combination that cannot work, is refused with
    a ``ValueError`` that names every problem."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    if not typing.TYPE_CHECKING:  # the type checker sees the fields' own signature
        def __init__(self, **values: Any) -> None:
            unknown = sorted(set(values) - set(type(self).model_fields))
            if unknown:
                raise TypeError(f"unknown settings: {', '.join(unknown)}")
            coerced = _validated(values)
            super().__init__(**coerced)
            for name, value in coerced.items():  # pydantic made lists of the tuples
                if isinstance(value, tuple):
                    object.__setattr__(self, name, value)

    @classmethod
    def field_names(cls) -> list[str]:
        return list(PipelineSection.model_fields)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> PipelineOptions:
        """Build from a dict (resource config, CLI); unknown keys are ignored, lists become tuples."""
        known = {k: v for k, v in values.items() if k in PipelineSection.model_fields}
        return cls(**known)

    def values(self) -> dict[str, Any]:
        """Every setting by name (lists as tuples)."""
        return {name: getattr(self, name) for name in PipelineSection.model_fields}

    def replace(self, **changes: Any) -> PipelineOptions:
        return type(self).from_mapping({**self.values(), **changes})

    @property
    def uses_models(self) -> bool:
        """Whether any model step (embeddings, aesthetic scores, captions) may need clip frames."""
        return _uses_models(self)

    @property
    def chunk_duration_budget(self) -> int:
        return self.clip_re_chunk_size * 8

    @property
    def work_url(self) -> str:
        """The work area: ``work_path``, or ``_work/`` under the output."""
        from .storage import join

        return self.work_path or join(self.output_path, DEFAULT_WORK_DIR)

    def record(self) -> dict[str, Any]:
        """The settings that shape the output, with a stable hash: the ``pipeline`` record."""
        from .. import __version__

        settings = recorded_settings(self, [name for name, _k, _d, meta in setting_fields() if meta.hashed])
        return {"package": "curation-assets", "version": __version__, "settings": settings,
                "settings_hash": settings_digest(settings)}


def _validated(values: Mapping[str, Any]) -> dict[str, Any]:
    """Every field of ``values`` (defaults for the rest) in its type, paths made absolute, each
    checked against its bounds and choices, then their combinations; one ValueError names every
    problem."""
    problems: list[str] = []
    out: dict[str, Any] = {}
    for name, kind, default, meta in setting_fields():
        value = out[name] = values.get(name, default)  # kept as given when it cannot be coerced
        if name == "generate_embeddings" and isinstance(value, bool):  # NeMo's bool: True expects embeddings
            value = "on" if value else "off"
        try:
            value = coerce(value, kind)
        except (TypeError, ValueError) as exc:
            allowed = f"; choose one of {', '.join(meta.choices)}" if meta.choices else ""
            if name == "generate_embeddings":
                allowed += " or true/false"
            problems.append(f"{name}={value!r} ({exc}{allowed})")
            continue
        if meta.path and value:
            from .storage import normalize_url

            value = normalize_url(value)
        out[name] = value
        problems += check(name, value, meta)
    problems = _combination_problems(types.SimpleNamespace(**out), problems)
    if problems:
        raise ValueError("invalid settings: " + "; ".join(problems))
    return out


def _combination_problems(v: Any, problems: list[str]) -> list[str]:
    """``problems`` (each field's own) and what the values ``v`` cannot do together: most
    combinations are judged only when every field is fine, a few always."""
    problems = list(problems)
    if not problems and v.splitting_algorithm == "fixed_stride" \
            and v.fixed_stride_min_clip_length_s > v.fixed_stride_split_duration:
        problems.append(f"fixed_stride_min_clip_length_s={v.fixed_stride_min_clip_length_s:g} is above "
                        f"fixed_stride_split_duration={v.fixed_stride_split_duration:g}: no clip can result")
    if not problems and v.splitting_algorithm == "transnetv2" \
            and v.transnetv2_min_length_s > v.transnetv2_max_length_s:
        problems.append(f"transnetv2_min_length_s={v.transnetv2_min_length_s:g} is above "
                        f"transnetv2_max_length_s={v.transnetv2_max_length_s:g}: no clip can result")
    if not problems and v.transcode_preset != DEFAULT_X264_PRESET and v.transcode_encoder != "libx264":
        problems.append(f"transcode_preset={v.transcode_preset!r} is an x264 preset: it needs "
                        f"transcode_encoder=libx264, not {v.transcode_encoder!r}")
    if not problems and v.transcode_x264_avx512 and v.transcode_encoder != "libx264":
        problems.append(f"transcode_x264_avx512 chooses libx264's functions: it needs transcode_encoder=libx264, "
                        f"not {v.transcode_encoder!r}")
    if not problems and v.transnetv2_device != "auto" and v.splitting_algorithm != "transnetv2":
        problems.append(f"transnetv2_device={v.transnetv2_device!r} needs splitting_algorithm=transnetv2")
    if not problems and v.model_frames != "source" and not _uses_models(v):
        problems.append(f"model_frames={v.model_frames!r} has no model step to feed (embeddings off, no "
                        "aesthetic_threshold, no captions)")
    if len(v.enhanced_caption_models) > len(v.caption_models):
        problems.append(f"enhanced_caption_models={list(v.enhanced_caption_models)!r}: more than caption_models="
                        f"{list(v.caption_models)!r} (the i-th enhances the i-th caption model's text)")
    names = [*v.caption_models, *v.enhanced_caption_models]
    if len(set(names)) != len(names) or any(not n.strip() for n in names):
        problems.append(f"caption_models / enhanced_caption_models name a model twice or an empty one: {names!r}")
    if any(not e.startswith(".") or len(e) < 2 for e in v.video_extensions):
        problems.append(f"video_extensions={v.video_extensions!r} (each like '.mp4')")
    if len(v.backfill_cron.split()) != 5:
        problems.append(f"backfill_cron={v.backfill_cron!r} (five cron fields: minute hour day month weekday)")
    if v.watch_list_pages_per_tick:
        from .storage import is_local

        if is_local(v.input_path):
            problems.append("watch_list_pages_per_tick applies to s3:// (object store) inputs; a local folder is "
                            "walked whole every tick (set it to 0)")
    return problems


def _uses_models(v: Any) -> bool:
    return v.generate_embeddings != "off" or v.aesthetic_threshold is not None or v.generate_captions


def _step_fields(step: str) -> list[str]:
    return [name for name, _k, _d, meta in setting_fields() if step in meta.steps]


def step_digest(options: PipelineOptions, step: str) -> str:
    """A digest of the settings that shape ``step``'s values (and of the package version)."""
    from .. import __version__

    if step not in STEPS:
        raise ValueError(f"unknown step {step!r}")
    values = recorded_settings(options, _step_fields(step))
    if step == "aesthetic_scores":  # scores do not depend on the threshold's value, only on scoring at all
        values["aesthetic_threshold"] = values["aesthetic_threshold"] is not None
    return settings_digest({"version": __version__, **values})


def step_settings_changed(options: PipelineOptions, step: str, recorded: dict[str, Any]) -> list[str]:
    """The settings of ``step`` whose values differ from those ``recorded`` (a record leaves out a
    :attr:`Setting.recorded_when_set` setting at its default)."""
    values = _json_values(options, _step_fields(step))
    return [name for name, value in values.items() if value != recorded.get(name, _left_out().get(name))]


@functools.cache
def _left_out() -> dict[str, Any]:
    """The :attr:`Setting.recorded_when_set` settings, each with its default (as JSON): what a
    record without one of them says of it."""
    return {name: json.loads(json.dumps(default)) for name, _k, default, meta in setting_fields()
            if meta.recorded_when_set}


def _json_values(options: PipelineOptions, names: list[str]) -> dict[str, Any]:
    """``names``' values as records hold them: JSON types (tuples as lists, and so on)."""
    return json.loads(json.dumps({name: getattr(options, name) for name in names}))


def recorded_settings(options: PipelineOptions, names: list[str]) -> dict[str, Any]:
    """``names``' values as records and digests hold them (JSON types), less the
    :attr:`Setting.recorded_when_set` settings left at their defaults."""
    values = _json_values(options, names)
    left_out = _left_out()
    return {name: value for name, value in values.items() if name not in left_out or value != left_out[name]}


def settings_digest(values: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


def setting(name: str) -> Setting:
    """The metadata of one field."""
    return setting_of(PipelineSection.model_fields[name])


def location_settings() -> tuple[str, ...]:
    """The settings of the code location (:attr:`Setting.location`), in declaration order."""
    return tuple(name for name, _k, _d, meta in setting_fields() if meta.location)


_FIELDS: list[tuple[str, Any, Any, Setting]] = []


def setting_fields() -> list[tuple[str, Any, Any, Setting]]:
    """``(name, type, default, Setting)`` of every pipeline setting, in declaration order."""
    if not _FIELDS:
        _FIELDS.extend(section_fields(PipelineSection))
    return _FIELDS


def env_values(environ: Mapping[str, str] | None = None, prefix: str = ENV_PREFIX) -> dict[str, Any]:
    """The ``CURATION_<FIELD>`` variables that are set, parsed (unknown ``CURATION_*`` names are ignored)."""
    return read_env(PipelineSection, prefix, environ)


def options_from_env(environ: Mapping[str, str] | None = None, prefix: str = ENV_PREFIX) -> PipelineOptions:
    """PipelineOptions with every ``CURATION_<FIELD>`` environment variable applied."""
    values = env_values(environ, prefix)
    try:
        return PipelineOptions.from_mapping(values)
    except ValueError as exc:
        raise ValueError(f"{exc} (from the {prefix}* environment variables)") from None
