"""The tar side of the WebDataset shards: deterministic members, one shard written a sample at a
time and published whole, and the members of one sample.

Shards are byte-identical for the same input: fixed member order, mtime 0, owner 0/0 with empty
names, mode 0o644, ustar format; a shard's size and hash are counted as it is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import tarfile
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..core import layout, storage
from .clip_trust import read_clip
from .publish import open_for_publish
from .sample import sample_json, sample_json_bytes
from .shard_plan import PlannedClip

TAR_BLOCK = 512
TAR_END = 2 * TAR_BLOCK  # two zero blocks; tarfile then pads to its record size


def member_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def padded_size(size: int) -> int:
    return TAR_BLOCK + -(-size // TAR_BLOCK) * TAR_BLOCK


def npy_bytes(vector: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(vector, dtype=np.float32).reshape(-1), allow_pickle=False)
    return buf.getvalue()


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


def sample_members(item: PlannedClip, embedding: np.ndarray | None) -> list[tuple[str, bytes]]:
    """The members of one sample in :data:`sample.MEMBER_ORDER`: the sample JSON (one schema for
    every sample, :mod:`.sample`), the mp4, the embedding when there is one, the JSON's caption
    when there is one."""
    uid = item.clip.uuid
    doc = sample_json(item.video, item.clip)
    members = [(uid + layout.DOCUMENT_SUFFIX, sample_json_bytes(doc)),
               (uid + layout.CLIP_SUFFIX, read_clip(item.video.output_path, item.clip))]
    if embedding is not None:
        members.append((f"{uid}.npy", npy_bytes(embedding)))
    if doc["caption"] is not None:
        members.append((f"{uid}.txt", doc["caption"].encode("utf-8")))
    return members


class ShardWriter:
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
        # open across add() calls: close() closes it before publishing, abort() abandons it with the publish
        self._tar = tarfile.open(fileobj=self._out, mode="w", format=tarfile.USTAR_FORMAT)  # noqa: SIM115

    def add(self, members: list[tuple[str, bytes]], size: int) -> None:
        for member_name, data in members:
            self._tar.addfile(member_info(member_name, len(data)), io.BytesIO(data))
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
