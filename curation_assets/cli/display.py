"""What a person sees of a CLI run: the live one-line progress on a terminal and the per-video
summary, filled from the run's own Dagster events (nothing is re-read from storage)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class VideoProgress:
    clips_done: int = 0
    clips_total: int = 0
    seconds_done: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    finished: float | None = None
    clip_errors: dict[str, int] = field(default_factory=dict)


class ProgressPrinter:
    """A one-line live progress display on a terminal; quiet otherwise."""

    def __init__(self, total_videos: int, stream=None):
        self.total_videos = total_videos
        self.videos: dict[str, VideoProgress] = {}
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.perf_counter()

    def begin(self, rel_path: str, at: float) -> None:
        """``rel_path``'s work began at ``at`` (``time.perf_counter``), before its first clip was done."""
        self.videos.setdefault(rel_path, VideoProgress()).started = at

    def __call__(self, p: Any) -> None:
        v = self.videos.setdefault(p.rel_path, VideoProgress())
        v.clips_total = max(v.clips_total, p.clips_total)
        if p.finished:
            v.finished = time.perf_counter()
            v.clip_errors = dict(p.clip_errors or {})
        else:
            v.clips_done = p.clips_done
            v.seconds_done += p.video_seconds
        if self.tty:
            self.render()

    def render(self) -> None:
        done = sum(1 for v in self.videos.values() if v.finished)
        clips = sum(v.clips_done for v in self.videos.values())
        clips_total = sum(v.clips_total for v in self.videos.values())
        seconds = sum(v.seconds_done for v in self.videos.values())
        rate = seconds / max(time.perf_counter() - self.started, 1e-6)
        self.stream.write(f"\rvideos {done}/{self.total_videos}  clips {clips}/{clips_total}  "
                          f"{rate:.2f} s of video/s   ")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")


@dataclass
class VideoRow:
    """One line of the summary, filled from the run's own events (nothing is re-read from storage)."""

    video: str
    passed: int = 0
    filtered: int = 0
    seconds: float = 0.0
    wall_s: float | None = None
    written: bool = False
    documented: bool | None = None  # a failed video: whether its processed_videos records the failure
    errors: dict[str, str] = field(default_factory=dict)
    clip_errors: dict[str, int] = field(default_factory=dict)


def _metadata_value(md: dict, name: str, default: Any = None) -> Any:
    value = md.get(name)
    return getattr(value, "value", default) if value is not None else default


def collect_rows(result: Any, keys: list[str], rows: dict[str, VideoRow]) -> None:
    """Per-video figures and failures of one run, from its materialisations and step failures."""
    for event in result.all_events:
        if event.is_step_materialization:
            mat = event.event_specific_data.materialization
            row = rows.get(mat.partition)
            if row is None:
                continue
            md = mat.metadata
            name = mat.asset_key.to_user_string()
            if name == "clips":
                row.passed = int(_metadata_value(md, "num_clips_passed", 0))
                row.filtered = int(_metadata_value(md, "num_clips_filtered", 0))
            elif name == "processed_videos":
                row.written = True
                row.seconds = float(_metadata_value(md, "video_duration_s", 0.0))
                row.errors.update(_metadata_value(md, "errors", {}) or {})
        elif event.event_type_value == "ASSET_CHECK_EVALUATION":  # a layout check of a written video
            evaluation = event.event_specific_data
            if not evaluation.passed and evaluation.partition in rows:
                rows[evaluation.partition].errors[f"check {evaluation.check_name}"] = evaluation.description or "failed"
        elif event.event_type_value == "ASSET_OBSERVATION":
            obs = event.event_specific_data.asset_observation
            row = rows.get(obs.partition)
            if row is not None and obs.asset_key.to_user_string() == "processed_videos":
                row.documented = bool(_metadata_value(obs.metadata, "error_document_written", False))
        elif event.is_step_failure:
            data = event.step_failure_data
            failed = (_metadata_value(data.user_failure_data.metadata, "failed_partitions", None)
                      if data.user_failure_data else None)
            if isinstance(failed, dict):
                for key, why in failed.items():
                    if key in rows and not rows[key].errors:  # a broken video's own errors already say why
                        error_key, _, message = str(why).partition(": ")
                        rows[key].errors[error_key] = message or error_key
            else:  # the whole step failed: every video of the run not written says why
                message = data.error.message.strip().splitlines()[0] if data.error else "the run failed"
                for key in keys:
                    if not rows[key].written:
                        rows[key].errors.setdefault("run", f"not processed: step {event.step_key} failed: {message}")


def print_summary(rows: list[VideoRow], wall: float, stream=None) -> None:
    stream = stream if stream is not None else sys.stdout
    width = max([len(r.video) for r in rows] + [5])
    stream.write(f"\n{'video'.ljust(width)}  passed  filtered  video_s  wall_s  status\n")
    for r in rows:
        wall_s = f"{r.wall_s:.1f}" if r.wall_s is not None else "-"
        if "stopped" in r.errors:
            status = r.errors["stopped"]
        else:
            status = "ok" if not r.errors else "FAILED: " + "; ".join(f"{k}: {v}" for k, v in r.errors.items())
        if r.errors and r.documented is not None:
            status += (" (its processed_videos document records it)" if r.documented
                       else " (nothing of it was written)")
        if r.clip_errors:
            status += " (clips with errors: " + ", ".join(f"{k} {n}" for k, n in r.clip_errors.items()) + ")"
        stream.write(f"{r.video.ljust(width)}  {r.passed:6d}  {r.filtered:8d}  {r.seconds:7.1f}  {wall_s:>6}  "
                     f"{status}\n")
    total = sum(r.seconds for r in rows)
    failed = [r.video for r in rows if r.errors and "stopped" not in r.errors]
    stopped = [r.video for r in rows if "stopped" in r.errors]
    stream.write(f"{len(rows)} videos, {total:.1f} s of video in {wall:.1f} s "
                 f"({total / max(wall, 1e-6):.2f} s of video per second)"
                 + (f"; {len(failed)} failed: {', '.join(failed)}" if failed else "")
                 + (f"; {len(stopped)} not processed (stopped)" if stopped else "") + "\n")
