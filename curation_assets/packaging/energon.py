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
from .shards import SPLITS

log = logging.getLogger(__name__)

META_DIR = ".nv-meta"
SAMPLE_TYPE = "CrudeWebdataset"


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
        raise EnergonError(f"megatron-energon is not installed ({exc}): pip install 'curation-assets[energon]'") from None

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


__all__ = ["EnergonError", "META_DIR", "SAMPLE_TYPE", "prepare_energon"]
