"""The checks of one written video's layout: each rule of the spec that its files must honour,
and for each departure the file and why.

The video's files are found from its own documents (:func:`core.layout_read.read_video_layout`),
never by listing a directory, so a check costs the same whatever else the output holds. The
rules are written from the spec (``clip-writer-layout.md``), not from the writer's code, so a
writer bug shows up here instead of being repeated; the documents' own rules are the one
document schema's (``core.documents``), which holds what the reader let through to the spec.

Each check is about one asset of the layout table (:data:`CHECKS`), so the Dagster layer can
attach it to the asset that owns that directory. A departure the video's own documents explain
(a clip whose ``errors`` say its source ended early, or that its preview could not be made) is
listed as ``explained`` and does not fail the check: the documents already tell the reader.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import documents, layout, storage
from .layout_read import ClipLayout, VideoLayout, load_embedding, read_video_layout
from .media_read import decode_clip, source_times
from .options import settings_digest
from .pipeline import short_clip_tolerance_s
from .timing import is_vfr, span_promise

METAS_MATCH_SPEC = "metas_match_spec"
PARQUET_ROWS_MATCH_CLIPS = "parquet_rows_match_clips"
CLIP_FILES_DECODE = "clip_files_decode"
PREVIEWS_COVER_WINDOWS = "previews_cover_windows"
CHUNK_COUNTS_MATCH_FILES = "chunk_counts_match_files"
VIDEO_DOCUMENT_MATCHES_SPEC = "video_document_matches_spec"

#: Each check and the asset of the layout table (``layout.LAYOUT``) whose files it is about.
CHECKS: dict[str, layout.LayoutAsset] = {name: layout.asset_of_directory(directory) for name, directory in (
    (METAS_MATCH_SPEC, layout.METAS),
    (PARQUET_ROWS_MATCH_CLIPS, layout.CE1_EMBD_PARQUET),
    (CLIP_FILES_DECODE, layout.CLIPS),
    (PREVIEWS_COVER_WINDOWS, layout.PREVIEWS),
    (CHUNK_COUNTS_MATCH_FILES, layout.PROCESSED_CLIP_CHUNKS),
    (VIDEO_DOCUMENT_MATCHES_SPEC, layout.PROCESSED_VIDEOS),
)}
_CHECK_OF_ASSET = {asset.name: name for name, asset in CHECKS.items()}
DESCRIPTIONS: dict[str, str] = {
    METAS_MATCH_SPEC: "every metas/v0 document of the video has the spec's keys, in its order, with its types",
    PARQUET_ROWS_MATCH_CLIPS: "each chunk's parquet has one row per passed clip with an embedding, the same ids and "
                              "vectors as ce1_embd/",
    CLIP_FILES_DECODE: "every clip mp4 exists in the folder its status names, has the recorded size, decodes, and "
                       "its frames and duration match its span",
    PREVIEWS_COVER_WINDOWS: "with previews on, every window of every passed clip has its WebP preview",
    CHUNK_COUNTS_MATCH_FILES: "processed_clip_chunks counts and durations agree with the clips' documents and files",
    VIDEO_DOCUMENT_MATCHES_SPEC: "processed_videos has the spec's keys and types, and its pipeline record's hash "
                                 "matches its settings",
}

# Clip error keys that explain a clip shorter than its span, or a window without a preview.
SHORT_CLIP_ERRORS = ("truncated", "transcode")
PREVIEW_ERRORS = ("preview",)
# A decoded clip may differ from what its span promised (core.timing.span_promise; the source's
# frame times are read once where a clip departs from ``span x framerate``: a variable frame rate)
# by this many source frames, and be shorter by what the pipeline lets pass (short_clip_tolerance_s).
FRAME_TOLERANCE = 1.01


@dataclass(frozen=True)
class Finding:
    """One departure from a rule: the file (relative to the output) and why."""

    file: str
    why: str

    def __str__(self) -> str:
        return f"{self.file}: {self.why}"


@dataclass
class CheckOutcome:
    """One check of one video: what fails it, what the documents explain, how much was looked at."""

    name: str
    findings: list[Finding] = field(default_factory=list)
    explained: list[Finding] = field(default_factory=list)
    checked: int = 0
    note: str | None = None

    @property
    def passed(self) -> bool:
        return not self.findings

    def fail(self, file: str, why: str) -> None:
        self.findings.append(Finding(file, why))

    def summary(self) -> str:
        """One line: the first failing file and why, or what was checked."""
        if self.findings:
            more = f" (and {len(self.findings) - 1} more)" if len(self.findings) > 1 else ""
            return f"{self.findings[0]}{more}"
        text = f"{self.checked} file(s) checked"
        if self.explained:
            text += f"; {len(self.explained)} departure(s) explained by the clips' own errors"
        return text + (f"; {self.note}" if self.note else "")


def _rel(output_path: str, url: str | None) -> str:
    if not url:
        return ""
    try:
        return storage.relative_to(output_path, url)
    except ValueError:
        return url


def _problem_file(problem: str) -> tuple[str, str]:
    """``(file, why)`` of a ``layout_read`` problem (``"<file>: <why>"``; some name no file)."""
    for suffix in (".json: ", ".parquet: "):
        i = problem.find(suffix)
        if i >= 0:
            end = i + len(suffix) - 2
            return problem[:end], problem[end + 2:]
    return "", problem


def _directory_check(file: str) -> str:
    """The check a reader's problem with ``file`` fails: the one about the file's asset (a problem
    naming no file is about the embedding rows; one of no checked asset, the chunk counts)."""
    if not file:
        return PARQUET_ROWS_MATCH_CLIPS
    directory = layout.directory_of(file)
    owner = layout.asset_of_directory(directory).name if directory in layout.ALL_DIRECTORIES else ""
    return _CHECK_OF_ASSET.get(owner, CHUNK_COUNTS_MATCH_FILES)


# ---------------------------------------------------------------------------------------------
# The rules


def check_metas(video: VideoLayout, out: CheckOutcome) -> None:
    settings = video.settings
    captions = tuple(settings.get("caption_models") or ())
    enhanced = tuple(settings.get("enhanced_caption_models") or ())
    for clip in video.clips:
        out.checked += 1
        rel = _rel(video.output_path, clip.meta_url)
        for why in documents.meta_departures(clip.meta, captions, enhanced):
            out.fail(rel, why)


def _span_problems(frames: int, length: float, start: float, end: float, fps: float,
                   times: Sequence[Any] | None) -> list[str]:
    """How a clip of ``frames`` frames lasting ``length`` s departs from what the pipeline promised
    for ``[start, end)`` (:func:`core.timing.span_promise`)."""
    short, span = short_clip_tolerance_s(fps), end - start
    expected, lasts = span_promise(start, end, fps, times)
    problems = []
    # longer: another span's bytes; shorter than the pipeline lets pass: cut short (``truncated``)
    if frames - expected > FRAME_TOLERANCE or expected - frames > FRAME_TOLERANCE + short * fps:
        problems.append(f"{frames} frames, its span [{start:.3f}, {end:.3f}) s holds {expected:.1f}")
    if length - lasts > FRAME_TOLERANCE / fps + 1e-6 or lasts - length > short + FRAME_TOLERANCE / fps + 1e-6:
        problems.append(f"lasts {length:.3f} s, its span {span:.3f} s")
    return problems


def check_clip_files(video: VideoLayout, out: CheckOutcome, *, decode: bool = True,
                     source: str | None = None) -> None:
    """``source``: the video's URL as the run knows it (not the documents'), read once, only when
    a clip departs from ``span x framerate`` (see FRAME_TOLERANCE)."""
    settings = video.settings
    times: list | None = None
    if settings.get("dry_run") is True or settings.get("upload_clips") is False:
        out.note = "clip mp4s are not written (dry_run or upload_clips off)"
        return
    for clip in video.clips:
        meta = clip.meta
        rel = layout.clip_path(clip.uuid, filtered=not clip.passed)
        other_rel = layout.clip_path(clip.uuid, filtered=clip.passed)
        if storage.exists(storage.join(video.output_path, other_rel)):
            out.fail(other_rel, f"a {'passed' if clip.passed else 'filtered'} clip's mp4 is also in "
                                f"{layout.directory_of(other_rel)}/")
        if clip.clip_url is None:  # no bytes for this span (its meta says so): nothing may be there
            if storage.exists(storage.join(video.output_path, rel)):
                out.fail(rel, "present, but its metas/v0 document records no bytes for the clip")
            continue
        out.checked += 1
        info = storage.file_info(clip.clip_url)
        if info is None:
            out.fail(rel, "missing (its metas/v0 document records its bytes)")
            continue
        if info.size != meta.get("num_bytes"):
            out.fail(rel, f"{info.size} bytes, its metas/v0 document records {meta.get('num_bytes')}")
        if not decode:
            continue
        try:
            frames, duration, clip_fps = decode_clip(clip.clip_url)
        except Exception as exc:  # noqa: BLE001 - any decoding error is this file's
            out.fail(rel, f"does not decode: {type(exc).__name__}: {storage.redact(exc)}")
            continue
        start, end = meta["duration_span"]
        fps = meta.get("framerate_source") or meta.get("framerate") or clip_fps
        problems = [] if frames else ["no video frames"]
        if frames and fps:
            length = duration if duration is not None else (frames / clip_fps if clip_fps else frames / fps)
            problems = _span_problems(frames, length, start, end, fps, None)
            if problems and source is not None:
                if times is None:
                    times = source_times(source)
                    if is_vfr(times):
                        out.note = "variable frame rate source: clips compared with the frames their spans hold"
                if times:
                    problems = _span_problems(frames, length, start, end, fps, times)
        if problems:
            finding = Finding(rel, "; ".join(problems))
            errors = meta.get("errors") or []
            (out.explained if any(e in SHORT_CLIP_ERRORS for e in errors) else out.findings).append(finding)


def _preview_presence(video: VideoLayout) -> dict[tuple[str, int, int], str | None]:
    """``(uuid, start, end) -> None`` for each passed clip window whose preview is a WebP file,
    else why not. Empty when previews are off."""
    found: dict[tuple[str, int, int], str | None] = {}
    for clip in video.clips:
        for w in clip.windows:
            if w.preview_url is None:
                continue
            try:
                head = storage.read_bytes(w.preview_url)[:12]
            except FileNotFoundError:
                found[(clip.uuid, w.start_frame, w.end_frame)] = "missing"
                continue
            ok = head[:4] == b"RIFF" and head[8:12] == b"WEBP"
            found[(clip.uuid, w.start_frame, w.end_frame)] = None if ok else "not a WebP file"
    return found


def check_previews(video: VideoLayout, presence: Mapping[tuple[str, int, int], str | None], out: CheckOutcome) -> None:
    settings = video.settings
    if not settings.get("generate_previews") or settings.get("dry_run") is True:
        out.note = "previews are off for this video"
        return
    errors_of = {c.uuid: c.meta.get("errors") or [] for c in video.clips}
    for (uid, s, e), why in sorted(presence.items()):
        out.checked += 1
        if why is None:
            continue
        finding = Finding(layout.preview_path(uid, s, e), why)
        explained = why == "missing" and any(k in PREVIEW_ERRORS for k in errors_of.get(uid, []))
        (out.explained if explained else out.findings).append(finding)


def _read_parquet(url: str) -> pa.Table:
    return pq.read_table(io.BytesIO(storage.read_bytes(url)))


def check_parquet(video: VideoLayout, out: CheckOutcome) -> None:
    if video.settings.get("dry_run") is True:
        out.note = "dry run: no embedding files"
        return
    source = video.source_video or ""
    by_chunk: dict[int, list[ClipLayout]] = {}
    for clip in video.clips:
        by_chunk.setdefault(clip.chunk_index, []).append(clip)
    for chunk in video.chunks:
        index = chunk["clip_chunk_index"]
        rel = layout.parquet_file(source, index)
        url = storage.join(video.output_path, rel)
        count = chunk.get("num_clips_with_embeddings")
        pickles = {}
        for clip in by_chunk.get(index, []):
            if clip.passed:
                pickle_rel = layout.embedding_path(clip.uuid)
                if storage.exists(storage.join(video.output_path, pickle_rel)):
                    pickles[clip.uuid] = pickle_rel
        if not count:
            if storage.exists(url):
                out.fail(rel, "present, but its chunk document counts no clips with embeddings")
            for pickle_rel in pickles.values():
                out.fail(pickle_rel, f"present, but chunk {index}'s document counts no clips with embeddings")
            continue
        out.checked += 1
        try:
            table = _read_parquet(url)
        except FileNotFoundError:
            out.fail(rel, f"missing (chunk {index} counts {count} clip(s) with embeddings)")
            continue
        except Exception as exc:  # noqa: BLE001 - any parquet error is this file's
            out.fail(rel, f"not a readable parquet file ({type(exc).__name__}: {storage.redact(exc)})")
            continue
        if table.column_names != ["id", "embedding"]:
            out.fail(rel, f"columns {table.column_names}, the spec's are ['id', 'embedding']")
            continue
        if table.schema.field("id").type != pa.string() or not pa.types.is_list(table.schema.field("embedding").type):
            out.fail(rel, f"column types {table.schema.types}: id must be a string, embedding a list of floats")
            continue
        ids = table.column("id").to_pylist()
        if len(ids) != len(set(ids)):
            out.fail(rel, "an id appears on more than one row")
        if len(ids) != count:
            out.fail(rel, f"{len(ids)} row(s), its chunk document counts {count} clip(s) with embeddings")
        missing = sorted(set(pickles) - set(ids))
        extra = sorted(set(ids) - set(pickles))
        if missing:
            out.fail(rel, f"no row for passed clip(s) with an embedding: {', '.join(missing[:5])}")
        if extra:
            bad = [str(i)[:60] for i in extra if not documents.is_canonical_uuid(i)]
            out.fail(rel, f"rows for ids that are not passed clips of chunk {index} with an embedding: "
                          f"{', '.join((bad or extra)[:5])}")
        vectors = dict(zip(ids, table.column("embedding").to_numpy(zero_copy_only=False), strict=True))
        clips = {c.uuid: c for c in by_chunk.get(index, [])}
        for uid in sorted(set(pickles) & set(ids)):
            try:
                stored = load_embedding(_with_embedding(clips[uid], storage.join(video.output_path, pickles[uid])))
            except Exception as exc:  # noqa: BLE001 - this pickle's problem
                out.fail(pickles[uid], f"not a numpy array of shape (1, D): {type(exc).__name__}: {exc}")
                continue
            row = np.asarray(vectors[uid], dtype=np.float32)
            if row.shape != stored.shape or not np.array_equal(row, stored):
                out.fail(rel, f"the row of {uid} differs from {pickles[uid]} "
                              f"(shapes {row.shape} and {stored.shape})")


def _with_embedding(clip: ClipLayout, url: str) -> ClipLayout:
    from dataclasses import replace

    return replace(clip, embedding_url=url)


def _caption_count(clips: Sequence[ClipLayout], models: tuple[str, ...]) -> int:
    return sum(1 for c in clips if any(m in dict(w.captions) for w in c.windows for m in models))


def check_chunk_counts(video: VideoLayout, presence: Mapping[tuple[str, int, int], str | None],
                       out: CheckOutcome) -> None:
    doc = video.video or {}
    settings = video.settings
    dry_run = settings.get("dry_run") is True
    captions = tuple(settings.get("caption_models") or ())
    by_chunk: dict[int, list[ClipLayout]] = {}
    for clip in video.clips:
        by_chunk.setdefault(clip.chunk_index, []).append(clip)
    total = 0
    for chunk in video.chunks:
        index = chunk["clip_chunk_index"]
        rel = layout.chunk_file(video.rel_path, index)
        out.checked += 1
        passed_ids, filtered_ids = (chunk.get(key, []) for key, _ in documents.CHUNK_CLIP_LISTS)
        total += len(passed_ids) + len(filtered_ids)
        counts: list[tuple[str, Any, Any]] = [("num_clips_passed", chunk.get("num_clips_passed"), len(passed_ids))]
        filtered_total = ((chunk.get("num_clips_filtered_by_motion") or 0)
                          + (chunk.get("num_clips_filtered_by_aesthetic") or 0))
        if filtered_total != len(filtered_ids):
            out.fail(rel, f"num_clips_filtered_by_motion + num_clips_filtered_by_aesthetic = {filtered_total}, "
                          f"filtered_clips lists {len(filtered_ids)}")
        clips = by_chunk.get(index, [])
        if dry_run:
            pass  # no metas: the clips' own documents are not there to count from
        elif len(clips) != len(passed_ids) + len(filtered_ids):
            out.note = f"chunk {index}: not every clip's metas/v0 document could be read (see {METAS_MATCH_SPEC})"
        else:
            passed = [c for c in clips if c.passed]
            counts += [
                ("num_clips_transcoded", chunk.get("num_clips_transcoded"),
                 sum(1 for c in clips if documents.is_positive_int(c.meta.get("num_bytes")))),
                ("num_clips_with_embeddings", chunk.get("num_clips_with_embeddings"),
                 sum(1 for c in passed if c.parquet_url)),
                ("num_clips_with_webp", chunk.get("num_clips_with_webp"),
                 sum(1 for c in passed if any(presence.get((c.uuid, w.start_frame, w.end_frame), "x") is None
                                              for w in c.windows))),
                ("num_clips_with_caption", chunk.get("num_clips_with_caption"), _caption_count(clips, captions)),
            ]
            spans = [c.meta["duration_span"][1] - c.meta["duration_span"][0] for c in clips]
            for key, expected in (("total_clip_duration", float(sum(spans))),
                                  ("max_clip_duration", float(max(spans, default=0.0)))):
                value = chunk.get(key)
                if not documents.is_number(value) or abs(value - expected) > 1e-6 * max(1.0, expected):
                    out.fail(rel, f"{key} {value!r}, the clips' spans give {expected:.6f}")
            windows = chunk.get("all_windows")
            if isinstance(windows, dict) and set(windows) != {c.uuid for c in passed}:
                out.fail(rel, "all_windows does not have exactly the passed clips as keys")
        for key, value, expected in counts:
            if value != expected:
                out.fail(rel, f"{key} {value!r}, the files give {expected}")
    n = doc.get("num_clip_chunks")
    video_rel = layout.video_file(video.rel_path)
    if documents.is_count(n):
        if storage.exists(storage.join(video.output_path, layout.chunk_file(video.rel_path, n))):
            out.fail(layout.chunk_file(video.rel_path, n),
                     f"a chunk document past num_clip_chunks ({n}) of {video_rel}")
        if len(video.chunks) == n and doc.get("num_total_clips") != total:
            out.fail(video_rel, f"num_total_clips {doc.get('num_total_clips')!r}, its chunk documents list {total}")


def check_video_document(video: VideoLayout, out: CheckOutcome) -> None:
    doc = video.video
    rel = layout.video_file(video.rel_path)
    if doc is None:
        return  # unreadable: reported by the reader
    out.checked += 1
    for why in documents.video_departures(doc):
        out.fail(rel, why)
    pipeline = doc.get("pipeline")
    if pipeline is not None:
        settings = pipeline.get("settings") if isinstance(pipeline, dict) else None
        if not (isinstance(pipeline, dict) and isinstance(pipeline.get("version"), str) and isinstance(settings, dict)):
            out.fail(rel, "pipeline is not {package, version, settings, settings_hash}")
        elif pipeline.get("settings_hash") != settings_digest(settings):
            out.fail(rel, f"pipeline settings_hash {pipeline.get('settings_hash')!r} is not the hash of its settings")


# ---------------------------------------------------------------------------------------------


def check_video(output_path: str, rel_path: str, source_video: str | None = None, *,
                decode: bool = True) -> dict[str, CheckOutcome]:
    """Every check (:data:`CHECKS`) of one video's written layout. ``source_video``:
    the URL the video is known by (its documents must describe it). ``decode``: decode every clip
    (the costly part; off, clips are only found and sized)."""
    outcomes = {name: CheckOutcome(name) for name in CHECKS}
    video = read_video_layout(output_path, rel_path, source_video)
    if not video.exists:
        why = next((p.partition(": ")[2] for p in video.problems), "missing: the video has not been written")
        for outcome in outcomes.values():
            outcome.fail(layout.video_file(rel_path), why)
        return outcomes
    dry_run = video.settings.get("dry_run") is True
    for problem in video.problems:
        file, why = _problem_file(problem)
        if dry_run and file.startswith(layout.METAS + "/") and why == "missing":
            continue  # a dry run writes no metas
        outcomes[_directory_check(file)].fail(file or layout.CE1_EMBD_PARQUET, why)
    presence = _preview_presence(video) if not dry_run else {}
    check_metas(video, outcomes[METAS_MATCH_SPEC])
    check_parquet(video, outcomes[PARQUET_ROWS_MATCH_CLIPS])
    check_clip_files(video, outcomes[CLIP_FILES_DECODE], decode=decode, source=source_video)
    check_previews(video, presence, outcomes[PREVIEWS_COVER_WINDOWS])
    check_chunk_counts(video, presence, outcomes[CHUNK_COUNTS_MATCH_FILES])
    check_video_document(video, outcomes[VIDEO_DOCUMENT_MATCHES_SPEC])
    return outcomes


__all__ = [
    "CHECKS",
    "CHUNK_COUNTS_MATCH_FILES",
    "CLIP_FILES_DECODE",
    "DESCRIPTIONS",
    "METAS_MATCH_SPEC",
    "PARQUET_ROWS_MATCH_CLIPS",
    "PREVIEWS_COVER_WINDOWS",
    "VIDEO_DOCUMENT_MATCHES_SPEC",
    "CheckOutcome",
    "Finding",
    "check_video",
]
