"""NeMo Curator's Python API over this project: ``ClipWriterStage`` with the reference's
parameters and path helpers, the stages a NeMo video pipeline builds before it, and a small
``Pipeline`` whose ``definitions()`` is the Dagster code location and whose ``run()`` is the CLI's
batched run (under any of NeMo's executors, ``executors.py``), so a NeMo script ports by changing
its imports. NeMo's ``ClipFrameExtractionStage`` and its enums are here too: the model steps take
their frames off this project's one decode pass, and the purposes must match the model stages.

Nothing here holds a default or a bound: every stage parameter is translated to a setting of
``core/options.py`` (the one definition), and :class:`PipelineOptions` validates the result. A
stage or parameter this project does not implement is refused by name, with what to use instead;
scheduling hints of the reference (workers, GPUs, batch sizes) have no meaning under Dagster and
are reported with a warning, never dropped in silence.
"""

from __future__ import annotations

import dataclasses
import enum
import warnings
from collections.abc import Callable
from typing import Any, ClassVar

from .core import layout
from .core.options import DEFAULTS, PipelineOptions, setting
from .core.storage import normalize_url
from .executors import Executor, RayDataExecutor, XennaExecutor

__all__ = ["CaptionEnhancementStage", "CaptionGenerationStage", "CaptionPreparationStage", "ClipAestheticFilterStage",
           "ClipFrameExtractionStage", "ClipTranscodingStage", "ClipWriterStage", "CosmosEmbed1EmbeddingStage",
           "CosmosEmbed1FrameCreationStage", "FixedStrideExtractorStage", "FrameExtractionPolicy", "FramePurpose",
           "MotionFilterStage", "MotionVectorDecodeStage", "Pipeline", "PipelineResult", "PreviewStage",
           "RayDataExecutor", "TransNetV2ClipExtractionStage", "VideoFrameExtractionStage", "VideoReader",
           "XennaExecutor", "not_implemented"]

#: NeMo stages (and names) this project does not implement, and what to use instead.
NOT_IMPLEMENTED = {
    "InternVideo2FrameCreationStage": "CosmosEmbed1FrameCreationStage (embedding_algorithm cosmos-embed1-*)",
    "InternVideo2EmbeddingStage": "CosmosEmbed1EmbeddingStage (embedding_algorithm cosmos-embed1-*)",
}

# Parameters of the reference that size workers, GPUs or batches: Dagster's executor and this
# project's own threads decide those, so they are accepted with a warning.
_HINTS = frozenset({"num_cpus_per_worker", "num_gpus_per_worker", "gpus_per_worker", "gpu_memory_gb",
                    "encode_batch_size", "nb_streams_per_gpu", "motion_filter_batch_size", "model_batch_size",
                    "caption_batch_size", "pyncv_batch_size", "decoder_mode", "output_hw", "fp8", "ffmpeg_verbose",
                    "verbose", "disable_mmcache", "use_hwaccel", "model_variant", "num_cpus", "preprocess_dtype",
                    "vllm_kwargs"})


def not_implemented(name: str) -> ImportError:
    """The refusal of a NeMo name this project lacks, with what to use instead."""
    return ImportError(f"{name} is not implemented by curation_assets; use {NOT_IMPLEMENTED[name]}")


def _refuse(stage: str, param: str, value: Any, instead: str) -> ValueError:
    return ValueError(f"{stage}({param}={value!r}) is not implemented; {instead}")


class _Stage:
    """A NeMo stage as keyword parameters, each translated by ``_MAP`` into settings."""

    #: parameter -> setting name, or a function (stage name, value) -> {setting: value}
    _MAP: ClassVar[dict[str, str | Callable[[str, Any], dict[str, Any]]]] = {}
    #: settings the stage's mere presence sets
    _SETS: ClassVar[dict[str, Any]] = {}

    def __init__(self, **params: Any) -> None:
        name = type(self).__name__
        unknown = sorted(set(params) - set(self._MAP) - _HINTS)
        if unknown:
            raise TypeError(f"{name} has no parameter {', '.join(unknown)} here (parameters: "
                            f"{', '.join(sorted(self._MAP)) or 'none'}; see docs/python-api.md)")
        hints = sorted(set(params) & _HINTS - set(self._MAP))
        if hints:
            warnings.warn(f"{name}: {', '.join(hints)} have no effect here (NeMo Curator's worker sizing and "
                          "logging; Dagster's executor and the settings decide)", stacklevel=2)
        self.params = params
        self.settings: dict[str, Any] = dict(self._SETS)
        for param, value in params.items():
            target = self._MAP.get(param)
            if target is None:
                continue
            self.settings.update(target(name, value) if callable(target) else {target: value})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params.items())})"


def _same_stride(stage: str, value: Any) -> dict[str, Any]:
    # checked against clip_len_s in Pipeline (it is another parameter)
    return {"_clip_stride_s": value}


def _named_no(param: str, instead: str, allowed: Any = None) -> Callable[[str, Any], dict[str, Any]]:
    """``param`` accepted only at ``allowed`` (its reference default); any other value is refused."""
    def translate(stage: str, value: Any) -> dict[str, Any]:
        if value != allowed:
            raise _refuse(stage, param, value, instead)
        return {}
    return translate


def _limit(_stage: str, value: Any) -> dict[str, Any]:
    # the reference cuts only when limit_clips > 0 (TransNetV2's default is -1): 0 and below mean all
    return {"limit_clips": max(0, value) if isinstance(value, int) and not isinstance(value, bool) else value}


class VideoReader(_Stage):
    _MAP = {"input_video_path": "input_path", "video_limit": "_video_limit"}


class FixedStrideExtractorStage(_Stage):
    _MAP = {"clip_len_s": "fixed_stride_split_duration", "clip_stride_s": _same_stride,
            "min_clip_length_s": "fixed_stride_min_clip_length_s", "limit_clips": _limit}
    _SETS = {"splitting_algorithm": "fixed_stride"}


class VideoFrameExtractionStage(_Stage):
    """TransNetV2's frames: decoded by the splitting step itself here."""


class TransNetV2ClipExtractionStage(_Stage):
    _MAP = {"model_dir": "model_dir", "threshold": "transnetv2_threshold", "min_length_s": "transnetv2_min_length_s",
            "max_length_s": "transnetv2_max_length_s", "max_length_mode": "transnetv2_max_length_mode",
            "crop_s": "transnetv2_crop_s", "limit_clips": _limit,
            "entire_scene_as_clip": _named_no("entire_scene_as_clip", "a video without a cut is one scene", True)}
    _SETS = {"splitting_algorithm": "transnetv2"}


class ClipTranscodingStage(_Stage):
    _MAP = {"encoder": "transcode_encoder", "encoder_threads": "transcode_encoder_threads",
            "num_clips_per_chunk": "clip_re_chunk_size",
            "use_input_bit_rate": _named_no("use_input_bit_rate", "clips are encoded at the encoder's own rate "
                                            "(transcode_encoder, transcode_preset)", False)}


class MotionVectorDecodeStage(_Stage):
    _MAP = {"target_fps": _named_no("target_fps", "the motion step decodes at its own fixed rate", 2.0),
            "target_duration_ratio": _named_no("target_duration_ratio", "the motion step decodes the whole clip",
                                               0.5)}


class MotionFilterStage(_Stage):
    _MAP = {"score_only": lambda _s, v: {"motion_filter": "score-only" if v else "enable"},
            "global_mean_threshold": "motion_global_mean_threshold",
            "per_patch_min_256_threshold": "motion_per_patch_min_256_threshold"}
    _SETS = {"motion_filter": "enable"}


class FrameExtractionPolicy(enum.Enum):
    """NeMo's ``decoder_utils.FrameExtractionPolicy``: members and values as there."""

    first = 0
    middle = 1
    last = 2
    sequence = 3


class FramePurpose(enum.Enum):
    """NeMo's ``decoder_utils.FramePurpose``: the value is the frame rate the purpose samples at."""

    AESTHETICS = 1
    EMBEDDINGS = 2


def _items(value: Any) -> list[Any]:
    """A tuple or list parameter's items (anything else: itself, refused by the caller's check)."""
    return list(value) if isinstance(value, (tuple, list)) else [value]


def _policies(stage: str, value: Any) -> dict[str, Any]:
    names = [getattr(p, "name", p) for p in _items(value)]
    if names != ["sequence"]:
        raise _refuse(stage, "extraction_policies", value, "the model steps take the reference's sequence "
                      "sampling: (FrameExtractionPolicy.sequence,)")
    return {}


def _native_res(stage: str, value: Any) -> dict[str, Any]:
    if value is not None and _items(value) != [-1, -1]:  # NeMo's (-1, -1): the clip's own resolution
        raise _refuse(stage, "target_res", value, "frames are taken at the clip's resolution and each model "
                      "resizes them to its own input (target_res=None)")
    return {}


class ClipFrameExtractionStage(_Stage):
    """The model steps' frames, taken by this project's one decode pass (setting ``model_frames``);
    ``extract_purposes`` must name the purpose of every model stage after it, as NeMo's stages
    find no frames otherwise (``None``: NeMo's fallback, the 2 fps embedding frames)."""

    _MAP = {"extraction_policies": _policies,
            "extract_purposes": lambda _s, v: {},  # checked against the model stages in Pipeline
            "target_res": _native_res,
            "target_fps": _named_no("target_fps", "each model step samples at its purpose's rate (aesthetics "
                                    "1 fps, embeddings 2 fps): use extract_purposes", None)}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        purposes = params.get("extract_purposes")
        #: the purposes' names (NeMo's fallback without any: the 2 fps frames, FramePurpose.EMBEDDINGS)
        self.purposes = frozenset(getattr(p, "name", p) for p in _items(purposes)) if purposes is not None \
            else frozenset({FramePurpose.EMBEDDINGS.name})
        unknown = sorted(set(map(str, self.purposes)) - set(FramePurpose.__members__))
        if unknown:
            raise _refuse("ClipFrameExtractionStage", "extract_purposes", purposes,
                          f"{', '.join(unknown)}: FramePurpose has {', '.join(FramePurpose.__members__)}")


class ClipAestheticFilterStage(_Stage):
    _MAP = {"model_dir": "model_dir", "score_threshold": "aesthetic_threshold", "reduction": "aesthetic_reduction",
            "target_fps": _named_no("target_fps", "aesthetic scores take the reference's 1 fps frames", 1.0)}
    purpose = FramePurpose.AESTHETICS


def _variant(_stage: str, value: Any) -> dict[str, Any]:
    return {"embedding_algorithm": f"cosmos-embed1-{value}"}


class CosmosEmbed1FrameCreationStage(_Stage):
    _MAP = {"model_dir": "model_dir", "variant": _variant,
            "target_fps": _named_no("target_fps", "Cosmos-Embed1 frames are sampled as the model card says", 2.0)}
    purpose = FramePurpose.EMBEDDINGS


class CosmosEmbed1EmbeddingStage(_Stage):
    _MAP = {"model_dir": "model_dir", "variant": _variant,
            "texts_to_verify": _named_no("texts_to_verify", "no text is embedded here", None)}


_PROMPT_INSTEAD = ("give the prompt's text as prompt_text=... (the caption service's prompt setting, "
                   "CURATION_CAPTION_PROMPT; docs/models.md)")


def _prompt_variant(stage: str, value: Any) -> dict[str, Any]:
    # "default": the reference's default prompt, which is the built-in one here
    if value != "default":
        raise _refuse(stage, "prompt_variant", value, _PROMPT_INSTEAD)
    return {}


def _fixed(param: str, value: Any, where: str) -> Callable[[str, Any], dict[str, Any]]:
    return _named_no(param, f"it is fixed at the reference's {value!r} here ({where})", value)


class CaptionPreparationStage(_Stage):
    """Caption windows: cut by the captioning step itself (settings in docs/settings.md)."""

    _MAP = {"model_variant": "_caption_variant", "prompt_variant": _prompt_variant,
            "prompt_text": lambda _s, v: {} if v is None else {"_caption_prompt": v},
            "sampling_fps": _fixed("sampling_fps", 2.0, "frames per caption window"),
            "window_size": _fixed("window_size", 256, "frames per caption window"),
            "remainder_threshold": _fixed("remainder_threshold", 128, "frames per caption window"),
            "generate_previews": _named_no("generate_previews", "previews are ClipWriterStage(generate_previews=...) "
                                           "here", True)}


class CaptionGenerationStage(_Stage):
    """Captions come from an OpenAI-compatible endpoint (the caption_service resource)."""

    _MAP = {"model_dir": "model_dir", "model_variant": "_caption_variant",
            "max_output_tokens": _fixed("max_output_tokens", 512, "tokens per caption request"),
            "generate_stage2_caption": _named_no("generate_stage2_caption", "one caption per window and model",
                                                 False),
            "stage2_prompt_text": _named_no("stage2_prompt_text", "one caption per window and model", None)}


class CaptionEnhancementStage(_Stage):
    _MAP = {"model_dir": "model_dir", "captioning_model_variant": "_enhanced_from",
            "prompt_variant": _named_no("prompt_variant", "the enhancement prompt is the reference's default here",
                                        "default"),
            "prompt_text": _named_no("prompt_text", "the enhancement prompt is the reference's default here", None),
            "max_output_tokens": _fixed("max_output_tokens", 512, "tokens per enhancement request")}
    _SETS = {"enhance_captions": True}


class PreviewStage(_Stage):
    _MAP = {"target_fps": "preview_target_fps", "target_height": "preview_target_height"}


@dataclasses.dataclass
class ClipWriterStage:
    """The reference's writer: same parameters, types and defaults; it decides what is written.

    ``generate_embeddings=True`` expects embeddings (a run without the weights is refused before
    anything is processed); the setting's ``auto`` stays available through :class:`PipelineOptions`.
    """

    output_path: str
    input_path: str
    upload_clips: bool
    dry_run: bool
    generate_embeddings: bool
    generate_previews: bool
    generate_captions: bool
    embedding_algorithm: str = "cosmos-embed1"
    caption_models: list[str] | None = None
    enhanced_caption_models: list[str] | None = None
    verbose: bool = False
    max_workers: int = 6
    log_stats: bool = False

    @property
    def settings(self) -> dict[str, Any]:
        """This stage's parameters as settings of ``core/options.py`` (validated by PipelineOptions)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if out["embedding_algorithm"] == "cosmos-embed1":  # the reference's family name: our default variant
            out["embedding_algorithm"] = DEFAULTS.embedding_algorithm
        elif str(out["embedding_algorithm"]).startswith("internvideo2"):
            raise _refuse("ClipWriterStage", "embedding_algorithm", out["embedding_algorithm"],
                          "use cosmos-embed1-224p, -336p or -448p")
        for name in ("caption_models", "enhanced_caption_models"):
            if out[name] is None:
                del out[name]
        return out

    def options(self) -> PipelineOptions:
        """The settings of a run of this writer alone (every other setting at its default)."""
        return PipelineOptions(**self.settings)

    # The reference's static path helpers: one definition each, in core/layout.py.
    get_output_path_clips = staticmethod(layout.get_output_path_clips)
    get_output_path_previews = staticmethod(layout.get_output_path_previews)
    get_output_path_metas = staticmethod(layout.get_output_path_metas)
    get_output_path_ce1_embd = staticmethod(layout.get_output_path_ce1_embd)
    get_output_path_ce1_embd_parquet = staticmethod(layout.get_output_path_ce1_embd_parquet)
    get_output_path_processed_videos = staticmethod(layout.get_output_path_processed_videos)
    get_output_path_processed_clip_chunks = staticmethod(layout.get_output_path_processed_clip_chunks)


@dataclasses.dataclass
class PipelineResult:
    """What ``pipeline.run()`` did, as the CLI prints it: ``status`` (0 every video written, 1 one
    failed, 130 stopped) and one row per video (``cli/display.VideoRow``: clips passed and
    filtered, seconds, errors)."""

    status: int
    videos: list[Any]

    @property
    def written(self) -> list[str]:
        return [row.video for row in self.videos if row.written and not row.errors]

    @property
    def failed(self) -> dict[str, dict[str, str]]:
        """Each video that was not written (or whose step failed), with its errors by step."""
        return {row.video: dict(row.errors) for row in self.videos if row.errors}


class Pipeline:
    """NeMo's ``Pipeline(name, description)``: stages added in order, a :class:`ClipWriterStage` last."""

    def __init__(self, name: str, description: str | None = None, stages: list[Any] | None = None,
                 config: dict[str, Any] | None = None) -> None:
        if config:
            warnings.warn(f"Pipeline config {', '.join(map(str, config))} has no effect here (NeMo Curator's "
                          "executor settings; the stages' parameters and the settings decide)", stacklevel=2)
        self.name = name
        self.description = description
        self.stages: list[Any] = []
        for stage in stages or []:
            self.add_stage(stage)

    def add_stage(self, stage: Any) -> Pipeline:
        if not isinstance(stage, (_Stage, ClipWriterStage)):
            kind = type(stage).__name__
            instead = NOT_IMPLEMENTED.get(kind, "the stages curation_assets exports (docs/python-api.md)")
            raise TypeError(f"{kind} is not a stage curation_assets implements; use {instead}")
        if self.stages and isinstance(self.stages[-1], ClipWriterStage):
            raise ValueError(f"{type(stage).__name__} added after ClipWriterStage: the writer is the last stage")
        self.stages.append(stage)
        return self

    def _check_frames(self) -> None:
        """With a ClipFrameExtractionStage, each model stage after it needs its purpose extracted
        (NeMo's stage would record missing frames for every clip) and may not come before it."""
        extractors = [i for i, s in enumerate(self.stages) if isinstance(s, ClipFrameExtractionStage)]
        if not extractors:
            return
        first, purposes = extractors[0], set().union(*(self.stages[i].purposes for i in extractors))
        for i, stage in enumerate(self.stages):
            purpose = getattr(stage, "purpose", None)
            if purpose is None:
                continue
            name = type(stage).__name__
            if i < first:
                raise ValueError(f"{name} comes before ClipFrameExtractionStage: it needs the frames that "
                                 "stage extracts; add it after")
            if purpose.name not in purposes:
                raise ValueError(f"{name} needs FramePurpose.{purpose.name} in ClipFrameExtractionStage's "
                                 f"extract_purposes (given: {', '.join(sorted(purposes))}); add it")

    def _settings(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(settings, run-only values) from every stage; two stages giving one setting two values is refused."""
        writers = [s for s in self.stages if isinstance(s, ClipWriterStage)]
        if len(writers) != 1:
            raise ValueError(f"pipeline {self.name!r} needs one ClipWriterStage, last ({len(writers)} given)")
        self._check_frames()
        merged: dict[str, tuple[Any, str]] = {}
        if not any(isinstance(s, (MotionVectorDecodeStage, MotionFilterStage)) for s in self.stages):
            merged["motion_filter"] = ("disable", "no motion stage")
        for stage in self.stages:
            for key, value in stage.settings.items():
                if not key.startswith("_") and setting(key).path and isinstance(value, str) and value:
                    value = normalize_url(value)  # "data/videos" and its absolute path are one folder
                if key in merged and merged[key][0] != value and merged[key][1] != "no motion stage":
                    raise ValueError(f"{type(stage).__name__} sets {key.lstrip('_')}={value!r} but "
                                     f"{merged[key][1]} set {merged[key][0]!r}")
                merged[key] = (value, type(stage).__name__)
        values = {k: v for k, (v, _) in merged.items()}
        models = values.get("caption_models", DEFAULTS.caption_models)
        for key, stage_name, param in (("_caption_variant", "CaptionGenerationStage", "model_variant"),
                                       ("_enhanced_from", "CaptionEnhancementStage", "captioning_model_variant")):
            variant = values.pop(key, None)
            if variant is not None and variant not in models:
                raise _refuse(stage_name, param, variant,
                              f"it must be one of the writer's caption_models ({', '.join(models)})")
        stride = values.pop("_clip_stride_s", None)
        if stride is not None and stride != values.get("fixed_stride_split_duration", stride):
            raise _refuse("FixedStrideExtractorStage", "clip_stride_s", stride,
                          "clips are cut back to back: clip_stride_s must equal clip_len_s")
        run = {k.lstrip("_"): values.pop(k) for k in list(values) if k.startswith("_")}
        return values, run

    def options(self) -> PipelineOptions:
        """The validated settings of this pipeline (one ValueError names every problem)."""
        return PipelineOptions(**self._settings()[0])

    def _caption_service(self, run: dict[str, Any]) -> Any:
        """The caption service of the environment (``CURATION_CAPTION_*``), with the stages' prompt."""
        from .definitions import caption_service_from_env

        service = caption_service_from_env()
        prompt = run.get("caption_prompt")
        return service if prompt is None else type(service)(**{**service.model_dump(), "prompt": prompt})

    def definitions(self) -> Any:
        """The Dagster code location with these settings (what ``definitions.py`` builds from the environment)."""
        from .definitions import CurationSettings, build_definitions

        settings, run = self._settings()
        return build_definitions(CurationSettings.from_options(PipelineOptions(**settings)),
                                 caption_service=self._caption_service(run))

    def run(self, executor: Any = None, initial_tasks: Any = None, checkpoint_path: Any = None, *,
            home: str | None = None, stream: Any = None, videos_per_run: int | None = None) -> PipelineResult:
        """The CLI's batched in-process run (progress, per-video table) under any of NeMo's
        executors (``curation_assets.executors``). ``home``: the Dagster instance folder."""
        if executor is not None and not isinstance(executor, Executor):
            raise TypeError(f"run({type(executor).__name__}) is not an executor curation_assets knows; use "
                            "XennaExecutor(), RayDataExecutor() or none (the same batched in-process run)")
        if initial_tasks is not None:
            raise _refuse("Pipeline.run", "initial_tasks", initial_tasks, "the videos are VideoReader's "
                          "input_video_path (the run registers each as a Dagster partition)")
        if checkpoint_path is not None:
            raise _refuse("Pipeline.run", "checkpoint_path", checkpoint_path, "the runs are recorded in the "
                          "Dagster instance under home=... (DAGSTER_HOME)")
        from .cli.runner import run_pipeline

        settings, run = self._settings()
        rows: list[Any] = []
        status = run_pipeline(PipelineOptions(**settings), video_limit=run.get("video_limit"), home=home,
                              stream=stream, videos_per_run=videos_per_run,
                              caption_service=self._caption_service(run), report=rows)
        return PipelineResult(status, rows)

    def describe(self) -> str:
        return "\n".join([f"Pipeline {self.name}: {self.description or ''}".rstrip()]
                         + [f"  {i + 1}. {s!r}" for i, s in enumerate(self.stages)])
