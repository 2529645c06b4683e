"""NeMo Curator's Python API over this project: ``ClipWriterStage`` with the reference's
parameters and path helpers, the stages a NeMo video pipeline builds before it, and a small
``Pipeline`` whose ``definitions()`` is the Dagster code location and whose ``run()`` is the CLI's
batched run, so a NeMo script ports by changing its imports.

Nothing here holds a default or a bound: every stage parameter is translated to a setting of
``core/options.py`` (the one definition), and :class:`PipelineOptions` validates the result. A
stage or parameter this project does not implement is refused by name, with what to use instead;
scheduling hints of the reference (workers, GPUs, batch sizes) have no meaning under Dagster and
are reported with a warning, never dropped in silence.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any, ClassVar

from .core import layout
from .core.options import DEFAULTS, PipelineOptions, setting
from .core.storage import normalize_url

__all__ = ["CaptionEnhancementStage", "CaptionGenerationStage", "CaptionPreparationStage", "ClipAestheticFilterStage",
           "ClipTranscodingStage", "ClipWriterStage", "CosmosEmbed1EmbeddingStage", "CosmosEmbed1FrameCreationStage",
           "FixedStrideExtractorStage", "MotionFilterStage", "MotionVectorDecodeStage", "Pipeline", "PreviewStage",
           "TransNetV2ClipExtractionStage", "VideoFrameExtractionStage", "VideoReader", "not_implemented"]

#: NeMo stages (and names) this project does not implement, and what to use instead.
NOT_IMPLEMENTED = {
    "InternVideo2FrameCreationStage": "CosmosEmbed1FrameCreationStage (embedding_algorithm cosmos-embed1-*)",
    "InternVideo2EmbeddingStage": "CosmosEmbed1EmbeddingStage (embedding_algorithm cosmos-embed1-*)",
    "ClipFrameExtractionStage": "nothing: each model step takes its own frames (setting model_frames)",
    "XennaExecutor": "pipeline.run() (in-process Dagster runs) or pipeline.definitions() with a Dagster executor",
    "RayDataExecutor": "pipeline.run() (in-process Dagster runs) or pipeline.definitions() with a Dagster executor",
}

# Parameters of the reference that size workers, GPUs or batches: Dagster's executor and this
# project's own threads decide those, so they are accepted with a warning.
_HINTS = frozenset({"num_cpus_per_worker", "num_gpus_per_worker", "gpus_per_worker", "gpu_memory_gb",
                    "encode_batch_size", "nb_streams_per_gpu", "motion_filter_batch_size", "model_batch_size",
                    "caption_batch_size", "pyncv_batch_size", "decoder_mode", "output_hw", "fp8", "ffmpeg_verbose",
                    "verbose", "disable_mmcache", "use_hwaccel", "model_variant", "num_cpus"})


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


class ClipAestheticFilterStage(_Stage):
    _MAP = {"model_dir": "model_dir", "score_threshold": "aesthetic_threshold", "reduction": "aesthetic_reduction"}


def _variant(_stage: str, value: Any) -> dict[str, Any]:
    return {"embedding_algorithm": f"cosmos-embed1-{value}"}


class CosmosEmbed1FrameCreationStage(_Stage):
    _MAP = {"model_dir": "model_dir", "variant": _variant,
            "target_fps": _named_no("target_fps", "Cosmos-Embed1 frames are sampled as the model card says", 2.0)}


class CosmosEmbed1EmbeddingStage(_Stage):
    _MAP = {"model_dir": "model_dir", "variant": _variant}


class CaptionPreparationStage(_Stage):
    """Caption windows: cut by the captioning step itself (settings in docs/settings.md)."""

    _MAP = {"model_variant": "_caption_variant"}


class CaptionGenerationStage(_Stage):
    """Captions come from an OpenAI-compatible endpoint (the caption_service resource)."""

    _MAP = {"model_dir": "model_dir", "model_variant": "_caption_variant"}


class CaptionEnhancementStage(_Stage):
    _MAP = {"model_dir": "model_dir"}
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


class Pipeline:
    """NeMo's ``Pipeline(name, description)``: stages added in order, a :class:`ClipWriterStage` last."""

    def __init__(self, name: str, description: str | None = None, stages: list[Any] | None = None) -> None:
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

    def _settings(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(settings, run-only values) from every stage; two stages giving one setting two values is refused."""
        writers = [s for s in self.stages if isinstance(s, ClipWriterStage)]
        if len(writers) != 1:
            raise ValueError(f"pipeline {self.name!r} needs one ClipWriterStage, last ({len(writers)} given)")
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
        variant = values.pop("_caption_variant", None)
        models = values.get("caption_models", DEFAULTS.caption_models)
        if variant is not None and variant not in models:
            raise _refuse("CaptionGenerationStage", "model_variant", variant,
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

    def definitions(self) -> Any:
        """The Dagster code location with these settings (what ``definitions.py`` builds from the environment)."""
        from .definitions import CurationSettings, build_definitions

        return build_definitions(CurationSettings.from_options(self.options()))

    def run(self, executor: Any = None, *, home: str | None = None, stream: Any = None,
            videos_per_run: int | None = None) -> int:
        """The CLI's batched in-process run (progress, per-video table); 0 when every video was
        written, 1 when one failed, 130 when stopped. ``home``: the Dagster instance folder."""
        if executor is not None:
            kind = type(executor).__name__
            raise TypeError(f"{kind} is not used here; use "
                            f"{NOT_IMPLEMENTED.get(kind, NOT_IMPLEMENTED['XennaExecutor'])}")
        from .cli.runner import run_pipeline

        settings, run = self._settings()
        return run_pipeline(PipelineOptions(**settings), video_limit=run.get("video_limit"), home=home,
                            stream=stream, videos_per_run=videos_per_run)

    def describe(self) -> str:
        return "\n".join([f"Pipeline {self.name}: {self.description or ''}".rstrip()]
                         + [f"  {i + 1}. {s!r}" for i, s in enumerate(self.stages)])
