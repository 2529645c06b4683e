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


class SpilledBytes:
    """Bytes kept in a local file instead of memory.

    A video's clips (and previews) are spilled as soon as each is encoded, so the memory of a run
    does not grow with the video's length and the intermediate value pickled between assets holds
    paths, not megabytes. ``len()`` and truth behave as for the bytes; ``read()`` returns them;
    ``path`` can be handed to anything that opens a file (PyAV).
    """

    __slots__ = ("path", "size")

    def __init__(self, path: str, size: int) -> None:
        self.path = path
        self.size = size

    @classmethod
    def write(cls, data: bytes, path: str) -> SpilledBytes:
        import os

        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        return cls(path, len(data))

    def read(self) -> bytes:
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise FileNotFoundError(
                f"the clip bytes kept in {self.path} are gone (work folder cleaned?): materialize "
                "video_clips for this video again"
            ) from None
        if len(data) != self.size:
            raise OSError(f"{self.path}: {len(data)} bytes, expected {self.size}")
        return data

    def __len__(self) -> int:
        return self.size

    def __bool__(self) -> bool:
        return self.size > 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SpilledBytes) and (self.path, self.size) == (other.path, other.size)

    def __hash__(self) -> int:
        return hash((self.path, self.size))

    def __getstate__(self) -> tuple[str, int]:
        return (self.path, self.size)

    def __setstate__(self, state: tuple[str, int]) -> None:
        self.path, self.size = state

    def __repr__(self) -> str:
        return f"SpilledBytes({self.path!r}, {self.size})"


def as_bytes(data: bytes | SpilledBytes | None) -> bytes | None:
    """The bytes themselves, read back from the file when they were spilled."""
    return data.read() if isinstance(data, SpilledBytes) else data


def as_source(data: bytes | SpilledBytes) -> bytes | str:
    """What PyAV can open without loading a spilled clip into memory: bytes or a file path."""
    return data.path if isinstance(data, SpilledBytes) else data


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
    preview: bytes | SpilledBytes | None = None

    @property
    def key(self) -> str:
        return f"{self.start_frame}_{self.end_frame}"


@dataclass
class Clip:
    """One clip of one source video and everything the stages learned about it."""

    source_video: str
    span: Span
    encoded: bytes | SpilledBytes | None = None  # the transcoded mp4
    model_frames: bytes | SpilledBytes | None = None  # the model steps' frames, kept by the decode pass
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
