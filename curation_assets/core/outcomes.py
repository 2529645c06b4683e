"""What became of one video in one step: the one per-video outcome every batch step reports.

A step takes a run's videos and handles each on its own: a broken video, a storage error or a
refused key is that video's failure, recorded in its :class:`VideoOutcome`; the other videos of
the run go on. The Dagster layer turns a batch's outcomes into events and one failure naming the
failed videos (``defs.shared.outcomes``). A stop (``core.cancel.Interrupted``, Ctrl-C) is a
``BaseException``: it is never a video's failure and passes through :func:`one_video`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from .storage import redact

T = TypeVar("T")


class VideoFailed(Exception):
    """Raised inside a per-video step to end that video with ``(error, message)``; ``reason``:
    what the run's failure says of it, when not ``"error: message"``."""

    def __init__(self, error: str, message: str, *, reason: str | None = None, documented: bool = False):
        super().__init__(message)
        self.error, self.message, self.reason, self.documented = error, message, reason, documented


@dataclass(frozen=True)
class VideoOutcome:
    """One video's outcome in a step: ok, or failed with ``error`` (a short key: ``write``,
    ``source``, ...) and ``message``; ``documented``: the video's ``processed_videos`` document
    records the failure."""

    key: str  # the video's partition key
    error: str | None = None
    message: str = ""
    reason_text: str | None = None
    documented: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def reason(self) -> str:
        """Why the video failed, as the run's failure lists it."""
        return self.reason_text if self.reason_text is not None else f"{self.error}: {self.message}"

    @classmethod
    def failed(cls, key: str, error: str, message: str, *, reason: str | None = None,
               documented: bool = False) -> VideoOutcome:
        return cls(key, error, message, reason, documented)

    @classmethod
    def of(cls, key: str, exc: VideoFailed) -> VideoOutcome:
        return cls.failed(key, exc.error, exc.message, reason=exc.reason, documented=exc.documented)


def one_video(key: str, step: Callable[[], T]) -> tuple[T | None, VideoOutcome]:
    """``step()`` for the video ``key``: ``(value, ok)``, or ``(None, failed)`` when it raised
    :class:`VideoFailed` or any other exception (``error`` ``"error"``, the message redacted:
    a backend's text never carries a credential into a log or a document)."""
    try:
        return step(), VideoOutcome(key)
    except VideoFailed as exc:
        return None, VideoOutcome.of(key, exc)
    except Exception as exc:  # noqa: BLE001 - this video's failure, the batch goes on
        message = redact(f"{type(exc).__name__}: {exc}")
        return None, VideoOutcome.failed(key, "error", message, reason=message)


def failed_reasons(outcomes: Iterable[VideoOutcome]) -> dict[str, str]:
    """The failed videos of a batch: partition key -> why, in the batch's order."""
    return {o.key: o.reason for o in outcomes if not o.ok}
