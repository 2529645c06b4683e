"""The spec's vocabulary: videos, spans, clips, windows and their scores.

Plain dataclasses so every stage (probe, split, transcode, motion, previews, models, layout)
talks in the same terms without importing each other.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class VideoMetadata:
    """Container-level facts about a video, defined as the spec's "Probe fields"."""

    height: int | None
    width: int | None
    framerate: float | None
    num_frames: int | None
    duration: float | None
    video_codec: str | None
    pixel_format: str | None
    audio_format: str | None
    bit_depth: int | None = None
    rotation: int = 0

    def is_complete(self) -> bool:
        return None not in (self.height, self.width, self.framerate, self.num_frames, self.duration) and bool(
            self.framerate
        )

    def is_10_bit(self) -> bool:
        return (self.bit_depth or 8) > 8


@dataclass(frozen=True)
class Span:
    """A clip's place in the source: seconds, and the source-frame indices its uuid is built from.

    ``snapped`` is set when the span was moved onto source keyframes (stream-copy cutting).
    """

    start_s: float
    end_s: float
    start_frame: int
    end_frame: int
    snapped: bool = False

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def clip_uuid(source_video: str, start_frame: int, end_frame: int) -> uuid.UUID:
    """The reference's clip id: uuid5(NAMESPACE_URL, "<source>_<start_frame>_<end_frame>")."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"{source_video}_{start_frame}_{end_frame}")


def chunk_uuid(source_video: str, clip_chunk_index: int) -> uuid.UUID:
    """The reference's chunk id (the parquet file name)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"{source_video}_{clip_chunk_index}")


@dataclass(frozen=True)
class ClipProbe:
    """Fields probed from a clip's own bytes (spec: per-clip width, height, ...)."""

    width: int | None
    height: int | None
    framerate: float | None
    num_frames: int | None
    video_codec: str | None
    num_bytes: int


@dataclass(frozen=True)
class MotionScore:
    global_mean: float
    per_patch_min_256: float


@dataclass
class Window:
    """A caption/preview window over a clip's native frames; both ends inclusive."""

    start_frame: int
    end_frame: int
    captions: dict[str, str] = field(default_factory=dict)
    enhanced_captions: dict[str, str] = field(default_factory=dict)
    preview: bytes | None = None

    @property
    def key(self) -> str:
        return f"{self.start_frame}_{self.end_frame}"


@dataclass
class Clip:
    """One clip of one source video and everything the stages learned about it."""

    source_video: str
    span: Span
    encoded: bytes | None = None
    probe: ClipProbe | None = None
    decoded_frames: int | None = None
    motion: MotionScore | None = None
    aesthetic_score: float | None = None
    embedding: Any = None  # numpy array of shape (D,), float32
    windows: list[Window] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    filtered_by: str | None = None  # "motion" | "aesthetic" | None

    @property
    def uuid(self) -> uuid.UUID:
        return clip_uuid(self.source_video, self.span.start_frame, self.span.end_frame)

    @property
    def passed(self) -> bool:
        return self.filtered_by is None

    @property
    def duration_s(self) -> float:
        return self.span.duration_s


@dataclass
class VideoResult:
    """Everything one video produced: the input to the layout writer."""

    source_video: str
    rel_path: str
    metadata: VideoMetadata | None
    clips: list[Clip] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class ClipAnnotations:
    """What one model stage produced for one video: a value and/or an error per clip uuid.

    ``note`` says why nothing was computed (stage off, weights missing in auto mode).
    """

    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, tuple[str, str]] = field(default_factory=dict)
    note: str | None = None
