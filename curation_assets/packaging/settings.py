"""The training packages' settings: shards, selection, split, buckets and dedup, declared once
(``core/settings.py`` says how), flat so each keeps its ``CURATION_PACKAGE_<FIELD>`` variable and
its launchpad name.

The defaults are the core's own (``shards.ShardSettings``, ``shards.Selection``,
``dedup.DedupSettings``) and so are the checks: :meth:`PackagingSection.problems` builds them. The
Dagster resource ``PackagingSettings`` (``defs/shared/resources.py``) is a subclass, and the
flags of ``curation-assets package`` (``packaging/cli.py``) are made from here: which subcommand
each setting is a flag of and under what name (:func:`package_flags`), its help, default and type,
so ``--help``, docs/settings.md and the Dagster launchpad say the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..core.settings import Section, read_env, setting_field
from . import dedup, shards

ENV_PREFIX = "CURATION_PACKAGE_"
DEFAULT_ENERGON_WORKERS = 2

_SHARDS = shards.ShardSettings()
_SELECTION = shards.Selection()
_DEDUP = dedup.DedupSettings()


class PackagingSection(Section):
    """How the training packages are cut."""

    name: str = setting_field(_SHARDS.name, "shard set name: <output>/webdataset/<name>/")
    dest: str = setting_field("", "shard folder; '' is <output>/webdataset/<name>")
    max_shard_bytes: int = setting_field(_SHARDS.max_shard_bytes, "a shard closes at this size")
    max_shard_samples: int = setting_field(_SHARDS.max_shard_samples, "or at this many samples")
    num_groups: int = setting_field(_SHARDS.num_groups, "shard groups (a video's group is a hash of its path); "
                                                        "changing it rebuilds all")
    val_fraction: float = setting_field(_SHARDS.val_fraction, "share of videos in the val split")
    bucket_by: str = setting_field(_SHARDS.bucket_by, "what shards are bucketed by", choices=shards.BUCKET_BY)
    length_edges_s: list[float] = setting_field(list(_SHARDS.length_edges_s),
                                                "bucket_by=length: bucket edges in seconds (comma-separated)")
    include_filtered: bool = setting_field(_SELECTION.include_filtered, "shard filtered clips too")
    include_invalid: bool = setting_field(_SELECTION.include_invalid, "shard clips whose meta is not valid")
    min_aesthetic_score: float | None = setting_field(_SELECTION.min_aesthetic_score,
                                                      "leave out clips scored below this, and unscored ones")
    min_motion_global_mean: float | None = setting_field(_SELECTION.min_motion_global_mean,
                                                         "leave out clips whose motion global_mean is below this, "
                                                         "and unscored ones")
    min_motion_per_patch_min_256: float | None = setting_field(_SELECTION.min_motion_per_patch_min_256,
                                                               "leave out clips whose motion per_patch_min_256 is "
                                                               "below this, and unscored ones")
    require_caption: bool = setting_field(_SELECTION.require_caption, "only clips with a caption")
    require_embedding: bool = setting_field(_SELECTION.require_embedding, "only clips with an embedding")
    exclude_duplicates: bool = setting_field(False, "leave out semantic_dedup's duplicates (at dedup_eps, "
                                                                "from its pairwise scores)")
    dedup_exclude_mode: str = setting_field(dedup.EXCLUDE_MODES[0], "with exclude_duplicates: 'tars' writes shards "
                                            "without them (a new dedup_eps rewrites every shard); 'split' keeps "
                                            "the shards whole and lists them as exclude entries of energon's "
                                            "split.yaml (a new dedup_eps rewrites only that file; plain "
                                            "webdataset readers still see them)", choices=dedup.EXCLUDE_MODES)
    force_rebuild: bool = setting_field(False, "rewrite every shard group, changed or not")
    energon_workers: int = setting_field(DEFAULT_ENERGON_WORKERS, "energon prepare worker processes", ge=1)
    dedup_n_clusters: int = setting_field(_DEDUP.n_clusters, "k-means clusters; 0 = round(sqrt(n))")
    dedup_eps: float = setting_field(_DEDUP.eps, "duplicates: cosine similarity >= 1 - eps")
    dedup_which_to_keep: str = setting_field(_DEDUP.which_to_keep, "which clip of a duplicate group is kept (NeMo's)",
                                             choices=dedup.WHICH_TO_KEEP)
    dedup_max_iter: int = setting_field(_DEDUP.max_iter, "k-means iterations at most")
    dedup_fit_fraction: float | None = setting_field(_DEDUP.fit_fraction,
                                                     "fit the centroids on this share of the clips (off: all)")
    dedup_device: str = setting_field(_DEDUP.device, "auto, cpu, cuda or cuda:N")
    dedup_seed: int = setting_field(_DEDUP.random_state, "k-means seed")

    def shard_settings(self, exclude: frozenset[str] = frozenset()) -> shards.ShardSettings:
        """The shards' settings; ``exclude`` (duplicates) is left out of the tars only in the
        "tars" mode (:meth:`split_excludes` gives it to ``split.yaml`` otherwise)."""
        if self.dedup_exclude_mode != "tars":
            exclude = frozenset()
        selection = shards.Selection(
            include_filtered=self.include_filtered, include_invalid=self.include_invalid,
            min_aesthetic_score=self.min_aesthetic_score, min_motion_global_mean=self.min_motion_global_mean,
            min_motion_per_patch_min_256=self.min_motion_per_patch_min_256, require_caption=self.require_caption,
            require_embedding=self.require_embedding, exclude=exclude)
        return shards.ShardSettings(
            name=self.name, max_shard_bytes=self.max_shard_bytes, max_shard_samples=self.max_shard_samples,
            num_groups=self.num_groups, val_fraction=self.val_fraction, bucket_by=self.bucket_by,
            length_edges_s=tuple(self.length_edges_s), selection=selection)

    def split_excludes(self, exclude: frozenset[str]) -> frozenset[str]:
        """The clip ids that go into energon's ``split.yaml`` as ``exclude`` entries: the duplicates
        in the "split" mode, none otherwise."""
        return exclude if self.dedup_exclude_mode == "split" else frozenset()

    def dedup_settings(self) -> dedup.DedupSettings:
        return dedup.DedupSettings(n_clusters=self.dedup_n_clusters, eps=self.dedup_eps,
                                   which_to_keep=self.dedup_which_to_keep, max_iter=self.dedup_max_iter,
                                   fit_fraction=self.dedup_fit_fraction, device=self.dedup_device,
                                   random_state=self.dedup_seed)

    def shard_dest(self, output_path: str) -> str:
        return self.dest or shards.default_dest(output_path, self.name)

    def problems(self) -> list[str]:
        """Why these settings cannot work (the core's checks), empty when they can."""
        problems = []
        for make in (self.shard_settings, self.dedup_settings):
            try:
                make()
            except ValueError as exc:
                problems.append(str(exc))
        if self.dedup_exclude_mode not in dedup.EXCLUDE_MODES:
            problems.append(f"dedup_exclude_mode={self.dedup_exclude_mode!r} (one of {', '.join(dedup.EXCLUDE_MODES)})")
        if self.energon_workers < 1:
            problems.append(f"energon_workers={self.energon_workers} (at least 1)")
        return problems


#: The ``curation-assets package`` subcommand whose flags the settings are: ``dedup_<x>`` settings
#: are ``package dedup --<x>``, the others ``package shards --<name>``; these are the exceptions.
_FLAG_EXCEPTIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "force_rebuild": (("shards", "--force"),),
    "dedup_eps": (("dedup", "--eps"), ("shards", "--dedup-eps")),  # shards: which pairwise scores are duplicates
    "dedup_exclude_mode": (("shards", "--dedup-exclude-mode"),),  # how shards leave duplicates out
}


def package_flags(name: str) -> tuple[tuple[str, str], ...]:
    """``(subcommand, flag)`` of each ``curation-assets package`` flag that sets the setting ``name``."""
    if name not in PackagingSection.model_fields:
        raise KeyError(name)
    if name in _FLAG_EXCEPTIONS:
        return _FLAG_EXCEPTIONS[name]
    if name.startswith("dedup_"):
        return (("dedup", "--" + name[len("dedup_"):].replace("_", "-")),)
    return (("shards", "--" + name.replace("_", "-")),)


def packaging_env_values(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The ``CURATION_PACKAGE_<FIELD>`` variables that are set, parsed (``length_edges_s`` as
    comma-separated seconds)."""
    return read_env(PackagingSection, ENV_PREFIX, environ)
