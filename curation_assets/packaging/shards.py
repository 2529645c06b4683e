"""WebDataset shards of the selected clips, rebuilt per shard group.

Why one module over the project's 500-line guide: the group and split hashes, the tar writer and
the index that records each group's digest are one format: the index is only meaningful with the
hashes that placed the videos, and ``verify_shards`` checks exactly what the writer wrote. The
Energon metadata, which another reader defines, is :mod:`.energon`.

Layout under the destination (default ``<output>/webdataset/<name>/``)::

    <split>/[<bucket>/]g<group>-<seq>.tar   samples <uuid>.json, .mp4, .npy, .txt (members contiguous)
    index.json                              shards with sample counts and sizes, per-group digests
    .nv-meta/                               Megatron-Energon's metadata (``energon.py``)

Each video belongs to one shard group (a hash of its relative path, the key its documents are
stored under) and one split (another hash of it, so no video is in both). A group's shards are
rewritten only when a digest of its videos' documents and the settings changes, so adding or
re-processing one video rewrites its group's shards and no others. Shards are written whole and
byte-identically for the same input: fixed member order, mtime 0, owner 0/0 with empty names,
mode 0o644, ustar format.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import re
import tarfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..core import layout, storage, temp_files
from ..core.layout_read import ClipLayout, VideoLayout, is_canonical_uuid, load_embeddings, read_video_layout
from .clip_trust import UntrustedClip, read_clip
from .manifest import first_caption, manifest_table, row_digest
from .publish import open_for_publish

WEBDATASET_DIR = "webdataset"
INDEX_FILE = "index.json"
INDEX_FORMAT = "curation-assets/webdataset/1"
SPLITS = ("train", "val")
BUCKET_BY = ("none", "resolution", "aspect", "length")
#: Named aspect ratios clips are bucketed to (nearest in log ratio).
ASPECTS: dict[str, float] = {"9x16": 9 / 16, "3x4": 3 / 4, "1x1": 1.0, "4x3": 4 / 3, "16x9": 16 / 9, "21x9": 21 / 9}
DEFAULT_MAX_SHARD_BYTES = 1_000_000_000
DEFAULT_MAX_SHARD_SAMPLES = 10_000
TAR_BLOCK = 512
TAR_END = 2 * TAR_BLOCK  # two zero blocks; tarfile then pads to its record size
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SHARD_RE = re.compile(r"^(train|val)/(?:([A-Za-z0-9][A-Za-z0-9._+-]{0,63})/)?g(\d{4})-(\d{5})\.tar$")
_ENERGON_IDX = ".idx"  # energon writes <shard>.tar.idx next to each shard


@dataclass(frozen=True)
class Selection:
    """Which clips go into the shards. By default: passed clips with a valid meta and mp4 bytes."""

    include_filtered: bool = False
    include_invalid: bool = False
    min_aesthetic_score: float | None = None
    min_motion_global_mean: float | None = None
    min_motion_per_patch_min_256: float | None = None
    require_caption: bool = False
    require_embedding: bool = False
    exclude: frozenset[str] = frozenset()  # clip uuids, e.g. semantic duplicates

    def skip_reason(self, clip: ClipLayout) -> str | None:
        """Why ``clip`` is left out, or None when it is selected."""
        meta = clip.meta
        if clip.clip_url is None:
            return "no_clip_bytes"
        if not clip.passed and not self.include_filtered:
            return "filtered"
        if meta.get("valid") is not True and not self.include_invalid:
            return "invalid"
        if clip.uuid in self.exclude:
            return "excluded"
        if self.min_aesthetic_score is not None:
            score = meta.get("aesthetic_score")
            if score is None or score < self.min_aesthetic_score:
                return "aesthetic_score"
        motion = meta.get("motion_score") or {}
        if self.min_motion_global_mean is not None and (
                motion.get("global_mean") is None or motion["global_mean"] < self.min_motion_global_mean):
            return "motion"
        if self.min_motion_per_patch_min_256 is not None and (
                motion.get("per_patch_min_256") is None
                or motion["per_patch_min_256"] < self.min_motion_per_patch_min_256):
            return "motion"
        if self.require_caption and first_caption(clip) is None:
            return "no_caption"
        if self.require_embedding and clip.parquet_url is None:
            return "no_embedding"
        return None

    def record(self) -> dict[str, Any]:
        out = asdict(self)
        out["exclude"] = (hashlib.sha256("\n".join(sorted(self.exclude)).encode()).hexdigest()[:16]
                          if self.exclude else None)
        return out


@dataclass(frozen=True)
class ShardSettings:
    """How shards are cut. ``num_groups`` fixes which videos share shards: changing it rebuilds all."""

    name: str = "default"
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES
    max_shard_samples: int = DEFAULT_MAX_SHARD_SAMPLES
    num_groups: int = 16
    val_fraction: float = 0.0
    bucket_by: str = "none"
    length_edges_s: tuple[float, ...] = (2.0, 5.0, 10.0, 20.0)
    selection: Selection = field(default_factory=Selection)

    def __post_init__(self) -> None:
        problems = []
        if not _NAME_RE.match(self.name):
            problems.append(f"name {self.name!r} (letters, digits, '.', '_', '-'; up to 64)")
        if self.max_shard_bytes < 64 * 1024:
            problems.append(f"max_shard_bytes={self.max_shard_bytes} (at least 65536)")
        if self.max_shard_samples < 1:
            problems.append(f"max_shard_samples={self.max_shard_samples} (at least 1)")
        if not 1 <= self.num_groups <= 9999:
            problems.append(f"num_groups={self.num_groups} (1 to 9999)")
        if not 0.0 <= self.val_fraction < 1.0:
            problems.append(f"val_fraction={self.val_fraction} (0 <= f < 1)")
        if self.bucket_by not in BUCKET_BY:
            problems.append(f"bucket_by={self.bucket_by!r} (one of {', '.join(BUCKET_BY)})")
        edges = tuple(self.length_edges_s)
        if not edges or any(e <= 0 for e in edges) or list(edges) != sorted(set(edges)):
            problems.append(f"length_edges_s={edges} (increasing positive seconds)")
        if problems:
            raise ValueError("invalid shard settings: " + "; ".join(problems))

    def record(self) -> dict[str, Any]:
        """What shapes the shards; its hash is in the index."""
        out = asdict(self)
        out["length_edges_s"] = list(self.length_edges_s)
        out["selection"] = self.selection.record()
        return out

    def settings_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.record(), sort_keys=True).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Where a clip goes


def _unit_hash(tag: str, rel_path: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{tag}\0{rel_path}".encode()).digest()[:8], "big")


def shard_group(rel_path: str, num_groups: int) -> int:
    """The shard group of a video (stable: a hash of its relative path)."""
    return _unit_hash("group", rel_path) % num_groups


def split_of(rel_path: str, val_fraction: float) -> str:
    """``train`` or ``val`` for a whole video, deterministically (a hash of its relative path)."""
    return "val" if _unit_hash("split", rel_path) / 2**64 < val_fraction else "train"


def bucket_of(meta: Mapping[str, Any], settings: ShardSettings) -> str | None:
    """The bucket a clip goes to (None without bucketing), from its probed size and its span."""
    if settings.bucket_by == "none":
        return None
    if settings.bucket_by == "length":
        start, end = meta["duration_span"]
        length = float(end) - float(start)
        edges = settings.length_edges_s
        lo = 0.0
        for edge in edges:
            if length < edge:
                return f"{_fmt(lo)}-{_fmt(edge)}s"
            lo = edge
        return f"{_fmt(edges[-1])}s+"
    w, h = meta.get("width"), meta.get("height")
    if not w or not h:
        return "unknown"
    if settings.bucket_by == "resolution":
        return f"{w}x{h}"
    ratio = math.log(w / h)
    return min(ASPECTS, key=lambda name: (abs(math.log(ASPECTS[name]) - ratio), name))


def _fmt(x: float) -> str:
    return f"{x:g}".replace(".", "p")


# ---------------------------------------------------------------------------------------------
# Deterministic tar members


def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def _padded(size: int) -> int:
    return TAR_BLOCK + -(-size // TAR_BLOCK) * TAR_BLOCK


def npy_bytes(vector: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(vector, dtype=np.float32).reshape(-1), allow_pickle=False)
    return buf.getvalue()


@dataclass(frozen=True)
class _Planned:
    """A selected clip and where it goes; its bytes are read when its shard is written."""

    clip: ClipLayout
    video: VideoLayout
    split: str
    bucket: str | None
    order: tuple


def _plan_video(video: VideoLayout, settings: ShardSettings, skipped: dict[str, int]) -> list[_Planned]:
    split = split_of(video.rel_path, settings.val_fraction)
    out = []
    for clip in video.clips:
        reason = settings.selection.skip_reason(clip)
        if reason:
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        start = float(clip.meta["duration_span"][0])
        out.append(_Planned(clip, video, split, bucket_of(clip.meta, settings), (video.rel_path, start, clip.uuid)))
    return out


def _group_digest(video_digests: Mapping[str, str], settings_hash: str) -> str:
    """What a group's shards are made from: its videos' manifest rows (:func:`manifest.row_digest`,
    the same whether read from the layout or from the manifest) and the settings. Videos without
    a row leave no trace, so a failed video and a missing one are alike."""
    h = hashlib.sha256(settings_hash.encode())
    for rel in sorted(video_digests):
        h.update(json.dumps([rel, video_digests[rel]]).encode())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# Writing one group


@dataclass
class ShardInfo:
    name: str
    split: str
    bucket: str | None
    group: int
    samples: int
    bytes: int
    sha256: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sample_members(item: _Planned, embedding: np.ndarray | None) -> list[tuple[str, bytes]]:
    """The members of one sample in their fixed order: json, mp4, npy, txt."""
    uid = item.clip.uuid
    members = [(f"{uid}.json", layout.dumps(dict(item.clip.meta)).encode()),
               (f"{uid}.mp4", read_clip(item.video.output_path, item.clip))]
    if embedding is not None:
        members.append((f"{uid}.npy", npy_bytes(embedding)))
    caption = first_caption(item.clip)
    if caption is not None:
        members.append((f"{uid}.txt", caption.encode("utf-8")))
    return members


def _write_group(dest: str, group: int, items: list[_Planned], settings: ShardSettings,
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
    by_place: dict[tuple[str, str | None], list[_Planned]] = {}
    for p in items:
        by_place.setdefault((p.split, p.bucket), []).append(p)
    for (split, bucket), place_items in by_place.items():
        writer: _ShardWriter | None = None
        try:
            for p in place_items:
                try:
                    if p.clip.parquet_url and p.clip.uuid not in embeddings:
                        raise storage.StorageError("its embedding could not be read")
                    members = _sample_members(p, embeddings.get(p.clip.uuid) if p.clip.parquet_url else None)
                except (storage.StorageError, UntrustedClip) as exc:  # gone, or not the file its documents
                    reason = "untrusted" if isinstance(exc, UntrustedClip) else "unreadable"  # describe
                    skipped[reason] = skipped.get(reason, 0) + 1
                    problems.append(f"{p.video.rel_path}: clip {p.clip.uuid} not packaged: {exc}")
                    continue
                size = sum(_padded(len(data)) for _, data in members)
                if writer is not None and (writer.samples >= settings.max_shard_samples
                                           or writer.bytes + size + TAR_END > settings.max_shard_bytes):
                    shards.append(writer.close())
                    writer = None
                if writer is None:
                    seq = len([s for s in shards if (s.split, s.bucket) == (split, bucket)])
                    name = f"{split}/{bucket + '/' if bucket else ''}g{group:04d}-{seq:05d}.tar"
                    writer = _ShardWriter(dest, name, split, bucket, group, work_dir)
                writer.add(members, size)
            if writer is not None:
                shards.append(writer.close())
                writer = None
        finally:
            if writer is not None:  # an error mid-shard: nothing is published under its name
                writer.abort()
    return shards


class _ShardWriter:
    """One shard being written: a sample at a time, published whole by :meth:`close`."""

    def __init__(self, dest: str, name: str, split: str, bucket: str | None, group: int,
                 work_dir: str | None) -> None:
        self.name, self.split, self.bucket, self.group = name, split, bucket, group
        self.samples = 0
        self.bytes = 0  # tar blocks so far (headers + padded data)
        self._stack = contextlib.ExitStack()
        f = self._stack.enter_context(open_for_publish(storage.join(dest, name), work_dir))
        self._digest = hashlib.sha256()
        self._out = _HashingWriter(f, self._digest)
        self._tar = tarfile.open(fileobj=self._out, mode="w", format=tarfile.USTAR_FORMAT)  # noqa: SIM115 - closed by close()

    def add(self, members: list[tuple[str, bytes]], size: int) -> None:
        for member_name, data in members:
            self._tar.addfile(_member(member_name, len(data)), io.BytesIO(data))
        self.samples += 1
        self.bytes += size

    def close(self) -> ShardInfo:
        self._tar.close()
        self._stack.close()  # publishes
        return ShardInfo(name=self.name, split=self.split, bucket=self.bucket, group=self.group,
                         samples=self.samples, bytes=self._out.size, sha256=self._digest.hexdigest())

    def abort(self) -> None:
        self._stack.__exit__(RuntimeError, RuntimeError("shard not finished"), None)


class _HashingWriter(io.RawIOBase):
    """A write-only file that hashes and counts what passes through to ``f``."""

    def __init__(self, f, digest) -> None:
        self.f, self.digest, self.size = f, digest, 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.size

    def write(self, data) -> int:
        self.f.write(data)
        self.digest.update(data)
        self.size += len(data)
        return len(data)


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


def build_shards(videos: Iterable[VideoLayout], dest: str, settings: ShardSettings = ShardSettings(), *,
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
    return _build(digests, lambda rels: [by_rel[r] for r in rels], dest, settings, force, work_dir, problems)


def build_shards_from_manifest(output_path: str, digests: Mapping[str, str], dest: str,
                               settings: ShardSettings = ShardSettings(), *, sources: Mapping[str, str] | None = None,
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

    return _build(dict(digests), load, dest, settings, force, work_dir, problems)


def _build(video_digests: Mapping[str, str], load: Callable[[list[str]], list[VideoLayout]], dest: str,
           settings: ShardSettings, force: bool, work_dir: str | None, problems: list[str]) -> BuildResult:
    """The shards of the videos ``video_digests`` names (rel path -> :func:`manifest.row_digest`);
    ``load`` gives the layouts of a group's videos when that group must be rewritten."""
    settings_hash = settings.settings_hash()
    previous = read_index(dest)
    same_settings = previous is not None and previous.get("settings_hash") == settings_hash
    storage.cleanup_temp_files(dest, min_age_s=temp_files.TEMP_MAX_AGE_S)  # killed writers' leftovers

    by_group: dict[int, list[str]] = {}
    for rel in video_digests:
        by_group.setdefault(shard_group(rel, settings.num_groups), []).append(rel)

    old_groups = previous.get("groups", {}) if same_settings and previous is not None else {}
    groups_out: dict[str, dict[str, Any]] = {}
    shards_out: list[dict[str, Any]] = []
    rebuilt: list[int] = []
    written: list[str] = []
    old_shards = {s["name"]: s for s in previous.get("shards", [])} if same_settings and previous is not None else {}
    for group in sorted(by_group):
        members = sorted(by_group[group])
        digest = _group_digest({rel: video_digests[rel] for rel in members}, settings_hash)
        key = f"{group:04d}"
        old = old_groups.get(key)
        kept = _kept_group(old, digest, old_shards) if not force else None
        if kept is not None:
            groups_out[key], group_shards = kept
            shards_out.extend(group_shards)
            continue
        skipped: dict[str, int] = {}
        items = [p for v in load(members) for p in _plan_video(v, settings, skipped)]
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
    storage.write_bytes_atomic(storage.join(dest, INDEX_FILE), (json.dumps(index, indent=2) + "\n").encode())
    return BuildResult(dest=dest, index=index, rebuilt_groups=rebuilt, written=written, removed=stale,
                       problems=problems)


def _kept_group(old: Any, digest: str, old_shards: dict[str, dict[str, Any]]):
    """The previous entry of a group whose digest is unchanged and whose shards are all still
    listed, or None (then it is rebuilt)."""
    if not isinstance(old, dict) or old.get("digest") != digest or not isinstance(old.get("shards"), list):
        return None
    shards = [old_shards.get(name) for name in old["shards"]]
    if any(s is None for s in shards):
        return None
    return old, shards


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


__all__ = [
    "ASPECTS",
    "BUCKET_BY",
    "BuildResult",
    "DEFAULT_MAX_SHARD_BYTES",
    "DEFAULT_MAX_SHARD_SAMPLES",
    "INDEX_FILE",
    "Selection",
    "ShardInfo",
    "ShardSettings",
    "bucket_of",
    "build_shards",
    "build_shards_from_manifest",
    "default_dest",
    "read_index",
    "shard_group",
    "split_of",
    "verify_shards",
]
