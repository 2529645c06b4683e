"""Removing the outputs of a video whose source was deleted (the upload sensor's opt-in).

What a video owns comes from the writer's own rule (:func:`core.writer.previous_files`): its
``processed_videos`` and chunk documents, every clip id they list that this video's source and
spans produce, and the journal of an interrupted write. Only those verified names under the
output are removed, so nothing outside the output and no other video's file is ever touched,
whatever the documents say.

Order: the video document first (from then on the video no longer counts as written), then the
clips, previews, metas, embeddings and parquet files, then the chunk documents last, since they
are the list of what the video owns: a removal interrupted part-way is finished by the next one.
The video's values and leftovers in the work area go with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import layout, storage
from .model import VideoResult
from .work import WorkArea
from .writer import LOCK_WAIT_S, VideoBusy, previous_files


@dataclass
class RemovalReport:
    """What one video's removal did: files removed per layout directory, and refused ids."""

    removed: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.removed.values())


def remove_video_outputs(output_path: str, rel_path: str, source_video: str, work: WorkArea, *,
                         lock_wait_s: float = LOCK_WAIT_S) -> RemovalReport:
    """Remove every layout file and work-area value of one video (see the module docstring).
    Raises :class:`VideoBusy` when a writer holds the video, a storage error when a removal fails
    (what is left is found again by the next call)."""
    storage.resolve_under(output_path, rel_path)  # refuses absolute, URL-like and dotted paths
    report = RemovalReport()
    with work.writer_lock(source_video, timeout_s=lock_wait_s) as held:
        if not held:
            raise VideoBusy(f"a run is writing {rel_path}; its outputs were not removed")
        owned = previous_files(output_path, VideoResult(source_video, rel_path, None), work)
        report.problems += owned.problems
        # owned names include both clip folders and every possible file of a clip: keep those present
        present = {rel for rel in owned.files if storage.exists(storage.join(output_path, rel))}
        video_doc = layout.video_file(rel_path)
        chunk_docs = sorted(f for f in present if layout.directory_of(f) == layout.PROCESSED_CLIP_CHUNKS)
        files = sorted(present - {video_doc} - set(chunk_docs))
        for group, prune in (([video_doc] if video_doc in present else [], None),
                             (files, storage.join(output_path, layout.PREVIEWS)), (chunk_docs, None)):
            if not group:
                continue
            storage.remove_files([storage.join(output_path, rel) for rel in group], prune_empty_dirs_under=prune)
            for rel in group:
                d = layout.directory_of(rel)
                report.removed[d] = report.removed.get(d, 0) + 1
        # the step values (any settings' digest) and the journal, then the spill folders they
        # referenced and no live transcode holds
        folder = work.video_dir(source_video)
        storage.remove_files([u for u in storage.list_files(folder)
                              if "/bytes/" not in u[len(folder):] and not u.endswith(".lock")])
        work.remove_bytes(VideoResult(source_video, rel_path, None))
    return report


__all__ = ["RemovalReport", "remove_video_outputs"]
