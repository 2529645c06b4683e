"""WebDataset shards of the selected clips, rebuilt per shard group.

Here: the build (which groups changed, their shards rewritten, stale ones removed) and the index
that records each group's digest, and ``verify_shards``, which re-reads what was written. Where a
clip goes is :mod:`.shard_plan`; the tar format :mod:`.shard_tar`; the Energon metadata, which
another reader defines, :mod:`.energon`.

Layout under the destination (default ``<output>/webdataset/<name>/``)::

    <split>/[<bucket>/]g<group>-<seq>.tar   samples <uuid>.json, .mp4, .npy, .txt (members contiguous)
    index.json                              shards with sample counts and sizes, per-group digests
    .nv-meta/                               Megatron-Energon's metadata (``energon.py``)

Each video belongs to one shard group (a hash of its relative path, the key its documents are
stored under) and one split (another hash of it, so no video is in both). A group's shards are
rewritten only when a digest of its videos' documents and the settings changes, so adding or
re-processing one video rewrites its group's shards and no others. Shards are written whole and
byte-identically for the same input (:mod:`.shard_tar`).

A group is kept only when its shards on disk are the ones the index lists (size and SHA-256 read
back), so a re-run with the same settings rebuilds a deleted, truncated or altered shard. Runs on
one destination take turns (:func:`shard_lock`, held from reading the old index to writing the
new one, and by ``package shards`` through energon prepare), so two runs with different settings
at once leave the index of the last, listing exactly the shards on disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core import locks, storage, temp_files
from ..core.documents import is_canonical_uuid
from ..core.layout_read import VideoLayout, load_embeddings, read_video_layout
from .clip_trust import UntrustedClip
from .manifest import manifest_table, row_digest
from .shard_plan import (
    ASPECTS,
    BUCKET_BY,
    DEFAULT_MAX_SHARD_BYTES,
    DEFAULT_MAX_SHARD_SAMPLES,
    SPLITS,
    PlannedClip,
    Selection,
    ShardSettings,
    bucket_of,
    group_digest,
    plan_video,
    shard_group,
    split_of,
)
from .shard_tar import TAR_END, ShardInfo, ShardWriter, npy_bytes, padded_size, sample_members

WEBDATASET_DIR = "webdataset"
INDEX_FILE = "index.json"
INDEX_FORMAT = "curation-assets/webdataset/1"
_SHARD_RE = re.compile(r"^(train|val)/(?:([A-Za-z0-9][A-Za-z0-9._+-]{0,63})/)?g(\d{4})-(\d{5})\.tar$")
_ENERGON_IDX = ".idx"  # energon writes <shard>.tar.idx next to each shard
LOCK_FILE = ".package-shards.lock"
#: How long a run waits for another run on the same destination before giving up.
LOCK_WAIT_S = 6 * 3600.0
_READ_BLOCK = 8 << 20
log = logging.getLogger(__name__)
_held = threading.local()


# ---------------------------------------------------------------------------------------------
# One run at a time per destination


def lock_url(dest: str) -> str:
    """The lock of a destination: a file in it when local; for an object store, whose puts cannot
    lock, a local file named by a hash of the URL (runs on other machines are not serialised)."""
    if storage.is_local(dest):
        return storage.join(storage.normalize_url(dest), LOCK_FILE)
    name = hashlib.sha256(storage.normalize_url(dest).encode()).hexdigest()[:32]
    return os.path.join(tempfile.gettempdir(), "curation-assets-locks", f"{name}.lock")


@contextlib.contextmanager
def shard_lock(dest: str, timeout_s: float = LOCK_WAIT_S, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the destination's lock (``core.locks``: released however the holder ends, the file
    removed); re-entrant within a thread, so a caller may hold it around :func:`build_shards` and
    what follows. ``on_wait`` is called once when another run holds it. Raises
    :class:`storage.StorageError` when another run holds it past ``timeout_s``."""
    url = lock_url(dest)
    held: set[str] = _held.__dict__.setdefault("urls", set())
    if url in held:
        yield
        return
    with locks.held(url, timeout_s=0) as free:
        if free:
            held.add(url)
            try:
                yield
            finally:
                held.discard(url)
            return
    log.info("another package run is writing %s; waiting for it", storage.redact(dest))
    if on_wait is not None:
        on_wait()
    with locks.held(url, timeout_s=timeout_s) as got:
        if not got:
            raise storage.StorageError(f"another package run has been writing {storage.redact(dest)} for over "
                                       f"{timeout_s:.0f} s ({url} is locked)")
        held.add(url)
        try:
            yield
        finally:
            held.discard(url)


# ---------------------------------------------------------------------------------------------
# Writing one group


def _write_group(dest: str, group: int, items: list[PlannedClip], settings: ShardSettings,
                 work_dir: str | None, skipped: dict[str, int], problems: list[str]) -> list[ShardInfo]:
    """Every shard of one group: items ordered by split, bucket, video, span; a shard closes at the
    byte or sample cap (a single sample larger than the byte cap gets a shard of its own)."""
    items = sorted(items, key=lambda p: (p.split, p.bucket or "", p.order))
    embeddings: dict[str, np.ndarray] = {}
    for video in {id(p.video): p.video for p in items}.values():
        if video.parquet_urls:
            try:
                embeddings.update(load_embeddings(video))
            except Exception as exc:  # noqa: BLE001 - an unreadable parquet is this video's problem
                problems.append(f"{video.rel_path}: embeddings unreadable: {storage.redact(exc)}")
    shards: list[ShardInfo] = []
    by_place: dict[tuple[str, str | None], list[PlannedClip]] = {}
    for p in items:
        by_place.setdefault((p.split, p.bucket), []).append(p)
    for (split, bucket), place_items in by_place.items():
        writer: ShardWriter | None = None
        try:
            for p in place_items:
                try:
                    if p.clip.parquet_url and p.clip.uuid not in embeddings:
                        raise storage.StorageError("its embedding could not be read")
                    members = sample_members(p, embeddings.get(p.clip.uuid) if p.clip.parquet_url else None)
                except (storage.StorageError, UntrustedClip) as exc:  # gone, or not the file its documents
                    reason = "untrusted" if isinstance(exc, UntrustedClip) else "unreadable"  # describe
                    skipped[reason] = skipped.get(reason, 0) + 1
                    problems.append(f"{p.video.rel_path}: clip {p.clip.uuid} not packaged: {exc}")
                    continue
                size = sum(padded_size(len(data)) for _, data in members)
                if writer is not None and (writer.samples >= settings.max_shard_samples
                                           or writer.bytes + size + TAR_END > settings.max_shard_bytes):
                    shards.append(writer.close())
                    writer = None
                if writer is None:
                    seq = len([s for s in shards if (s.split, s.bucket) == (split, bucket)])
                    name = f"{split}/{bucket + '/' if bucket else ''}g{group:04d}-{seq:05d}.tar"
                    writer = ShardWriter(dest, name, split, bucket, group, work_dir)
                writer.add(members, size)
            if writer is not None:
                shards.append(writer.close())
                writer = None
        finally:
            if writer is not None:  # an error mid-shard: nothing is published under its name
                writer.abort()
    return shards


# ---------------------------------------------------------------------------------------------
# The index


def default_dest(output_path: str, name: str = "default") -> str:
    return storage.join(output_path, WEBDATASET_DIR, name)


def read_index(dest: str) -> dict[str, Any] | None:
    """The previous index, or None when missing or not one of ours (then every group is rebuilt).
    Shard names in it are checked before they are used."""
    try:
        doc = json.loads(storage.read_bytes(storage.join(dest, INDEX_FILE)))
    except (storage.StorageNotFoundError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != INDEX_FORMAT or not isinstance(doc.get("groups"), dict):
        return None
    shards = doc.get("shards")
    if not isinstance(shards, list) or not all(isinstance(s, dict) and isinstance(s.get("name"), str)
                                               and _SHARD_RE.match(s["name"]) for s in shards):
        return None
    return doc


def _shard_names_in(dest: str) -> list[str]:
    """Shard files (and energon's ``.tar.idx``) under ``dest`` whose names this module writes."""
    out = []
    for url in storage.list_files(dest):
        rel = storage.relative_to(dest, url)
        base = rel[: -len(_ENERGON_IDX)] if rel.endswith(".tar" + _ENERGON_IDX) else rel
        if _SHARD_RE.match(base):
            out.append(rel)
    return out


def _group_of_name(rel: str) -> int:
    base = rel[: -len(_ENERGON_IDX)] if rel.endswith(_ENERGON_IDX) else rel
    m = _SHARD_RE.match(base)
    assert m is not None
    return int(m.group(3))


@dataclass
class BuildResult:
    dest: str
    index: dict[str, Any]
    rebuilt_groups: list[int]
    written: list[str]
    removed: list[str]
    problems: list[str]
    repaired: list[str] = field(default_factory=list)  # kept shards found missing or altered: groups rebuilt


def build_shards(videos: Iterable[VideoLayout], dest: str, settings: ShardSettings | None = None, *,
                 force: bool = False, work_dir: str | None = None) -> BuildResult:
    """Write the shards of every group whose input changed (all with ``force``), remove the stale
    shards of those groups, then write the index.

    ``videos``: every video of the dataset (a video left out is a video removed). A video's
    ``problems`` are reported in the result; its valid clips are still used.
    """
    present = [v for v in videos if v.exists]
    problems = [f"{v.rel_path}: {p}" for v in present for p in v.problems]
    by_rel = {v.rel_path: v for v in present}
    digests = {}
    for v in present:
        rows = manifest_table(v, embeddings={})
        if rows.num_rows:
            digests[v.rel_path] = row_digest(rows)
    return _build(digests, lambda rels: [by_rel[r] for r in rels], dest, settings or ShardSettings(), force, work_dir,
                  problems)


def build_shards_from_manifest(output_path: str, digests: Mapping[str, str], dest: str,
                               settings: ShardSettings | None = None, *, sources: Mapping[str, str] | None = None,
                               force: bool = False, work_dir: str | None = None) -> BuildResult:
    """:func:`build_shards` planned from the clip manifest: ``digests`` is each video's fragment
    digest (rel path -> :func:`manifest.row_digest`, e.g. ``manifest.fragment_digests(...).digests``),
    ``sources`` the source each video must describe (its documents are refused otherwise).

    Which groups changed is decided from the digests alone (fragment footers), so an unchanged
    dataset reads no video document; the layout documents of a video are read only when its group
    is rewritten. A video whose layout no longer matches its fragment is reported (its shards
    follow the layout).
    """
    sources = sources or {}
    problems: list[str] = []

    def load(group_rels: list[str]) -> list[VideoLayout]:
        out = []
        for rel in group_rels:
            try:
                video = read_video_layout(output_path, rel, sources.get(rel))
            except (ValueError, storage.StorageError) as exc:
                problems.append(f"{rel}: its layout could not be read ({storage.redact(exc)}); its clips are left out")
                continue
            if not video.exists:
                problems.append(f"{rel}: in the manifest, but its processed_videos document is gone or describes "
                                "another source; its clips are left out")
                continue
            if row_digest(manifest_table(video, embeddings={})) != digests[rel]:
                problems.append(f"{rel}: its manifest fragment is older than its layout (materialise its manifest "
                                "again); its shards were written from the layout")
            problems.extend(f"{rel}: {p}" for p in video.problems)
            out.append(video)
        return out

    return _build(dict(digests), load, dest, settings or ShardSettings(), force, work_dir, problems)


def _build(video_digests: Mapping[str, str], load: Callable[[list[str]], list[VideoLayout]], dest: str,
           settings: ShardSettings, force: bool, work_dir: str | None, problems: list[str]) -> BuildResult:
    """The shards of the videos ``video_digests`` names (rel path -> :func:`manifest.row_digest`);
    ``load`` gives the layouts of a group's videos when that group must be rewritten. One run at a
    time per destination: the index read, the shards and the index written are one run's."""
    with shard_lock(dest):
        return _build_locked(video_digests, load, dest, settings, force, work_dir, problems)


def _build_locked(video_digests: Mapping[str, str], load: Callable[[list[str]], list[VideoLayout]], dest: str,
                  settings: ShardSettings, force: bool, work_dir: str | None, problems: list[str]) -> BuildResult:
    settings_hash = settings.settings_hash()
    previous = read_index(dest)
    same_settings = previous is not None and previous.get("settings_hash") == settings_hash
    storage.cleanup_temp_files(dest, min_age_s=temp_files.TEMP_MAX_AGE_S)  # killed writers' leftovers

    by_group: dict[int, list[str]] = {}
    for rel in video_digests:
        by_group.setdefault(shard_group(rel, settings.num_groups), []).append(rel)

    kept_index = previous if same_settings and previous is not None else {}
    old_groups = kept_index.get("groups", {})
    groups_out: dict[str, dict[str, Any]] = {}
    shards_out: list[dict[str, Any]] = []
    rebuilt: list[int] = []
    written: list[str] = []
    old_shards = {s["name"]: s for s in kept_index.get("shards", [])}
    digests = {group: group_digest({rel: video_digests[rel] for rel in by_group[group]}, settings_hash)
               for group in by_group}
    candidates = {} if force else {g: k for g in by_group
                                   if (k := _kept_group(old_groups.get(f"{g:04d}"), digests[g], old_shards))}
    damaged = _damaged_shards(dest, [s for _, shards_of in candidates.values() for s in shards_of])
    repaired = [f"{name}: {why}; its group is rebuilt" for name, why in sorted(damaged.items())]
    for line in repaired:
        log.warning("%s", line)
    for group in sorted(by_group):
        members = sorted(by_group[group])
        digest = digests[group]
        key = f"{group:04d}"
        kept = candidates.get(group)
        if kept is not None and any(s["name"] in damaged for s in kept[1]):
            kept = None
        if kept is not None:
            groups_out[key], group_shards = kept
            shards_out.extend(group_shards)
            continue
        skipped: dict[str, int] = {}
        items = [p for v in load(members) for p in plan_video(v, settings, skipped)]
        infos = _write_group(dest, group, items, settings, work_dir, skipped, problems)
        rebuilt.append(group)
        written.extend(i.name for i in infos)
        shards_out.extend(i.as_dict() for i in infos)
        groups_out[key] = {"digest": digest, "videos": len(members), "shards": [i.name for i in infos],
                           "samples": sum(i.samples for i in infos), "bytes": sum(i.bytes for i in infos),
                           "skipped": dict(sorted(skipped.items()))}

    keep = {s["name"] for s in shards_out}
    stale = []
    for rel in _shard_names_in(dest):
        base = rel[: -len(_ENERGON_IDX)] if rel.endswith(_ENERGON_IDX) else rel
        if base not in keep or (rel.endswith(_ENERGON_IDX) and _group_of_name(rel) in rebuilt):
            stale.append(rel)
    storage.remove_files([storage.join(dest, rel) for rel in stale], prune_empty_dirs_under=dest)

    shards_out.sort(key=lambda s: s["name"])
    index = {
        "format": INDEX_FORMAT,
        "name": settings.name,
        "settings": settings.record(),
        "settings_hash": settings_hash,
        "groups": dict(sorted(groups_out.items())),
        "shards": shards_out,
        "splits": {split: {"shards": sum(1 for s in shards_out if s["split"] == split),
                           "samples": sum(s["samples"] for s in shards_out if s["split"] == split),
                           "bytes": sum(s["bytes"] for s in shards_out if s["split"] == split)}
                   for split in SPLITS},
        "skipped": _sum_skipped(groups_out.values()),
    }
    if index != previous:  # unchanged: left as it is (a new dedup threshold in split.yaml rewrites nothing here)
        storage.write_bytes_atomic(storage.join(dest, INDEX_FILE), (json.dumps(index, indent=2) + "\n").encode())
    return BuildResult(dest=dest, index=index, rebuilt_groups=rebuilt, written=written, removed=stale,
                       problems=problems, repaired=repaired)


def _kept_group(old: Any, digest: str, old_shards: dict[str, dict[str, Any]]):
    """The previous entry of a group whose digest is unchanged and whose shards are all still
    listed, or None (then it is rebuilt)."""
    if not isinstance(old, dict) or old.get("digest") != digest or not isinstance(old.get("shards"), list):
        return None
    shards = [old_shards.get(name) for name in old["shards"]]
    if any(s is None for s in shards):
        return None
    return old, shards


def _shard_damage(dest: str, shard: Mapping[str, Any]) -> str | None:
    """Why a shard on disk is not the one the index lists (missing, size, SHA-256), None when it is."""
    url = storage.join(dest, shard["name"])
    info = storage.file_info(url)
    if info is None:
        return "missing"
    if info.size != shard.get("bytes"):
        return f"{info.size} bytes, the index says {shard.get('bytes')}"
    digest = hashlib.sha256()
    try:
        with storage.open_input(url) as f:
            while block := f.read(_READ_BLOCK):
                digest.update(block)
    except storage.StorageError as exc:
        return f"unreadable ({exc})"
    if digest.hexdigest() != shard.get("sha256"):
        return "its SHA-256 differs from the index"
    return None


def _damaged_shards(dest: str, shards: list[Mapping[str, Any]], max_workers: int = 4) -> dict[str, str]:
    """The shards of ``shards`` that are missing or altered on disk, with why (read in parallel)."""
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(shards) or 1))) as pool:
        found = list(pool.map(lambda s: _shard_damage(dest, s), shards))
    return {s["name"]: why for s, why in zip(shards, found, strict=True) if why is not None}


def _sum_skipped(groups: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for g in groups:
        for reason, n in (g.get("skipped") or {}).items():
            if isinstance(n, int):
                total[reason] = total.get(reason, 0) + n
    return dict(sorted(total.items()))


def verify_shards(dest: str, index: Mapping[str, Any]) -> list[str]:
    """Problems found re-reading every shard the index lists: size, hash, and that members come
    in contiguous samples named ``<uuid>.<ext>`` (the asset check "every shard readable")."""
    problems = []
    for shard in index.get("shards", []):
        name = shard["name"]
        try:
            data = storage.read_bytes(storage.join(dest, name))
        except storage.StorageError as exc:
            problems.append(f"{name}: {exc}")
            continue
        if len(data) != shard["bytes"] or hashlib.sha256(data).hexdigest() != shard["sha256"]:
            problems.append(f"{name}: size or hash differs from the index")
            continue
        keys: list[str] = []
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
                for member in tar:
                    key, _, _ext = member.name.partition(".")
                    if not is_canonical_uuid(key):
                        problems.append(f"{name}: member {member.name!r} is not <uuid>.<ext>")
                    if not keys or keys[-1] != key:
                        keys.append(key)
        except tarfile.TarError as exc:
            problems.append(f"{name}: not a readable tar ({exc})")
            continue
        if len(keys) != len(set(keys)):
            problems.append(f"{name}: a sample's members are not contiguous")
        if len(keys) != shard["samples"]:
            problems.append(f"{name}: {len(keys)} samples, the index says {shard['samples']}")
    return problems


__all__ = [  # with the names of shard_plan and shard_tar that callers know from here
    "ASPECTS",
    "BUCKET_BY",
    "BuildResult",
    "DEFAULT_MAX_SHARD_BYTES",
    "DEFAULT_MAX_SHARD_SAMPLES",
    "INDEX_FILE",
    "LOCK_FILE",
    "Selection",
    "ShardInfo",
    "ShardSettings",
    "SPLITS",
    "WEBDATASET_DIR",
    "bucket_of",
    "build_shards",
    "build_shards_from_manifest",
    "default_dest",
    "npy_bytes",
    "lock_url",
    "read_index",
    "shard_lock",
    "shard_group",
    "split_of",
    "verify_shards",
]
