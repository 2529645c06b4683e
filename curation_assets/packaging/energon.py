"""Megatron-Energon metadata for the shards: the index made by megatron-energon's own
``energon prepare``, and a ``dataset.yaml`` naming this project's typed sample.

``split.yaml``, ``.info.json``, ``index.sqlite``, ``index.uuid`` and each shard's ``.tar.idx`` are
written by energon's prepare command, run non-interactively in this process, never by hand.
Prepare can only name energon's own sample types in ``dataset.yaml``, and a crude dataset (plain
dicts for a cooker) is what ``energon lint`` / ``preview`` cannot load and ``energon info`` cannot
describe; so ``dataset.yaml`` is written here and names
:class:`~curation_assets.packaging.energon_sample.ClipWebdataset` with its sample type
:class:`~curation_assets.packaging.energon_sample.ClipSample` (dotted paths energon imports).
Split parts are the ``train/`` and ``val/`` shard folders (and an empty ``test``). Afterwards the sample counts energon
found are compared with the shard index (energon logs a shard it cannot read and goes on).

Dedup exclusions can live in ``split.yaml`` instead of the tars (``dedup_exclude_mode="split"``):
:func:`update_energon` adds ``exclude: [<shard>.tar/<clip uuid>, ...]`` (the form energon's
``WebdatasetMeta`` reads: it skips a sample whose ``<shard name>/<key>`` is listed), the shard of
each clip looked up in energon's own ``index.sqlite``. energon prepare is skipped when the shards
are the ones it last indexed (:data:`PREPARED_FILE` records their digests), so a new dedup
threshold rewrites ``split.yaml`` and nothing else.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sqlite3
from collections.abc import Mapping
from typing import Any

from ..core import storage
from .shard_plan import SPLITS

log = logging.getLogger(__name__)

META_DIR = ".nv-meta"
#: The dotted path of the dataset factory and of its sample type, as ``dataset.yaml`` names them.
SAMPLE_MODULE = "curation_assets.packaging.energon_sample"
DATASET_CLASS = "ClipWebdataset"
SAMPLE_TYPE = "ClipSample"
#: Energon's ``WorkerConfig.default_worker_config()`` worker count: a training split needs at
#: least this many samples for energon's defaults on one rank.
ENERGON_DEFAULT_WORKERS = 4
#: The split parts ``split.yaml`` lists: ours (:data:`SPLITS`) and energon's ``test``, which
#: ``energon lint`` checks by default (an empty part it skips; a missing one it fails on).
ENERGON_SPLITS = (*SPLITS, "test")
#: What ``energon prepare`` leaves in ``.nv-meta/`` (besides each shard's ``.tar.idx``).
META_FILES = ("dataset.yaml", "split.yaml", ".info.json", "index.sqlite", "index.uuid")
TAR_INDEX_SUFFIX = ".idx"
#: In ``.nv-meta/``: the shard digests (name -> SHA-256, from the shard index) energon prepare last indexed.
PREPARED_FILE = "curation-prepared.json"
_SQL_BATCH = 500


class EnergonError(RuntimeError):
    """energon prepare failed, or what it indexed differs from the shard index."""


def prepare_energon(dest: str, index: Mapping[str, Any], *, workers: int = 2) -> dict[str, Any]:
    """Run ``energon prepare`` on the shard folder ``dest`` and check its result against ``index``.

    Returns ``{"splits": {split: [shard names]}, "shard_counts": {...}, "log": str, "notes": [...]}``
    (``notes``: :func:`small_split_notes`, also logged as warnings). Local folders only: energon
    reaches object stores through its own Multi-Storage Client profiles, which this project does not
    configure.
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
            "--skip-dataset-yaml"]
    for split in ENERGON_SPLITS:  # every split energon's tools look for, empty ones too
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
    _write_dataset_yaml(path)
    _write_atomic(os.path.join(path, META_DIR, PREPARED_FILE),
                  (json.dumps(_shard_digests(index), indent=1, sort_keys=True) + "\n").encode())
    log.info("energon prepare: %s", out.getvalue().strip().splitlines()[-1:] or "done")
    notes = small_split_notes(index)
    for note in notes:
        log.warning("%s", note)
    return {"splits": {s: sorted(n for n in expected if n.startswith(f"{s}/")) for s in splits},
            "shard_counts": counts, "log": out.getvalue(), "notes": notes}


def update_energon(dest: str, index: Mapping[str, Any], *, workers: int = 2,
                   exclude_ids: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The Energon metadata of ``dest`` made current: :func:`prepare_energon` unless the shards are
    the ones energon last indexed and its metadata checks out, then ``split.yaml``'s ``exclude``
    entries set to the samples of ``exclude_ids`` (clip uuids; those in no shard are ignored).

    Returns :func:`prepare_energon`'s result (``log`` empty when it was skipped) with ``prepared``
    (whether energon prepare ran) and ``excluded`` (the ``exclude`` entries written).
    """
    _, path = storage.get_fs(dest)
    record = _read_json(os.path.join(path, META_DIR, PREPARED_FILE)) if storage.is_local(dest) else None
    if record is not None and record == _shard_digests(index) and not energon_problems(dest, index):
        names = {s["name"]: s["samples"] for s in index["shards"]}
        result = {"splits": {s: sorted(n for n in names if n.startswith(f"{s}/")) for s in SPLITS
                             if index["splits"][s]["shards"]},
                  "shard_counts": names, "log": "", "notes": small_split_notes(index), "prepared": False}
    else:
        result = {**prepare_energon(dest, index, workers=workers), "prepared": True}
    result["excluded"] = write_split_excludes(dest, exclude_ids)
    return result


def write_split_excludes(dest: str, exclude_ids: frozenset[str]) -> list[str]:
    """Set ``split.yaml``'s ``exclude`` to ``<shard>/<uuid>`` for each clip of ``exclude_ids`` that
    energon indexed (none: no ``exclude`` key, as prepare writes it). The file is replaced
    atomically, and only when it changes. Returns the entries."""
    import yaml

    _, path = storage.get_fs(dest)
    meta = os.path.join(path, META_DIR)
    entries = sample_entries(meta, exclude_ids)
    target = os.path.join(meta, "split.yaml")
    with open(target, "rb") as f:
        old = f.read()
    doc = yaml.safe_load(old)
    if not isinstance(doc, dict) or not isinstance(doc.get("split_parts"), dict):
        raise EnergonError(f"{target}: no split_parts (run energon prepare again: package shards --force)")
    doc.pop("exclude", None)
    if entries:
        doc["exclude"] = entries
    new = yaml.safe_dump(doc, sort_keys=False).encode()
    if new != old:
        _write_atomic(target, new)
    return entries


def sample_entries(meta_path: str, keys: frozenset[str]) -> list[str]:
    """``<shard name>/<key>`` of each sample key energon's ``index.sqlite`` holds (its
    ``tar_file_id`` is the position of the shard in ``.info.json``'s ``shard_counts``), sorted."""
    import sqlite3

    if not keys:
        return []
    info = _read_json(os.path.join(meta_path, ".info.json"))
    names = list((info or {}).get("shard_counts") or {})
    wanted = sorted(keys)
    found: list[str] = []
    index = os.path.join(meta_path, "index.sqlite")
    with contextlib.closing(sqlite3.connect(f"file:{index}?mode=ro", uri=True)) as db:
        for i in range(0, len(wanted), _SQL_BATCH):
            batch = wanted[i:i + _SQL_BATCH]
            rows = db.execute(f"select tar_file_id, sample_key from samples where sample_key in "
                              f"({','.join('?' * len(batch))})", batch).fetchall()
            for tar_id, key in rows:
                if not 0 <= tar_id < len(names):
                    raise EnergonError(f"{index}: sample {key} names shard #{tar_id}, .info.json lists {len(names)}")
                found.append(f"{names[tar_id]}/{key}")
    return sorted(found)


def _shard_digests(index: Mapping[str, Any]) -> dict[str, str]:
    return {s["name"]: s["sha256"] for s in index["shards"]}


def _read_json(path: str) -> Any:
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return None


def _write_atomic(target: str, data: bytes) -> None:
    tmp = f"{target}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)


def dataset_yaml() -> dict[str, Any]:
    """``.nv-meta/dataset.yaml``: the typed factory and its sample type (loader and part filter are
    the factory's own defaults, so the YAML holds no code path)."""
    return {"__module__": SAMPLE_MODULE, "__class__": DATASET_CLASS,
            "sample_type": {"__module__": SAMPLE_MODULE, "__class__": SAMPLE_TYPE}}


def _write_dataset_yaml(path: str) -> None:
    import yaml

    text = yaml.safe_dump(dataset_yaml(), sort_keys=False)
    _write_atomic(os.path.join(path, META_DIR, "dataset.yaml"), text.encode())


def small_split_notes(index: Mapping[str, Any], workers: int = ENERGON_DEFAULT_WORKERS) -> list[str]:
    """A line when the train split has samples but fewer than ``workers``: energon's training loader
    gives each worker a share of the samples, and :class:`~.energon_sample.ClipWebdataset` refuses
    to leave one empty (validation loaders do not repeat, so an empty worker is harmless there)."""
    n = index["splits"]["train"]["samples"]
    if not 0 < n < workers:
        return []
    return [f"train has {n} sample(s): energon's default WorkerConfig ({workers} workers) cannot train on it; "
            f"load it with WorkerConfig(rank=0, world_size=1, num_workers={n}) or fewer, or package more clips"]


def energon_problems(dest: str, index: Mapping[str, Any]) -> list[str]:
    """Why the Energon metadata under ``dest`` does not describe the shards of ``index`` (the asset
    check "Energon metadata present and consistent"), each naming the file; [] when it does.

    Checked: every file of :data:`META_FILES` exists; ``dataset.yaml`` is :func:`dataset_yaml`;
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
        if doc != dataset_yaml():
            problems.append(f"{META_DIR}/dataset.yaml: does not name {SAMPLE_MODULE}.{DATASET_CLASS} "
                            f"with sample type {SAMPLE_TYPE}")
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
            problems.extend(_exclude_problems(doc.get("exclude"), meta, "index.sqlite" in texts))
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


def _exclude_problems(entries: Any, meta: str, have_index: bool) -> list[str]:
    """``split.yaml``'s ``exclude`` must name samples energon indexed, each in its own shard."""
    if entries is None:
        return []
    if not isinstance(entries, list) or not all(isinstance(e, str) and ".tar/" in e for e in entries):
        return [f"{META_DIR}/split.yaml: exclude is not a list of <shard>.tar/<key>"]
    if not have_index:
        return []
    keys = frozenset(e.split(".tar/", 1)[1] for e in entries)
    try:
        found = set(sample_entries(storage.get_fs(meta)[1], keys))
    except (sqlite3.Error, EnergonError) as exc:
        return [f"{META_DIR}/split.yaml: its exclude entries could not be looked up ({exc})"]
    wrong = sorted(set(entries) - found)
    if wrong:
        return [f"{META_DIR}/split.yaml: {len(wrong)} exclude entr{'y names' if len(wrong) == 1 else 'ies name'} "
                f"no indexed sample (e.g. {wrong[0]})"]
    return []


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
    try:
        index = os.path.join(meta_path, "index.sqlite")
        with contextlib.closing(sqlite3.connect(f"file:{index}?mode=ro", uri=True)) as db:
            rows, keys = db.execute("select count(*), count(distinct sample_key) from samples").fetchone()
    except sqlite3.Error as exc:
        return [f"{META_DIR}/index.sqlite: unreadable ({exc})"]
    if rows != samples or keys != samples:
        return [f"{META_DIR}/index.sqlite: {rows} sample rows ({keys} keys), the shard index lists {samples} samples"]
    return []


__all__ = ["DATASET_CLASS", "ENERGON_DEFAULT_WORKERS", "EnergonError", "META_DIR", "META_FILES", "SAMPLE_MODULE",
           "PREPARED_FILE", "SAMPLE_TYPE", "dataset_yaml", "energon_problems", "prepare_energon", "sample_entries",
           "small_split_notes", "update_energon", "write_split_excludes"]
