"""The clip writer: one video's layout files written whole, in order, replacing what its last run wrote.

``core.layout`` decides *what* a video's files are; this module decides how they replace the
previous run's files:

- **What the video owned before** comes from its previous documents (``processed_videos``, the
  chunk documents, and each listed clip's ``metas/v0`` document) and from the journal of a write
  that was interrupted. All of it is untrusted: only canonical clip ids that this video's own
  source and spans produce are turned into paths (:func:`verified_clip_id`), so a tampered
  document can never name a file outside the output, another video's file, or a whole folder.
- **Names it derives** (``processed_videos/<rel>.json``, the chunk documents, every clip's files)
  pass the readers' component check (``resolve_under``) before anything is written, and spilled
  bytes are moved only as regular files of the video's work folder or of the output
  (``WorkArea.bytes_problem``): the result it is handed comes from the work area, untrusted too.
- **Temporary files** are found by name from what this write and the previous one touch
  (``temp_files.temp_name_for``), never by listing a shared folder: the storage calls per video do
  not depend on how many other videos the output holds.
- **Order:** clips and previews (moved from the work area, not copied), metas, embeddings,
  parquet; then the files the video no longer produces are removed; then the chunk documents
  and last ``processed_videos``, so a video document only describes files that exist. A journal
  in the work area lists old and new files while a write is under way, so a write killed at any
  point is completed (and its leftovers removed) by the next one, whatever its settings.
- **One writer per video:** a lock in the work area (``core.locks``: removed when released, a stop
  honoured while waiting); a second run writing the same video waits for the first (up to
  ``LOCK_WAIT_S``), then writes over it (the last complete write wins).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from . import layout, storage, temp_files
from .documents import CLIP_ID_RE, MAX_CHUNKS, chunk_clip_ids, is_index
from .layout_read import CHUNK_GAP, is_video_clip_id, read_json, verified_span, windows_of
from .model import SpilledBytes, VideoResult
from .work import WorkArea

log = logging.getLogger(__name__)

LOCK_WAIT_S = 600.0
# Directory groups in write order (``layout.LAYOUT``'s order, one group per asset); the documents
# (chunks, then the video) come after stale removal.
_DOCUMENTS = (layout.PROCESSED_CLIP_CHUNKS, layout.PROCESSED_VIDEOS)
FILE_GROUPS = tuple(asset.directories for asset in layout.LAYOUT if asset.name not in _DOCUMENTS)
DOCUMENT_GROUPS = tuple(asset.directories for asset in layout.LAYOUT if asset.name in _DOCUMENTS)


class VideoBusy(RuntimeError):
    """Another live run is writing this video and did not finish within ``LOCK_WAIT_S``."""


@dataclass
class Owned:
    """What a previous write of one video left under the output, and what was refused.

    ``clips``: clip id -> ``(start_frame, end_frame, windows)`` of each clip verified as this
    video's; ``files``: every file (relative to the output) those clips and documents name."""

    files: set[str] = field(default_factory=set)
    clips: dict[str, tuple[int, int, tuple[tuple[int, int], ...]]] = field(default_factory=dict)
    chunks: int = 0
    problems: list[str] = field(default_factory=list)

    def add_clip(self, uid: str, start_frame: int, end_frame: int, windows: tuple[tuple[int, int], ...]) -> None:
        self.clips[uid] = (start_frame, end_frame, windows)
        self.files |= layout.clip_paths(uid, windows)


@dataclass
class WriteReport:
    """What one video's write did, per layout directory."""

    files: dict[str, int] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)
    removed: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def add(self, directory: str, size: int) -> None:
        self.files[directory] = self.files.get(directory, 0) + 1
        self.bytes[directory] = self.bytes.get(directory, 0) + size


# ---------------------------------------------------------------------------------------------
# What the video owned before (untrusted documents)


def previous_files(output_path: str, result: VideoResult, work: WorkArea) -> Owned:
    """What the last (possibly interrupted) write of this video left under the output.

    A claimed chunk count is bounded by the chunk documents that exist: they are probed in order,
    and after ``CHUNK_GAP`` missing in a row no more are, whatever a document says (a tampered
    ``num_clip_chunks`` of 100,000 costs a few probes, not 100,000)."""
    owned = Owned()
    rel, source = result.rel_path, result.source_video
    doc = read_json(storage.resolve_under(output_path, layout.video_file(rel)))
    if doc is not None:
        owned.files.add(layout.video_file(rel))
    num_chunks = 0
    if isinstance(doc, dict):
        if doc.get("video") != source:
            owned.problems.append(f"{layout.video_file(rel)} describes another video; its chunk count was not used")
        else:
            n = doc.get("num_clip_chunks")
            num_chunks = n if is_index(n) and n <= MAX_CHUNKS else 0
    elif doc is ValueError:
        owned.problems.append(f"{layout.video_file(rel)} is not JSON")
    # the journal of an interrupted write: the clips (with frames and windows) it was writing
    journal = read_json(work.journal_url(source))
    if isinstance(journal, dict) and journal.get("video") == source:
        entries = journal.get("clips")
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, list) and len(entry) == 4 and is_video_clip_id(entry[0], source, entry[1], entry[2]):
                owned.add_clip(entry[0], entry[1], entry[2], windows_of(entry[3]))
        n = journal.get("chunks")
        if is_index(n) and n <= MAX_CHUNKS:
            num_chunks = max(num_chunks, n)
    listed: list[Any] = []
    i = missing = 0
    while i < MAX_CHUNKS:  # chunk documents past num_clip_chunks: a run killed between the two
        rel_chunk = layout.chunk_file(rel, i)
        chunk = read_json(storage.resolve_under(output_path, rel_chunk))
        missing = missing + 1 if chunk is None else 0
        if chunk is None and (i >= num_chunks or missing >= CHUNK_GAP):
            if i < num_chunks:
                owned.problems.append(f"previous documents claim {num_chunks} chunks; {CHUNK_GAP} chunk documents "
                                      f"are missing in a row from {i + 1 - CHUNK_GAP}: no more were looked for")
            break
        if chunk is not None:
            owned.files.add(rel_chunk)
        if isinstance(chunk, dict) and chunk.get("video") == source:
            listed += [uid for uid, _ in chunk_clip_ids(chunk)]
        elif chunk is not None:
            owned.problems.append(f"{rel_chunk} is not a chunk document of this video; its clip list was not used")
        i += 1
    owned.chunks = i
    owned.files |= {layout.parquet_file(source, n) for n in range(owned.chunks)}
    refused: list[str] = []
    for uid in dict.fromkeys(listed):  # first-seen order, no repeats
        if not isinstance(uid, str) or not CLIP_ID_RE.match(uid):
            refused.append(repr(uid)[:80])
            continue
        meta = read_json(storage.join(output_path, layout.meta_path(uid)))
        frames = verified_span(uid, source, meta)
        if frames is not None:
            owned.add_clip(uid, *frames, windows_of(meta.get("windows")))
        elif uid not in owned.clips:
            refused.append(uid)
    if refused:
        owned.problems.append(f"previous documents list {len(refused)} clip id(s) that are not this video's "
                              f"(nothing of them removed): {', '.join(refused[:5])}"
                              f"{' ...' if len(refused) > 5 else ''}")
    return owned


# ---------------------------------------------------------------------------------------------
# Writing


def check_names(output_path: str, result: VideoResult, new: Iterable[str]) -> None:
    """Every name a write derives passes the readers' component check (``resolve_under``) before
    anything is written: the video's ``rel_path`` (its documents' names) and each file's name,
    and each clip is the video's own (its id is made from the video's source). ``ValueError``."""
    storage.resolve_under(output_path, result.rel_path)
    for rel in new:
        storage.resolve_under(output_path, rel)
    for clip in result.clips:
        if clip.source_video != result.source_video:
            raise ValueError(f"clip {clip.uuid} of {result.rel_path} names another source video; nothing written")


def _put(output_path: str, rel: str, data: bytes | SpilledBytes,
         bytes_problem: Callable[[str], str | None]) -> int:
    """Write (or move, for bytes kept in the work area) one file whole onto its real name. Spilled
    bytes are moved only from where ``bytes_problem`` finds nothing wrong (``WorkArea.bytes_problem``:
    a regular file of the video's work folder or of the output)."""
    target = storage.resolve_under(output_path, rel)
    if isinstance(data, SpilledBytes):
        where = data.locate()
        if where is None:
            raise FileNotFoundError(f"{rel}: its bytes are gone from {data.path} and from the layout: "
                                    "materialize video_clips for this video again")
        problem = bytes_problem(where)
        if problem:
            raise ValueError(f"{rel}: its bytes were not taken from {storage.redact(where)} ({problem}): "
                             "materialize video_clips for this video again")
        if where != target:
            storage.move(where, target)
        return data.size
    storage.write_bytes_atomic(target, data, temp_name=temp_files.temp_name_for(target))
    return len(data)


def _run_all(pool: ThreadPoolExecutor, fn: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
    """``fn`` over ``items`` on the pool; every item runs, then the first error (if any) is raised."""
    futures = [pool.submit(fn, item) for item in items]
    errors = [e for f in futures if (e := f.exception()) is not None]
    if errors:
        raise errors[0]
    return [f.result() for f in futures]


def write_video(
    result: VideoResult,
    files: layout.VideoFiles,
    output_path: str,
    work: WorkArea,
    *,
    remove_stale: bool = True,
    max_workers: int = 6,
    lock_wait_s: float = LOCK_WAIT_S,
) -> WriteReport:
    """Write one video's files (``files``: ``core.layout.video_files``) and remove the files its
    previous write produced that this one does not. Raises on a storage error (the caller records
    it for this video; nothing partial is left under a real name)."""
    report = WriteReport()
    new: dict[str, bytes | SpilledBytes] = {rel: data for d in files.files.values() for rel, data in d.items()}
    check_names(output_path, result, new)

    def put(item: tuple[str, bytes | SpilledBytes]) -> int:
        return _put(output_path, *item, lambda url: work.bytes_problem(result.source_video, url))

    with work.writer_lock(result.source_video, timeout_s=lock_wait_s) as held:
        if not held:
            raise VideoBusy(f"another run has been writing {result.rel_path} for over {lock_wait_s:.0f} s; "
                            "not written (re-materialize it once that run ends)")
        previous = previous_files(output_path, result, work)
        report.problems += previous.problems
        stale = sorted(previous.files - set(new)) if remove_stale else []
        num_chunks = len(files.files[layout.PROCESSED_CLIP_CHUNKS])
        clips = {str(c.uuid): (c.span.start_frame, c.span.end_frame,
                               tuple((w.start_frame, w.end_frame) for w in c.windows))
                 for c in result.clips}
        journal = {**previous.clips, **clips}
        storage.write_bytes_atomic(work.journal_url(result.source_video), json.dumps({
            "video": result.source_video, "chunks": max(num_chunks, previous.chunks),
            "clips": [[uid, a, b, [list(w) for w in ws]] for uid, (a, b, ws) in sorted(journal.items())]}).encode())
        temp_files.remove_temp_leftovers(storage.join(output_path, rel) for rel in sorted(set(new) | previous.files))
        with ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="writer") as pool:
            for group in FILE_GROUPS:
                items = [(rel, data) for d in group for rel, data in sorted(files.files[d].items())]
                for (rel, _), size in zip(items, _run_all(pool, put, items), strict=True):
                    report.add(layout.directory_of(rel), size)
            if stale:
                storage.remove_files([storage.join(output_path, rel) for rel in stale],
                                     prune_empty_dirs_under=storage.join(output_path, layout.PREVIEWS))
                for rel in stale:
                    d = layout.directory_of(rel)
                    report.removed[d] = report.removed.get(d, 0) + 1
            for group in DOCUMENT_GROUPS:
                items = [(rel, data) for d in group for rel, data in sorted(files.files[d].items())]
                for (rel, _), size in zip(items, _run_all(pool, put, items), strict=True):
                    report.add(layout.directory_of(rel), size)
        storage.remove_files([work.journal_url(result.source_video)])
        work.remove_bytes(result)
    return report


def clip_stats(result: VideoResult) -> dict[str, Any]:
    """The reference's per-video clip statistics (what ``log_stats`` logs)."""
    passed = [c for c in result.clips if c.passed]
    durations = [c.duration_s for c in result.clips]
    return {
        "num_clips_passed": len(passed),
        "num_clips_filtered_by_motion": sum(1 for c in result.clips if c.filtered_by == "motion"),
        "num_clips_filtered_by_aesthetic": sum(1 for c in result.clips if c.filtered_by == "aesthetic"),
        "num_clips_transcoded": sum(1 for c in result.clips if c.encoded),
        "num_clips_with_embeddings": sum(1 for c in passed if c.embedding is not None),
        "num_clips_with_caption": sum(1 for c in result.clips if any(w.captions for w in c.windows)),
        "num_clips_with_webp": sum(1 for c in passed if any(w.preview for w in c.windows)),
        "total_clip_duration": round(sum(durations), 3),
        "max_clip_duration": round(max(durations, default=0.0), 3),
    }


def write_failure_document(result: VideoResult, failure: tuple[str, str], output_path: str, work: WorkArea,
                           pipeline: dict[str, Any], *, lock_wait_s: float = LOCK_WAIT_S) -> bool:
    """Record a failed video in its ``processed_videos`` document (``errors`` / ``error_details``),
    unless a good document of an earlier run is there: a transient failure never overwrites a
    good output. Nothing else of the video is touched. Returns whether the document was written."""
    storage.resolve_under(output_path, result.rel_path)  # refuses absolute, URL-like and dotted paths
    url = storage.resolve_under(output_path, layout.video_file(result.rel_path))
    with work.writer_lock(result.source_video, timeout_s=lock_wait_s) as held:
        if not held:
            return False
        previous = read_json(url)
        if isinstance(previous, dict) and previous.get("video") == result.source_video and not previous.get("errors"):
            return False
        key, message = failure
        failed = VideoResult(result.source_video, result.rel_path, result.metadata,
                             errors={**result.errors, key: message})
        storage.write_bytes_atomic(url, layout.dumps(layout.video_doc(failed, 0, pipeline)).encode(),
                                   temp_name=temp_files.temp_name_for(url))
    return True
