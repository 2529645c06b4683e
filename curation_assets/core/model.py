"""The spec's vocabulary: videos, spans, clips, windows and their scores.

Plain dataclasses so every stage (probe, split, transcode, motion, previews, models, layout)
talks in the same terms without importing each other.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, overload


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

    def is_complete(self) -> bool:
        return None not in (self.height, self.width, self.framerate, self.num_frames, self.duration) and bool(
            self.framerate
        )


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
    """Bytes kept in a file (local path or fsspec URL) instead of memory.

    A video's clips and previews are spilled to the work area as soon as each is encoded, so the
    memory of a run does not grow with the video's length and the values passed between steps
    hold references, not megabytes. The writer later *moves* the file into the layout; the places
    it may have moved to are ``alternates``, tried in order when ``path`` is gone, so a reference
    stays good after the move (re-running the writer alone reads the clip from ``clips/``).
    ``len()`` and truth behave as for the bytes; ``read()`` returns them.
    """

    __slots__ = ("path", "size", "alternates")

    def __init__(self, path: str, size: int, alternates: tuple[str, ...] = ()) -> None:
        self.path = path
        self.size = size
        self.alternates = tuple(alternates)

    @classmethod
    def write(cls, data: bytes, path: str, alternates: tuple[str, ...] = ()) -> SpilledBytes:
        from . import storage

        storage.write_bytes_atomic(path, data)
        return cls(path, len(data), alternates)

    def locate(self) -> str | None:
        """Where the bytes are now: ``path`` or the first alternate holding a file of this size."""
        from . import storage

        for url in (self.path, *self.alternates):
            info = storage.file_info(url)
            if info is not None and info.size == self.size:
                return url
        return None

    def read(self) -> bytes:
        from . import storage

        url = self.locate()
        if url is None:
            raise FileNotFoundError(
                f"the clip bytes kept in {self.path} are gone (work area cleaned, or the clip was not "
                "written): materialize video_clips for this video again"
            )
        data = storage.read_bytes(url)
        if len(data) != self.size:
            raise OSError(f"{url}: {len(data)} bytes, expected {self.size}")
        return data

    def source(self) -> bytes | str:
        """What PyAV can open: the local path where the bytes are, else the bytes themselves."""
        from . import storage

        url = self.locate()
        if url is not None and storage.is_local(url):
            return url
        return self.read()

    def to_doc(self) -> dict:
        return {"url": self.path, "size": self.size, "alternates": list(self.alternates)}

    @classmethod
    def from_doc(cls, doc: dict) -> SpilledBytes:
        return cls(str(doc["url"]), int(doc["size"]), tuple(str(a) for a in doc.get("alternates", ())))

    def __len__(self) -> int:
        return self.size

    def __bool__(self) -> bool:
        return self.size > 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SpilledBytes) and (self.path, self.size) == (other.path, other.size)

    def __hash__(self) -> int:
        return hash((self.path, self.size))

    def __repr__(self) -> str:
        return f"SpilledBytes({self.path!r}, {self.size})"


@overload
def as_bytes(data: bytes | SpilledBytes) -> bytes: ...
@overload
def as_bytes(data: None) -> None: ...
def as_bytes(data: bytes | SpilledBytes | None) -> bytes | None:
    """The bytes themselves, read back from the file when they were spilled."""
    return data.read() if isinstance(data, SpilledBytes) else data


def as_source(data: bytes | SpilledBytes) -> bytes | str:
    """What PyAV can open without loading a spilled clip into memory: bytes or a local path."""
    return data.source() if isinstance(data, SpilledBytes) else data


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
    errors: dict[str, str] = field(default_factory=dict)  # video-level errors (the spec's keys)
    # the pipeline record (options.record()), written to processed_videos
    record: dict[str, Any] = field(default_factory=dict)
    stage_key: str = ""  # identifies the source and settings the clips were made from (core.work)


# Step failures of a video that mean nothing of it may be written: a partition key that names no
# video under input_path, a source that is not there (a stale key) or must not be opened, a name
# the documents cannot hold.
UNWRITABLE_FAILURES = ("key", "source", "name")


@dataclass
class ClipAnnotations:
    """What one model stage produced for one video: a value and/or an error per clip uuid.

    ``note`` says why nothing was computed (stage off, weights missing in auto mode);
    ``video_error`` that the stage failed for the whole video (its partition fails).
    """

    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, tuple[str, str]] = field(default_factory=dict)
    note: str | None = None
    video_error: str | None = None
    digest: str = ""  # core.options.step_digest of the settings it was computed with
    clips_key: str = ""  # the VideoResult.stage_key of the clips it was computed from
