"""The text of a :class:`~.diff.DatasetDiff` for people: the summary first, then settings, score
distributions and per-video detail, each list capped at :data:`~.diff.SHOWN` items with
"... N more" unless ``full``. Values read from the outputs are shown with ``repr`` where they are
free text (file names, setting values), so a control character cannot rewrite the terminal."""

from __future__ import annotations

from typing import Any

from .diff import SHOWN, Clip, DatasetDiff, VideoDiff


def _span(c: Clip) -> str:
    return f"{c.start:.2f}-{c.end:.2f} s"


def _spans(clips: list[Clip]) -> str:
    return ", ".join(_span(c) for c in clips) or "(none)"


def _name(text: str) -> str:
    """A file name as it is when printable, else its repr."""
    return text if text.isprintable() else repr(text)


def _value(values: list[Any]) -> str:
    if not values:
        return "(unset)"
    return " | ".join(repr(v) if isinstance(v, str) and not v.isprintable() else str(v) for v in values)


def _capped(lines: list[str], full: bool, indent: str, what: str = "") -> list[str]:
    if full or len(lines) <= SHOWN:
        return lines
    return lines[:SHOWN] + [f"{indent}... {len(lines) - SHOWN} more{what} (--full shows all)"]


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}"


def _side_line(label: str, side: dict[str, Any]) -> str:
    origin = f"snapshot of {side['created']}" if side["created"] else "live manifest"
    return (f"{label}: {_name(side['source'])} ({origin}): {side['videos']} videos, {side['clips']} clips, "
            f"{side['passed']} passed")


def _video_lines(video: VideoDiff, full: bool) -> list[str]:
    counts = [f"+{len(video.added)}" if video.added else "", f"-{len(video.removed)}" if video.removed else "",
              f"~{len(video.changed)}" if video.changed else ""]
    lines = [f"  {_name(video.rel_path)}: clips {' '.join(c for c in counts if c)}"]
    detail = [f"    {_spans(old)} -> {_spans(new)}" for old, new in video.respans]
    for change in video.changed:
        fields = "; ".join(f"{k} {_value([a])} -> {_value([b])}" for k, (a, b) in change.fields.items())
        detail.append(f"    changed {change.clip.uuid} {_span(change.clip)}: {fields}")
    return lines + _capped(detail, full, "    ")


def _score_lines(scores: dict[str, Any]) -> list[str]:
    lines = ["scores (old -> new):"]
    passed = scores["passed"]
    lines.append(f"  passed share: {_num(passed['old']['share'])} -> {_num(passed['new']['share'])}")
    for name, sides in scores.items():
        if name == "passed":
            continue
        old, new = sides["old"], sides["new"]
        if not old["count"] and not new["count"]:
            lines.append(f"  {name}: not scored on either side")
            continue
        parts = [f"{k} {_num(old[k]) if k != 'count' else old[k]} -> {_num(new[k]) if k != 'count' else new[k]}"
                 for k in old]
        lines.append(f"  {name}: " + ", ".join(parts))
    return lines


def render(d: DatasetDiff, full: bool = False) -> str:
    """The diff as text (ends with a newline)."""
    doc = d.to_json()
    s = doc["summary"]
    lines = [_side_line("old", doc["old"]), _side_line("new", doc["new"])]
    if d.identical:
        lines.append("no differences")
    else:
        lines.append(f"videos: {s['videos_added']} added, {s['videos_removed']} removed, {s['videos_changed']} "
                     f"changed, {s['videos_unchanged']} unchanged; clips: {s['clips_added']} added, "
                     f"{s['clips_removed']} removed, {s['clips_changed']} changed")
    if s["videos_settings_changed"]:
        lines.append(f"{s['videos_settings_changed']} video(s) on both sides were written with other settings "
                     "(paths aside)")
    if d.settings:
        lines.append("settings (old -> new):")
        lines += _capped([f"  {k}: {_value(o)} -> {_value(n)}" for k, (o, n) in d.settings.items()], full, "  ")
    if d.versions[0] != d.versions[1]:
        lines.append(f"version: {_value(list(d.versions[0]))} -> {_value(list(d.versions[1]))}")
    if not d.identical:
        lines += _score_lines(doc["scores"])
    for label, videos in (("added", d.videos_added), ("removed", d.videos_removed)):
        if videos:
            lines.append(f"videos {label} ({len(videos)}):")
            lines += _capped([f"  {_name(rel)}: {len(clips)} clips" for rel, clips in videos.items()], full, "  ")
    if d.videos_changed:
        lines.append(f"videos changed ({len(d.videos_changed)}):")
        shown = d.videos_changed if full else d.videos_changed[:SHOWN]
        for video in shown:
            lines += _video_lines(video, full)
        if len(shown) < len(d.videos_changed):
            lines.append(f"  ... {len(d.videos_changed) - len(shown)} more videos (--full shows all)")
    for side, label in ((doc["old"], "old"), (doc["new"], "new")):
        for problem in side["problems"][: None if full else SHOWN]:
            lines.append(f"note ({label}): {problem}")
    return "\n".join(lines) + "\n"


__all__ = ["render"]
