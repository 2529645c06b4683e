"""Megatron-Energon metadata for the shards, made by megatron-energon's own ``energon prepare``.

``.nv-meta/`` (``dataset.yaml``, ``split.yaml``, ``.info.json``, ``index.sqlite``, ``index.uuid``)
and each shard's ``.tar.idx`` are written by energon's prepare command, run non-interactively
in this process, never by hand. The dataset type is ``CrudeWebdataset``: samples arrive as dicts
of the parts (``mp4``, ``json``, ``txt``, ``npy``) for a training task encoder's cooker. Split
parts are the ``train/`` and ``val/`` shard folders. Afterwards the sample counts energon found are
compared with the shard index (energon logs a shard it cannot read and goes on).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Mapping
from typing import Any

from ..core import storage
from .shard_plan import SPLITS

log = logging.getLogger(__name__)

META_DIR = ".nv-meta"
SAMPLE_TYPE = "CrudeWebdataset"
#: What ``energon prepare`` leaves in ``.nv-meta/`` (besides each shard's ``.tar.idx``).
META_FILES = ("dataset.yaml", "split.yaml", ".info.json", "index.sqlite", "index.uuid")
TAR_INDEX_SUFFIX = ".idx"


class EnergonError(RuntimeError):
    """energon prepare failed, or what it indexed differs from the shard index."""


def prepare_energon(dest: str, index: Mapping[str, Any], *, workers: int = 2) -> dict[str, Any]:
    """Run ``energon prepare`` on the shard folder ``dest`` and check its result against ``index``.

    Returns ``{"splits": {split: [shard names]}, "shard_counts": {...}, "log": str}``. Local
    folders only: energon reaches object stores through its own Multi-Storage Client profiles,
    which this project does not configure.
    """
    if not storage.is_local(dest):
        raise EnergonError(
            f"Energon metadata is prepared for local shard folders only (got {storage.redact(dest)!r}): "
            "write the shards to a local or mounted folder, or run `energon prepare` there with an MSC profile"
        )
    try:
        from megatron.energon.tools.prepare import command  # imports torch: only when asked for
    except ImportError as exc:
        raise EnergonError(f"megatron-energon is not installed ({exc}): "
                           "pip install 'curation-assets[energon]'") from None

    _, path = storage.get_fs(dest)
    splits = [s for s in SPLITS if index["splits"][s]["shards"]]
    if not splits:
        raise EnergonError("no shards to prepare (no clip was selected)")
    args = [path, "--non-interactive", "--force-overwrite", "--no-progress", "--num-workers", str(max(1, workers)),
            "--sample-type", SAMPLE_TYPE]
    for split in splits:
        args += ["--split-parts", f"{split}:{split}/.*"]
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            command.main(args=args, prog_name="energon prepare", standalone_mode=False)
    except SystemExit as exc:  # energon exits on duplicate keys
        raise EnergonError(f"energon prepare exited ({exc.code}): {out.getvalue()[-2000:]}") from None
    except Exception as exc:  # noqa: BLE001 - click usage errors and the like
        raise EnergonError(f"energon prepare failed: {type(exc).__name__}: {exc}\n{out.getvalue()[-2000:]}") from None
    info = json.loads(storage.read_bytes(storage.join(dest, META_DIR, ".info.json")))
    counts = info.get("shard_counts", {})
    expected = {s["name"]: s["samples"] for s in index["shards"]}
    if counts != expected:
        missing = sorted(set(expected) - set(counts)) or sorted(k for k in expected if counts.get(k) != expected[k])
        raise EnergonError(f"energon indexed {sum(counts.values())} samples in {len(counts)} shards, the shard index "
                           f"lists {sum(expected.values())} in {len(expected)} (e.g. {missing[:3]})")
    log.info("energon prepare: %s", out.getvalue().strip().splitlines()[-1:] or "done")
    return {"splits": {s: sorted(n for n in expected if n.startswith(f"{s}/")) for s in splits},
            "shard_counts": counts, "log": out.getvalue()}


def energon_problems(dest: str, index: Mapping[str, Any]) -> list[str]:
    """Why the Energon metadata under ``dest`` does not describe the shards of ``index`` (the asset
    check "Energon metadata present and consistent"), each naming the file; [] when it does.

    Checked: every file of :data:`META_FILES` exists; ``dataset.yaml`` names :data:`SAMPLE_TYPE`;
    ``.info.json`` counts exactly the index's shards and samples; ``split.yaml``'s parts expand to
    each split's shards; each shard's ``.tar.idx`` holds one offset per sample plus the end; the
    sample index (``index.sqlite``) holds every sample once.
    """
    if not storage.is_local(dest):
        return [f"{storage.redact(dest)}: Energon metadata is prepared for local shard folders only"]
    try:
        import braceexpand  # megatron-energon's own dependencies
        import yaml
    except ImportError as exc:
        return [f"megatron-energon is not installed ({exc}): pip install 'curation-assets[energon]'"]

    meta = storage.join(dest, META_DIR)
    problems: list[str] = []
    texts: dict[str, bytes] = {}
    for name in META_FILES:
        try:
            texts[name] = storage.read_bytes(storage.join(meta, name))
        except storage.StorageError as exc:
            problems.append(f"{META_DIR}/{name}: {'missing' if isinstance(exc, FileNotFoundError) else exc}")
    expected = {s["name"]: s["samples"] for s in index.get("shards", [])}
    by_split = {split: sorted(n for n in expected if n.startswith(f"{split}/")) for split in SPLITS}
    if "dataset.yaml" in texts:
        doc = _yaml(yaml, texts["dataset.yaml"])
        if not isinstance(doc, dict) or doc.get("__class__") != SAMPLE_TYPE:
            problems.append(f"{META_DIR}/dataset.yaml: sample type is not {SAMPLE_TYPE}")
    if ".info.json" in texts:
        try:
            counts = json.loads(texts[".info.json"]).get("shard_counts")
        except (ValueError, AttributeError):
            counts = None
        if counts != expected:
            problems.append(f"{META_DIR}/.info.json: counts {_summary(counts)}, the shard index lists "
                            f"{_summary(expected)}")
    if "split.yaml" in texts:
        doc = _yaml(yaml, texts["split.yaml"])
        parts = doc.get("split_parts") if isinstance(doc, dict) else None
        if not isinstance(parts, dict):
            problems.append(f"{META_DIR}/split.yaml: no split_parts")
        else:
            for split in SPLITS:
                found = sorted(x for pattern in parts.get(split) or [] for x in braceexpand.braceexpand(str(pattern)))
                if found != by_split[split]:
                    problems.append(f"{META_DIR}/split.yaml: {split} has {len(found)} shard(s), the shard index "
                                    f"{len(by_split[split])}")
    for name, samples in expected.items():
        try:
            size = len(storage.read_bytes(storage.join(dest, name + TAR_INDEX_SUFFIX)))
        except storage.StorageError:
            problems.append(f"{name}{TAR_INDEX_SUFFIX}: missing")
            continue
        if size != 8 * (samples + 1):
            problems.append(f"{name}{TAR_INDEX_SUFFIX}: {size} bytes, {samples} sample(s) need {8 * (samples + 1)}")
    if "index.sqlite" in texts:
        problems.extend(_sample_index_problems(storage.get_fs(meta)[1], sum(expected.values())))
    return problems


def _yaml(yaml, data: bytes) -> Any:
    try:
        return yaml.safe_load(data)
    except yaml.YAMLError:
        return None


def _summary(counts: Any) -> str:
    if not isinstance(counts, dict):
        return "nothing"
    return f"{sum(v for v in counts.values() if isinstance(v, int))} samples in {len(counts)} shards"


def _sample_index_problems(meta_path: str, samples: int) -> list[str]:
    import os
    import sqlite3

    try:
        index = os.path.join(meta_path, "index.sqlite")
        with contextlib.closing(sqlite3.connect(f"file:{index}?mode=ro", uri=True)) as db:
            rows, keys = db.execute("select count(*), count(distinct sample_key) from samples").fetchone()
    except sqlite3.Error as exc:
        return [f"{META_DIR}/index.sqlite: unreadable ({exc})"]
    if rows != samples or keys != samples:
        return [f"{META_DIR}/index.sqlite: {rows} sample rows ({keys} keys), the shard index lists {samples} samples"]
    return []


__all__ = ["EnergonError", "META_DIR", "META_FILES", "SAMPLE_TYPE", "energon_problems", "prepare_energon"]
