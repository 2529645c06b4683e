"""Checks that an output folder honours the clip-writer layout contract (used by end-to-end tests)."""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import uuid
from pathlib import Path

import av
import pyarrow.parquet as pq

from curation_assets.core import layout

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
PATTERNS = {
    "clips": re.compile(rf"^clips/{UUID}\.mp4$"),
    "filtered_clips": re.compile(rf"^filtered_clips/{UUID}\.mp4$"),
    "previews": re.compile(rf"^previews/{UUID}/\d+_\d+\.webp$"),
    "metas": re.compile(rf"^metas/v0/{UUID}\.json$"),
    "ce1_embd": re.compile(rf"^ce1_embd/{UUID}\.pickle$"),
    "ce1_embd_parquet": re.compile(rf"^ce1_embd_parquet/{UUID}\.parquet$"),
    "processed_videos": re.compile(r"^processed_videos/.+\.json$"),
    "processed_clip_chunks": re.compile(r"^processed_clip_chunks/.+_\d+\.json$"),
}


WORK_DIR = "_work"  # the work area (core.options.DEFAULT_WORK_DIR): step values, not layout files
# What a finished video leaves in the work area: its steps' JSON values and the writer's lock.
WORK_FILE = re.compile(rf"^{WORK_DIR}/videos/[0-9a-f]{{32}}/([a-z_]+\.[0-9a-f]{{16}}\.json|writer\.lock)$")


def reference_fixed_stride_ids(video: str, num_frames: int, fps: float, clip_len_s: float, min_clip_len_s: float,
                                limit_clips: int = 0) -> dict[str, list[float]]:
    """``{clip id: [start_s, end_s]}`` by NeMo Curator's ``FixedStrideExtractorStage``, written out
    here on its own (not the package's ``core.split``): spans over ``num_frames / fps``, the last
    one kept only if at least ``min_clip_len_s`` long, ids from ``int(seconds * fps)``."""
    duration = num_frames / fps
    ids: dict[str, list[float]] = {}
    start = 0.0
    while start < duration:
        end = min(start + clip_len_s, duration)
        if end - start >= min_clip_len_s:
            ids[str(uuid.uuid5(uuid.NAMESPACE_URL, f"{video}_{int(start * fps)}_{int(end * fps)}"))] = [start, end]
            if 0 < limit_clips <= len(ids):
                break
        start += clip_len_s
    return ids


def check_clip_ids(vdoc: dict, metas: dict[str, dict]) -> None:
    """Every clip id of one video by the one rule that applies to it.

    Fixed stride (re-encoded): the set of ids is exactly the reference's for the video's probed
    ``num_frames`` and ``framerate`` and the run's settings. Scene cuts and keyframe-snapped
    (``copy``) spans hash the spans' own frame indices, whose seconds (frame / fps) give the frames
    back by rounding.
    """
    settings = vdoc["pipeline"]["settings"]
    if settings["splitting_algorithm"] == "fixed_stride" and settings["transcode_encoder"] != "copy":
        if vdoc.get("num_frames") is None or "budget" in (vdoc.get("errors") or []):  # not decoded: no clips
            assert not metas, f"{vdoc['video']}: clips without probed frames, or of a video over its budget"
            return
        expected = reference_fixed_stride_ids(
            vdoc["video"], vdoc["num_frames"], vdoc["framerate"], settings["fixed_stride_split_duration"],
            settings["fixed_stride_min_clip_length_s"], settings["limit_clips"])
        assert set(metas) == set(expected), (vdoc["video"], sorted(metas), sorted(expected))
        for uid, meta in metas.items():
            assert meta["duration_span"] == expected[uid], (uid, meta["duration_span"], expected[uid])
        return
    for uid, meta in metas.items():
        start, end = meta["duration_span"]
        fps = meta["framerate_source"]
        frames = f"{round(start * fps)}_{round(end * fps)}"
        assert uid == str(uuid.uuid5(uuid.NAMESPACE_URL, f"{meta['source_video']}_{frames}")), (uid, start, end)


def all_files(out: Path) -> set[str]:
    """The layout's files (the work area aside: see :func:`work_files`)."""
    return {f for f in _files(out) if not f.startswith(WORK_DIR + "/")}


def work_files(out: Path) -> set[str]:
    return {f for f in _files(out) if f.startswith(WORK_DIR + "/")}


def _files(out: Path) -> set[str]:
    return {str(p.relative_to(out)).replace(os.sep, "/") for p in out.rglob("*") if p.is_file()}


def check_layout(out: Path, input_dir: Path | None, videos: list[str], *, decode_clips: bool = True,
                 input_url: str | None = None, output_url: str | None = None) -> dict:
    """Assert the layout invariants; returns a summary {rel: {"passed": n, "filtered": n}}.

    ``out`` is a local folder holding the output. When the run wrote to object storage and
    ``out`` is a downloaded copy, ``output_url`` is the URL the run wrote to (clip locations
    are checked against it) and ``input_url`` the URL the videos were read from (the ids and
    ``video`` fields embed it); by default both are local paths (``out``, ``input_dir``).
    """
    files = all_files(out)
    for f in files:
        assert any(p.match(f) for p in PATTERNS.values()), f"unexpected file {f}"
        assert ".partial" not in f and "/.tmp-" not in f, f"temporary file left: {f}"
    # one copy of the bytes: no clip or preview of these videos is left in the work area
    from curation_assets.core.work import video_id

    base = input_url.rstrip("/") if input_url else str(input_dir) if input_dir is not None else None
    if base is not None:
        ids = {video_id(f"{base}/{rel}", output_url or str(out)) for rel in videos}
        for f in work_files(out):
            if f.split("/")[2] in ids:
                assert WORK_FILE.match(f), f"unexpected file in the work area: {f}"
    summary = {}
    metas = {f.split("/")[-1][:-5]: json.loads((out / f).read_text()) for f in files if f.startswith("metas/v0/")}
    for uid, meta in metas.items():
        start, end = meta["duration_span"]
        fps = meta["framerate_source"]
        assert meta["span_uuid"] == uid, (meta["span_uuid"], uid)
        location = meta["clip_location"]
        if output_url is not None:
            prefix = output_url.rstrip("/") + "/"
            assert location.startswith(prefix), (location, prefix)
            rel_location = location[len(prefix):]
        else:
            rel_location = os.path.relpath(location, out).replace(os.sep, "/")
        if "width" in meta:
            assert rel_location in files, f"clip_location {location} missing"
            if decode_clips:
                with av.open(str(out / rel_location)) as c:
                    stream = c.streams.video[0]
                    frames = sum(1 for _ in c.decode(stream))
                    duration = float(stream.duration * stream.time_base) if stream.duration else frames / fps
                assert abs(frames - (end - start) * fps) <= 1.01, (uid, frames, (end - start) * fps)
                assert abs(duration - (end - start)) <= 1.01 / fps + 1e-6, (uid, duration, end - start)
        assert meta["valid"] == bool("width" in meta and meta["windows"])
    for rel in videos:
        video_doc_path = out / layout.video_file(rel)
        assert video_doc_path.exists(), f"processed_videos missing for {rel}"
        vdoc = json.loads(video_doc_path.read_text())
        expected_video = input_url.rstrip("/") + "/" + rel if input_url is not None else str((input_dir / rel).resolve())
        assert vdoc["video"] == expected_video, (vdoc["video"], expected_video)
        passed, filtered = [], []
        for i in range(vdoc["num_clip_chunks"]):
            cdoc = json.loads((out / layout.chunk_file(rel, i)).read_text())
            assert cdoc["clip_chunk_index"] == i and cdoc["video"] == vdoc["video"]
            passed += cdoc["clips"]
            filtered += cdoc["filtered_clips"]
            assert cdoc["num_clips_passed"] == len(cdoc["clips"])
            # a clip without bytes (its span had no frames) is listed but has no mp4
            for uid in cdoc["clips"]:
                assert metas[uid]["source_video"] == vdoc["video"]
                assert (f"clips/{uid}.mp4" in files) == ("width" in metas[uid]), uid
            for uid in cdoc["filtered_clips"]:
                assert (f"filtered_clips/{uid}.mp4" in files) == ("width" in metas[uid]), uid
            durations = [metas[u]["duration_span"][1] - metas[u]["duration_span"][0] for u in cdoc["clips"] + cdoc["filtered_clips"]]
            assert abs(cdoc["total_clip_duration"] - sum(durations)) < 1e-6
        assert not (out / layout.chunk_file(rel, vdoc["num_clip_chunks"])).exists()
        assert vdoc["num_total_clips"] == len(passed) + len(filtered)
        own = {u for u, m in metas.items() if m["source_video"] == vdoc["video"]}
        assert own == set(passed) | set(filtered), f"metas and chunk documents disagree for {rel}"
        check_clip_ids(vdoc, {u: metas[u] for u in own})
        summary[rel] = {"passed": len(passed), "filtered": len(filtered), "doc": vdoc}
    # no orphans: every per-clip file belongs to a clip that has a metas/v0 document
    for f in files:
        if f.startswith(("clips/", "filtered_clips/", "previews/", "ce1_embd/")):
            uid = f.split("/")[1].split(".")[0]
            assert uid in metas, f"{f} belongs to no clip (stale file?)"
    for f in files:
        if f.startswith("ce1_embd/"):
            arr = pickle.loads((out / f).read_bytes())
            assert arr.ndim == 2 and arr.shape[0] == 1
        if f.startswith("ce1_embd_parquet/"):
            table = pq.read_table(io.BytesIO((out / f).read_bytes()))
            assert table.column_names == ["id", "embedding"]
    return summary
