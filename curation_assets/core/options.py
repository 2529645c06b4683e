"""Every knob of the pipeline in one typed place: the writer parameters and the stage options.

Field names follow NeMo Curator's example script (`video_split_clip_example.py`) with dashes
turned into underscores, so a reference command line maps one to one. The Dagster resource
(`defs/resources.py`) and the CLI are built from this list.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from typing import Any

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


@dataclass(frozen=True)
class PipelineOptions:
    # where
    input_path: str = "data/videos"
    output_path: str = "data/outputs"
    # splitting
    splitting_algorithm: str = "fixed_stride"
    fixed_stride_split_duration: float = 10.0
    fixed_stride_min_clip_length_s: float = 2.0
    limit_clips: int = 0
    transnetv2_threshold: float = 0.4
    transnetv2_min_length_s: float = 2.0
    transnetv2_max_length_s: float = 10.0
    transnetv2_max_length_mode: str = "stride"
    transnetv2_crop_s: float = 0.5
    transnetv2_device: str = "auto"
    # transcoding and chunks
    transcode_encoder: str = "libx264"
    transcode_encoder_threads: int = 0
    transcode_preset: str = DEFAULT_X264_PRESET
    clip_re_chunk_size: int = 32
    # motion
    motion_filter: str = "score-only"
    motion_global_mean_threshold: float = 0.00098
    motion_per_patch_min_256_threshold: float = 0.000001
    # aesthetics
    aesthetic_threshold: float | None = None
    aesthetic_reduction: str = "min"
    # embeddings
    generate_embeddings: str = "auto"
    embedding_algorithm: str = "cosmos-embed1-224p"
    model_dir: str = "models"
    allow_model_download: bool = False
    model_frames: str = "source"
    # previews
    generate_previews: bool = True
    preview_target_fps: float = 1.0
    preview_target_height: int = 240
    # captions
    generate_captions: bool = False
    enhance_captions: bool = False
    caption_models: tuple[str, ...] = ("qwen",)
    enhanced_caption_models: tuple[str, ...] = ("qwen_lm",)
    # writer
    upload_clips: bool = True
    dry_run: bool = False
    verbose: bool = False
    max_workers: int = 6
    log_stats: bool = False

    def __post_init__(self) -> None:
        problems = []
        choice = {
            "splitting_algorithm": SPLITTING_ALGORITHMS,
            "transnetv2_max_length_mode": MAX_LENGTH_MODES,
            "motion_filter": MOTION_FILTER_MODES,
            "embedding_algorithm": EMBEDDING_ALGORITHMS,
            "transcode_encoder": ENCODERS,
            "generate_embeddings": GENERATE_MODES,
            "aesthetic_reduction": ("min", "mean"),
            "transcode_preset": X264_PRESETS,
            "model_frames": MODEL_FRAME_SOURCES,
            "transnetv2_device": TRANSNETV2_DEVICES,
        }
        for name, allowed in choice.items():
            if getattr(self, name) not in allowed:
                problems.append(f"{name}={getattr(self, name)!r} (choose one of {', '.join(allowed)})")
        positive = ("fixed_stride_split_duration", "transnetv2_max_length_s", "clip_re_chunk_size", "preview_target_fps",
                    "preview_target_height", "max_workers")
        for name in positive:
            if not getattr(self, name) > 0:
                problems.append(f"{name}={getattr(self, name)!r} (must be > 0)")
        for name in ("fixed_stride_min_clip_length_s", "transnetv2_min_length_s", "transnetv2_crop_s", "limit_clips",
                     "transcode_encoder_threads"):
            if getattr(self, name) < 0:
                problems.append(f"{name}={getattr(self, name)!r} (must be >= 0)")
        if not 0 < self.transnetv2_threshold < 1:
            problems.append(f"transnetv2_threshold={self.transnetv2_threshold!r} (must be between 0 and 1)")
        if self.transcode_preset != DEFAULT_X264_PRESET and self.transcode_encoder != "libx264":
            problems.append(f"transcode_preset={self.transcode_preset!r} is an x264 preset: it needs "
                            f"transcode_encoder=libx264, not {self.transcode_encoder!r}")
        if self.transnetv2_device != "auto" and self.splitting_algorithm != "transnetv2":
            problems.append(f"transnetv2_device={self.transnetv2_device!r} needs splitting_algorithm=transnetv2")
        if self.model_frames != "source" and not self.uses_models:
            problems.append(f"model_frames={self.model_frames!r} has no model step to feed (embeddings off, no "
                            "aesthetic_threshold, no captions)")
        if not self.caption_models or not self.enhanced_caption_models:
            problems.append("caption_models and enhanced_caption_models need at least one name")
        if problems:
            raise ValueError("invalid pipeline options: " + "; ".join(problems))

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> PipelineOptions:
        """Build from a dict (resource config, CLI); unknown keys are ignored, lists become tuples."""
        known = {k: v for k, v in values.items() if k in cls.field_names()}
        for key in ("caption_models", "enhanced_caption_models"):
            if key in known:
                known[key] = tuple(known[key])
        return cls(**known)

    @property
    def uses_models(self) -> bool:
        """Whether any model step (embeddings, aesthetic scores, captions) may need clip frames."""
        return self.generate_embeddings != "off" or self.aesthetic_threshold is not None or self.generate_captions

    @property
    def chunk_duration_budget(self) -> int:
        return self.clip_re_chunk_size * 8

    def record(self) -> dict[str, Any]:
        """The settings that shape the output, with a stable hash: the ``pipeline`` record."""
        from .. import __version__

        settings = {k: v for k, v in asdict(self).items() if k not in ("verbose", "max_workers", "log_stats")}
        settings = json.loads(json.dumps(settings))
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
        return {"package": "curation-assets", "version": __version__, "settings": settings, "settings_hash": digest}
