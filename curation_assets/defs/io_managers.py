"""IO managers that handle a *range* of `videos` partitions per run.

Dagster's stock ``UPathIOManager`` refuses more than one partition per output. Ours take and
return ``{partition_key: value}`` for every key a run covers:

- ``ClipLayoutIOManager`` implements the clip-writer layout under ``output_path`` on any fsspec
  filesystem: whole-file writes, and removal of the files of clips a re-run no longer produces.
- ``WorkIOManager`` keeps intermediate values (transcoded clips between steps) as one pickle per
  video under a work folder.
"""


import hashlib
import json
import logging
import os
import pickle
import posixpath
import shutil
from collections.abc import Iterable
from typing import Any, ClassVar

import dagster as dg

from ..core import layout, storage
from ..core.model import as_bytes
from .resources import CurationSettings

log = logging.getLogger(__name__)

# Asset key -> the layout directories it owns.
ASSET_DIRECTORIES: dict[str, tuple[str, ...]] = {
    "clips": (layout.CLIPS, layout.FILTERED_CLIPS),
    "previews": (layout.PREVIEWS,),
    "metas/v0": (layout.METAS,),
    "ce1_embd": (layout.CE1_EMBD,),
    "ce1_embd_parquet": (layout.CE1_EMBD_PARQUET,),
    "processed_clip_chunks": (layout.PROCESSED_CLIP_CHUNKS,),
    "processed_videos": (layout.PROCESSED_VIDEOS,),
}
# Writing order: the video and chunk documents last, so they only describe files that exist.
WRITE_ORDER = ("clips", "previews", "metas/v0", "ce1_embd", "ce1_embd_parquet", "processed_clip_chunks", "processed_videos")
JSON_DIRECTORIES = {layout.METAS, layout.PROCESSED_VIDEOS, layout.PROCESSED_CLIP_CHUNKS}


def asset_name(asset_key: dg.AssetKey) -> str:
    return "/".join(asset_key.path)


def _key_partitions(context: dg.OutputContext | dg.InputContext) -> list[str]:
    return list(context.asset_partition_keys) if context.has_asset_partitions else []


class ClipLayoutIOManager(dg.ConfigurableIOManager):
    """The clip-writer layout under ``settings.output_path`` (local path or fsspec URL).

    A value is ``{partition_key: {relative path: bytes}}`` for the directories of one asset;
    loading returns ``{partition_key: {relative path: parsed JSON or URL}}``.
    """

    settings: CurationSettings

    @property
    def output_path(self) -> str:
        return storage.normalize_url(self.settings.output_path)

    def url(self, rel: str) -> str:
        return storage.join(self.output_path, rel)

    # -- the previous run's files of one video ---------------------------------------------

    def previous_files(self, rel_path: str, source_video: str) -> dict[str, set[str]]:
        """Files the last run of this video wrote, read back from its video and chunk documents.

        The chunk count comes from the video document; chunk files past it (left by a run killed
        between the two) are found by probing the next indices.
        """
        num_chunks = 0
        video_url = self.url(layout.video_file(rel_path))
        if storage.exists(video_url):
            try:
                num_chunks = int(json.loads(storage.read_bytes(video_url)).get("num_clip_chunks") or 0)
            except (ValueError, TypeError):
                num_chunks = 0
        chunk_docs: list[dict[str, Any]] = []
        chunk_files: set[str] = set()
        i = 0
        while True:
            rel = layout.chunk_file(rel_path, i)
            url = self.url(rel)
            if not storage.exists(url):
                if i >= num_chunks:
                    break
            else:
                chunk_files.add(rel)
                try:
                    chunk_docs.append(json.loads(storage.read_bytes(url)))
                except ValueError:
                    pass
            i += 1
        owned = layout.owned_files_from_chunk_docs(chunk_docs, source_video, max(num_chunks, i))
        owned[layout.PROCESSED_CLIP_CHUNKS] |= chunk_files
        return owned

    # -- leftovers of killed runs -----------------------------------------------------------

    # Directories without sub-folders: swept once per step (non-recursively).
    FLAT_DIRECTORIES: ClassVar[tuple[str, ...]] = (layout.CLIPS, layout.FILTERED_CLIPS, layout.METAS, layout.CE1_EMBD, layout.CE1_EMBD_PARQUET)

    def cleanup_temp_files(self, rel_path: str | None = None, previous: dict[str, set[str]] | None = None,
                           files: Iterable[str] = ()) -> int:
        """Remove temporary files that a killed run left next to the files it was writing.

        Without ``rel_path``: the flat directories (clips, metas, ...). With it: the folders only
        that video writes to (its ``processed_*`` folders and the preview folders of its clips, old
        and new). Listing the whole output tree per run would not scale to millions of previews.

        Only local (and other non-object-store) outputs have temporary files; object stores get
        whole-object puts. Files of live writers are kept (see ``storage.cleanup_temp_files``):
        two runs writing into the same output at once is normal (batched runs, the sensor).
        """
        if not storage.is_local(self.output_path):
            return 0
        if rel_path is None:
            folders = set(self.FLAT_DIRECTORIES)
        else:
            folders = {posixpath.dirname(layout.video_file(rel_path)), posixpath.dirname(layout.chunk_file(rel_path, 0))}
            for rel in list((previous or {}).get(layout.PREVIEWS, ())) + [f for f in files if f.startswith(layout.PREVIEWS + "/")]:
                folders.add(posixpath.dirname(rel.rstrip("/")) if not rel.endswith("/") else rel.rstrip("/"))
        removed = 0
        for folder in sorted(folders):
            removed += storage.cleanup_temp_files(self.url(folder), min_age_s=storage.TEMP_MAX_AGE_S, recursive=False)
        return removed

    # -- writing ------------------------------------------------------------------------------

    def write_video(
        self, asset: str, files: dict[str, bytes], previous: dict[str, set[str]] | None, *, remove_stale: bool = True
    ) -> dict[str, Any]:
        """Write one video's files of one asset whole, then remove what the new run no longer makes."""
        total = 0
        for rel, data in sorted(files.items()):
            storage.write_bytes_atomic(self.url(rel), as_bytes(data))  # spilled clips: read one at a time
            total += len(data)
        removed = 0
        if previous is not None and remove_stale:
            stale: list[str] = []
            for directory in ASSET_DIRECTORIES[asset]:
                for rel in previous.get(directory, ()):
                    if rel.endswith("/"):  # a per-clip folder (previews): everything not rewritten
                        stale += [u for u in storage.list_files(self.url(rel)) if self._rel(u) not in files]
                    elif rel not in files:
                        stale.append(self.url(rel))
            existing = [u for u in stale if storage.exists(u)]
            storage.remove_files(existing)
            removed = len(existing)
        return {"files": len(files), "bytes": total, "removed": removed}

    def _rel(self, url: str) -> str:
        return url[len(self.output_path.rstrip("/")) + 1:]

    def handle_output(self, context: dg.OutputContext, obj: dict[str, dict[str, bytes]]) -> None:
        if obj is None:
            return
        asset = asset_name(context.asset_key)
        keys = _key_partitions(context) or list(obj)
        for key in keys:
            if key in obj:
                self.write_video(asset, obj[key], None)

    # -- reading ------------------------------------------------------------------------------

    def load_directory(self, asset: str, rel_paths: Iterable[str] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for directory in ASSET_DIRECTORIES[asset]:
            for url in storage.list_files(self.url(directory)):
                rel = self._rel(url)
                if storage.is_temp_file_name(url):
                    continue
                out[rel] = json.loads(storage.read_bytes(url)) if directory in JSON_DIRECTORIES else url
        return out

    def load_input(self, context: dg.InputContext) -> dict[str, Any]:
        asset = asset_name(context.asset_key)
        docs = self.load_directory(asset)
        keys = _key_partitions(context)
        if not keys:
            return docs
        # Partitioned load: group the documents by the video that owns them.
        from ..partitions import source_url_for_key

        grouped: dict[str, Any] = {}
        for key in keys:
            source = source_url_for_key(self.settings.input_path, key)
            grouped[key] = {rel: doc for rel, doc in docs.items() if isinstance(doc, dict) and doc.get("video", doc.get("source_video")) == source}
        return grouped


class WorkIOManager(dg.ConfigurableIOManager):
    """Intermediate values, one pickle per (asset, video) under ``work_path``."""

    work_path: str = ""

    def _base(self) -> str:
        base = self.work_path or os.path.join(os.environ.get("DAGSTER_HOME", ".dagster_home"), "storage", "curation_assets")
        return storage.normalize_url(base)

    def _url(self, asset_key: dg.AssetKey, partition_key: str) -> str:
        digest = hashlib.sha256(partition_key.encode()).hexdigest()[:32]
        return storage.join(self._base(), *asset_key.path, f"{digest}.pickle")

    def spill_dir(self, asset_key: dg.AssetKey, partition_key: str) -> str | None:
        """A fresh local folder for the clip bytes of one video (``None`` when the work folder is
        not local: the bytes then stay in the pickled value). The previous materialisation's folder
        is removed: its pickle, the only thing that pointed into it, is being replaced."""
        base = self._base()
        if not storage.is_local(base):
            return None
        digest = hashlib.sha256(partition_key.encode()).hexdigest()[:32]
        folder = os.path.join(base, *asset_key.path, f"{digest}.bytes")
        shutil.rmtree(folder, ignore_errors=True)
        return folder

    def handle_output(self, context: dg.OutputContext, obj: dict[str, Any]) -> None:
        if obj is None:
            return
        for key in _key_partitions(context):
            if key in obj:
                storage.write_bytes_atomic(self._url(context.asset_key, key), pickle.dumps(obj[key], protocol=5))

    def load_input(self, context: dg.InputContext) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in _key_partitions(context):
            url = self._url(context.asset_key, key)
            if not storage.exists(url):
                raise dg.Failure(
                    f"No stored value of {asset_name(context.asset_key)} for video partition {key!r}: "
                    "materialize that asset for this video first."
                )
            out[key] = pickle.loads(storage.read_bytes(url))
        return out
