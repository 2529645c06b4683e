"""The typed Megatron-Energon sample of a clip, named by the shards' ``.nv-meta/dataset.yaml``.

A typed sample (not a crude dataset) is what energon's own tools need: ``energon lint`` and
``energon preview`` load the dataset with the default task encoder, which has no cooker, and
``energon info`` imports the ``sample_type`` the YAML names. Energon imports this module by its
dotted path, so a training environment needs ``curation-assets`` (the ``energon`` extra)
installed; it imports megatron-energon and torch, so nothing else in the package imports it.

:class:`ClipWebdataset` is energon's standard factory with one addition: a training split with
fewer samples than the loader's workers (all ranks) would leave a worker empty, which energon
reports deep in a worker as "Cannot repeat empty dataset indefinitely"; here it is refused when
the dataset is built, naming the numbers and what to change.
"""

from typing import Any

import numpy as np
from megatron.energon import Sample, StandardWebdatasetFactory, edataclass
from megatron.energon.av import AVDecoder

#: The members the loader reads: the ``.txt`` is the JSON's ``caption`` again (for plain
#: WebDataset readers), so it is not read twice.
PARTS = ("json", "mp4", "npy")


@edataclass
class ClipSample(Sample):
    """One clip. Energon's default batching gives a ``ClipSample`` whose ``video``, ``caption`` and
    ``embedding`` are lists over the batch and whose ``meta`` is a dict of lists (same keys in
    every sample, :mod:`curation_assets.packaging.sample`)."""

    #: The clip's video (and audio), decoded lazily by energon (``get_frames()``, ``get_clips()``).
    video: AVDecoder
    #: The sample JSON: :data:`curation_assets.packaging.sample.SAMPLE_KEYS`, null where absent.
    meta: dict
    #: The clip's first caption (``meta["caption"]``), None when it has none.
    caption: str | None = None
    #: The Cosmos-Embed1 embedding, a float32 array of shape ``(D,)``, None when it has none. A numpy
    #: array, not a tensor: energon's default batching pads and stacks tensors, which fails on a
    #: None and would turn a missing embedding into zeros; arrays are batched as a list.
    embedding: np.ndarray | None = None


def sample_loader(raw: dict) -> dict:
    """A decoded webdataset sample (``json`` dict, ``mp4`` AVDecoder, ``npy`` array) as the
    :class:`ClipSample` fields."""
    meta = raw["json"]
    npy = raw.get("npy")
    return dict(video=raw["mp4"], meta=meta, caption=meta.get("caption"),
                embedding=None if npy is None else np.asarray(npy, dtype=np.float32).reshape(-1))


def part_filter(part: str) -> bool:
    return part in PARTS


class SplitTooSmallError(ValueError):
    """A training split has fewer samples than the loader's workers."""


class ClipWebdataset(StandardWebdatasetFactory[ClipSample]):
    """Energon's standard webdataset factory for :class:`ClipSample`, refusing a training split
    that cannot give every worker a sample."""

    def __init__(self, path: Any, *, sample_type: type[ClipSample] = ClipSample, **kwargs: Any) -> None:
        self._split_part = kwargs.get("split_part") or "train"
        kwargs.setdefault("sample_loader", sample_loader)
        kwargs.setdefault("part_filter", part_filter)
        super().__init__(path, sample_type=sample_type, **kwargs)

    def build(self, worker_rotation_offset: int = 0):
        per_rank, ranks = max(1, self.worker_config.num_workers), self.worker_config.world_size
        samples = len(self)
        if self.training and samples < per_rank * ranks:
            raise SplitTooSmallError(
                f"{self.path}: split {self._split_part!r} has {samples} sample(s) for {per_rank * ranks} loader "
                f"workers ({per_rank} per rank x {ranks} rank(s)); training gives every worker at least one "
                f"sample: use at most {samples // ranks} worker(s) per rank (WorkerConfig(..., num_workers=n), "
                "where 0 loads in the main process and counts as one), or package more clips into this split")
        return super().build(worker_rotation_offset)


__all__ = ["ClipSample", "ClipWebdataset", "PARTS", "SplitTooSmallError", "part_filter", "sample_loader"]
