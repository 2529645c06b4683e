"""The training packages as assets (issue 12). Thin: what they do is in ``packaging/``.

    clip_manifest       per video: its manifest fragment (``packaging.manifest``), read from the
                        layout assets; check ``manifest_rows_match_clips``
    semantic_dedup      the dataset: SemDeDup over the manifest's embeddings (``packaging.dedup``)
    webdataset_shards   the dataset: WebDataset shards and their index (``packaging.shards``);
                        check ``shards_readable``
    energon_metadata    the dataset: ``.nv-meta`` made by ``energon prepare`` (``packaging.energon``);
                        check ``energon_metadata_consistent``

The dataset-level assets depend on every ``videos`` partition of ``clip_manifest``. For such an
input Dagster 1.13 hands the IO manager every partition key the instance has (materialised or
not), so :class:`ManifestIOManager` gives them a :class:`ManifestInput` that reads the fragments of
exactly those videos with one listing and one dataset scan, never a video's documents. Which
checks block the assets downstream of them (``AssetCheckSpec(blocking=...)``) is chosen when the
definitions are built (:func:`packaging_assets`).
"""

import functools
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pyarrow as pa

from ...core import layout, storage
from ...core.layout_read import VideoLayout
from ...core.outcomes import VideoFailed, VideoOutcome, one_video
from ...packaging import dedup, energon, manifest, shards
from ...partitions import VIDEOS_PARTITION_NAME, io_partition_keys, run_partition_keys, source_url_for_key
from ..shared.outcomes import batch_failure, report_written
from ..shared.policies import PER_VIDEO
from ..shared.resources import CurationSettings, PackagingSettings, packaging_settings_from_env  # noqa: F401 (re-exported)

PACKAGING_GROUP = "training_packages"
PACKAGE_JOB_NAME = "package_training_data"
MANIFEST_JOB_NAME = "package_clip_manifest"
ROWS_CHECK = "manifest_rows_match_clips"
SHARDS_CHECK = "shards_readable"
ENERGON_CHECK = "energon_metadata_consistent"
SAMPLE_ROWS = 5
PROBLEMS_SHOWN = 50

#: The dataset-level packages: what ``package_training_data`` materialises. Not the data card nor
#: the snapshot (datacard.py, snapshot.py): they read video documents, which packaging an
#: unchanged dataset never does; they are materialised on their own.
DATASET_ASSETS = ("semantic_dedup", "webdataset_shards", "energon_metadata")
#: What ``package_clip_manifest`` materialises for each video of a run (clip_gallery: gallery.py).
PER_VIDEO_ASSETS = ("clip_manifest", "clip_gallery")

# ---------------------------------------------------------------------------------------------
# The manifest as an input


@dataclass(frozen=True)
class ManifestInput:
    """The manifest of the videos an asset depends on; :meth:`read` scans their fragments."""

    output_path: str
    rel_paths: tuple[str, ...]
    sources: tuple[str, ...]  # each video's source URL, as its documents must name it
    refused: tuple[str, ...] = ()  # partition keys that name no video under input_path

    def read(self, columns: list[str] | None = None) -> manifest.ManifestRead:
        return manifest.read_fragments(self.output_path, self.rel_paths, columns=columns)

    def digests(self) -> manifest.FragmentDigests:
        return manifest.fragment_digests(self.output_path, self.rel_paths)


class ManifestIOManager(dg.ConfigurableIOManager):
    """``clip_manifest`` as an input: a :class:`ManifestInput` of the partitions asked for. The
    fragments are written by the asset itself (one per video, whatever the run's range)."""

    settings: dg.ResourceDependency[CurationSettings]  # bound by key (definitions.py)

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is not None:
            raise dg.DagsterInvariantViolationError("clip_manifest writes its fragments itself")

    def load_input(self, context: dg.InputContext) -> ManifestInput:
        options = self.settings.options()
        rels, sources, refused = [], [], []
        for key in io_partition_keys(context):
            try:
                source = source_url_for_key(options.input_path, key)
            except ValueError:
                refused.append(key)
                continue
            rels.append(storage.relative_to(options.input_path, source))
            sources.append(source)
        return ManifestInput(options.output_path, tuple(rels), tuple(sources), tuple(refused))


def stale_manifest_partitions(instance: dg.DagsterInstance) -> list[str]:
    """The ``videos`` partitions whose ``processed_videos`` was materialised after their
    ``clip_manifest`` (or that have none): what a schedule should request of ``clip_manifest``
    before packaging. Two queries of the event log, whatever the number of videos."""
    kind = dg.DagsterEventType.ASSET_MATERIALIZATION
    layout = instance.get_latest_storage_id_by_partition(dg.AssetKey("processed_videos"), kind)
    built = instance.get_latest_storage_id_by_partition(dg.AssetKey("clip_manifest"), kind)
    known = instance.get_dynamic_partitions(VIDEOS_PARTITION_NAME)
    return [k for k in known if k in layout and built.get(k, -1) < layout[k]]


# ---------------------------------------------------------------------------------------------
# Metadata


def _column_schema(names: list[str] | None = None) -> dg.TableSchema:
    """The manifest's columns (or ``names`` of them, in that order) as Dagster shows a schema."""
    return dg.TableSchema(columns=[dg.TableColumn(name, str(manifest.COLUMNS[name][0]),
                                                  description=manifest.COLUMNS[name][1])
                                   for name in (names or list(manifest.COLUMNS))])


SAMPLE_COLUMNS = ["clip_uuid", "span_start_s", "span_end_s", "width", "height", "passed", "filtered_by",
                  "motion_global_mean", "aesthetic_score", "caption"]


def _sample_table(table: pa.Table) -> dg.MetadataValue:
    rows = []
    for row in table.select(SAMPLE_COLUMNS).slice(0, SAMPLE_ROWS).to_pylist():
        if isinstance(row["caption"], str) and len(row["caption"]) > 120:
            row["caption"] = row["caption"][:117] + "..."
        rows.append(dg.TableRecord({k: v for k, v in row.items() if v is not None}))
    return dg.MetadataValue.table(rows, schema=_column_schema(SAMPLE_COLUMNS))


def _fragment_metadata(output_path: str, video: VideoLayout, table: pa.Table, url: str | None) -> dict[str, Any]:
    passed = table.column("passed").to_pylist()
    reasons = [r for r in table.column("filtered_by").to_pylist() if r]
    md: dict[str, Any] = {
        "dagster/row_count": table.num_rows,
        "dagster/column_schema": _column_schema(),
        "num_passed": sum(1 for p in passed if p),
        "num_filtered": sum(1 for p in passed if not p),
        "filtered_by": dg.MetadataValue.json({r: reasons.count(r) for r in sorted(set(reasons))}),
        "num_with_embedding": table.num_rows - table.column("embedding").null_count,
        "num_with_caption": table.num_rows - table.column("caption").null_count,
        "fragment": dg.MetadataValue.path(url or manifest.fragment_url(output_path, video.rel_path)),
        "sample": _sample_table(table),
    }
    if url is None:
        md["note"] = "no clips: the fragment was removed"
    if video.problems:
        md["problems"] = dg.MetadataValue.json(list(video.problems[:PROBLEMS_SHOWN]))
    return md


def _problems_md(problems: list[str]) -> dict[str, Any]:
    return {"num_problems": len(problems), "problems": dg.MetadataValue.json(problems[:PROBLEMS_SHOWN])}


def videos_md(read: manifest.ManifestRead | manifest.FragmentDigests, source: ManifestInput,
              instance: dg.DagsterInstance) -> dict[str, Any]:
    stale = stale_manifest_partitions(instance)
    return {
        "num_videos": len(source.rel_paths) - len(read.missing),
        "num_videos_without_manifest": len(read.missing),
        "videos_without_manifest": dg.MetadataValue.json(list(read.missing[:PROBLEMS_SHOWN])),
        "num_videos_with_stale_manifest": len(stale),
        "num_fragments_of_other_videos": read.other_fragments,
    }


def _warn_stale(context: dg.AssetExecutionContext, md: dict[str, Any]) -> None:
    if md["num_videos_with_stale_manifest"]:
        context.log.warning(f"{md['num_videos_with_stale_manifest']} video(s) were written again after their manifest "
                            f"fragment: materialise clip_manifest for them ({MANIFEST_JOB_NAME}) to package what "
                            "they are now")


# ---------------------------------------------------------------------------------------------
# The assets


# The layout assets the manifest reads (processed_videos is the input: its documents name the rest).
_INPUT = layout.LAYOUT_BY_NAME["processed_videos"]
_LAYOUT_DEPS = [dg.AssetKey(list(asset.key)) for asset in layout.LAYOUT if asset is not _INPUT]


def packaging_assets(blocking_checks: bool = True) -> list[Any]:
    """The packaging assets and their checks; ``blocking_checks``: a failing check stops the
    assets downstream of it in the same run (clip_manifest's check the dataset assets,
    shards_readable energon_metadata)."""

    @dg.asset(
        **PER_VIDEO, group_name=PACKAGING_GROUP,
        ins={"processed_videos": dg.AssetIn(key=list(_INPUT.key))}, deps=_LAYOUT_DEPS,
        io_manager_key="manifest_io_manager", output_required=False, kinds={"parquet"},
        automation_condition=dg.AutomationCondition.eager(),
        check_specs=[dg.AssetCheckSpec(ROWS_CHECK, asset="clip_manifest", blocking=blocking_checks,
                                       description="each video's fragment has one row per clip its chunk "
                                                   "documents list")],
    )
    def clip_manifest(context: dg.AssetExecutionContext, settings: CurationSettings,
                      processed_videos: dict[str, VideoLayout]):
        """One Parquet fragment per video: a row per clip (``<output>/manifest/``). A video that
        failed, or has no layout, fails only its own partition."""
        output_path = settings.options().output_path
        done: dict[str, dict[str, Any]] = {}
        findings: dict[str, list[str]] = {}
        outcomes: list[VideoOutcome] = []
        for key in run_partition_keys(context):
            video = processed_videos[key]
            written, outcome = one_video(key, functools.partial(manifest_of_video, output_path, video))
            outcomes.append(outcome)
            if written is None:  # the video failed: one_video gives no value exactly then
                context.log.error(f"{video.rel_path or key}: no manifest: {outcome.reason}")
                continue
            table, url = written
            done[key] = _fragment_metadata(output_path, video, table, url)
            found = manifest.fragment_problems(output_path, video)
            if found:
                findings[key] = found
        yield dg.AssetCheckResult(
            check_name=ROWS_CHECK, passed=not findings,
            description=None if not findings else f"{len(findings)} video(s) differ from their layout, e.g. "
                                                  f"{next(iter(findings.values()))[0]}",
            metadata={"num_videos_checked": len(done), "num_videos_failing": len(findings),
                      "failing": dg.MetadataValue.json({k: v[:10]
                                                        for k, v in list(findings.items())[:PROBLEMS_SHOWN]})},
        )
        report_written(context, "clip_manifest", done, batch_failure(
            outcomes, "have no manifest (their partitions failed; the others were written)", allow_retries=True))
        yield dg.Output(None)

    @dg.asset(group_name=PACKAGING_GROUP, ins={"clip_manifest": dg.AssetIn(key="clip_manifest")}, kinds={"pytorch"})
    def semantic_dedup(context: dg.AssetExecutionContext, settings: CurationSettings,
                       packaging_settings: PackagingSettings, clip_manifest: ManifestInput) -> dg.MaterializeResult:
        """Near-duplicate clips (NeMo Curator's SemDeDup) over the manifest's embeddings:
        ``<output>/semdedup/`` pairwise scores, duplicates at ``dedup_eps``, duplicates per eps."""
        output_path = settings.options().output_path
        read = clip_manifest.read(["clip_uuid", "embedding", "passed"])
        try:
            summary = dedup.run_semdedup(output_path, packaging_settings.dedup_settings(), manifest=read.table)
        except dedup.NoEmbeddingsError as exc:  # a result of zeros would read as "no duplicates"
            raise dg.Failure(str(exc), metadata=videos_md(read, clip_manifest, context.instance)) from None
        folder = dedup.dedup_dir(output_path)
        eps_rows = [dg.TableRecord(r) for r in summary["eps_table"]]
        duplicates = dedup.load_duplicate_ids(output_path)
        md = {
            "dagster/row_count": summary["num_clips"],
            "num_clips": summary["num_clips"],
            "num_duplicates": summary["num_duplicates"],
            "num_without_embedding": summary["num_without_embedding"],
            "eps": summary["eps"],
            "n_clusters": summary["n_clusters"],
            "device": summary["device"],
            "duplicates_per_eps": dg.MetadataValue.table(eps_rows, schema=dg.TableSchema(columns=[
                dg.TableColumn(f.name, str(f.type)) for f in dedup.EPS_TABLE_SCHEMA])),
            "sample_duplicates": dg.MetadataValue.json(sorted(duplicates)[:SAMPLE_ROWS]),
            "bytes": _sizes(folder),
            "location": dg.MetadataValue.path(folder),
            **videos_md(read, clip_manifest, context.instance),
        }
        _warn_stale(context, md)
        context.log.info(f"semantic dedup: {summary['num_duplicates']} of {summary['num_clips']} clips are duplicates "
                         f"at eps={summary['eps']}")
        return dg.MaterializeResult(metadata=md)

    @dg.asset(group_name=PACKAGING_GROUP, ins={"clip_manifest": dg.AssetIn(key="clip_manifest")},
              deps=[semantic_dedup], kinds={"webdataset"})
    def webdataset_shards(context: dg.AssetExecutionContext, settings: CurationSettings,
                          packaging_settings: PackagingSettings, clip_manifest: ManifestInput) -> dg.MaterializeResult:
        """WebDataset shards of the selected clips and their ``index.json``, planned from the
        manifest: only the shard groups whose videos changed are rewritten."""
        output_path = settings.options().output_path
        shard_settings = packaging_settings.shard_settings(_duplicates(output_path, packaging_settings))
        exclude = shard_settings.selection.exclude  # empty in the "split" mode: energon_metadata lists them
        dest = packaging_settings.shard_dest(output_path)
        read = clip_manifest.digests()
        result = shards.build_shards_from_manifest(output_path, read.digests, dest, shard_settings,
                                                   sources=dict(zip(clip_manifest.rel_paths, clip_manifest.sources,
                                                                    strict=True)),
                                                   force=packaging_settings.force_rebuild)
        for p in result.problems[:PROBLEMS_SHOWN]:
            context.log.warning(p)
        index = result.index
        shard_rows = [dg.TableRecord({k: v for k, v in s.items() if k in ("name", "split", "bucket", "samples", "bytes")
                                      and v is not None}) for s in index["shards"][:10]]
        md = {
            "dagster/row_count": sum(v["samples"] for v in index["splits"].values()),
            **{f"{split}_samples": v["samples"] for split, v in index["splits"].items()},
            **{f"{split}_shards": v["shards"] for split, v in index["splits"].items()},
            "bytes": sum(v["bytes"] for v in index["splits"].values()),
            "groups_rewritten": len(result.rebuilt_groups),
            "shards_written": len(result.written),
            "stale_files_removed": len(result.removed),
            "skipped": dg.MetadataValue.json(index["skipped"]),
            "excluded_duplicates": len(exclude),
            "settings_hash": index["settings_hash"],
            "shards": dg.MetadataValue.table(shard_rows, schema=dg.TableSchema(columns=[
                dg.TableColumn("name", "string"), dg.TableColumn("split", "string"),
                dg.TableColumn("bucket", "string"), dg.TableColumn("samples", "int"), dg.TableColumn("bytes", "int")])),
            "index": dg.MetadataValue.path(storage.join(dest, shards.INDEX_FILE)),
            "location": dg.MetadataValue.path(dest),
            **_problems_md(result.problems),
            **videos_md(read, clip_manifest, context.instance),
        }
        _warn_stale(context, md)
        return dg.MaterializeResult(metadata=md)

    @dg.asset(group_name=PACKAGING_GROUP, deps=[webdataset_shards], kinds={"nvidia"})
    def energon_metadata(context: dg.AssetExecutionContext, settings: CurationSettings,
                         packaging_settings: PackagingSettings) -> dg.MaterializeResult:
        """Megatron-Energon's ``.nv-meta`` for the shards, made by energon's own ``energon prepare``
        (local or mounted shard folders), its counts checked against the shard index."""
        dest = packaging_settings.shard_dest(settings.options().output_path)
        split_excludes: frozenset[str] = frozenset()
        if packaging_settings.dedup_exclude_mode == "split":  # the tars mode needs no dedup result here
            split_excludes = packaging_settings.split_excludes(_duplicates(settings.options().output_path,
                                                                           packaging_settings))
        waiting = functools.partial(context.log.info, "another package run is writing these shards; waiting for it")
        try:  # the shards' lock, as `package energon` holds it: never index shards another run is rewriting
            with shards.shard_lock(dest, on_wait=waiting):
                prepared = energon.update_energon(dest, _index_or_fail(dest),
                                                  workers=packaging_settings.energon_workers,
                                                  exclude_ids=split_excludes)
        except (energon.EnergonError, storage.StorageError) as exc:
            raise dg.Failure(storage.redact(exc)) from None
        counts = prepared["shard_counts"]
        return dg.MaterializeResult(metadata={
            "dagster/row_count": sum(counts.values()),
            "num_shards": len(counts),
            "prepared": prepared["prepared"],
            "split_yaml_excludes": len(prepared["excluded"]),
            **{f"{split}_shards": len(names) for split, names in prepared["splits"].items()},
            "location": dg.MetadataValue.path(storage.join(dest, energon.META_DIR)),
        })

    @dg.asset_check(asset=webdataset_shards, name=SHARDS_CHECK, blocking=blocking_checks,
                    description="every shard the index lists is there, with its size and hash, as contiguous samples")
    def shards_readable(settings: CurationSettings, packaging_settings: PackagingSettings) -> dg.AssetCheckResult:
        dest = packaging_settings.shard_dest(settings.options().output_path)
        index = shards.read_index(dest)
        if index is None:
            return dg.AssetCheckResult(passed=False, description=f"{storage.join(dest, shards.INDEX_FILE)}: missing or "
                                                                 "not a shard index")
        problems = shards.verify_shards(dest, index)
        return _check_result(problems, {"num_shards_checked": len(index["shards"])})

    @dg.asset_check(asset=energon_metadata, name=ENERGON_CHECK, blocking=blocking_checks,
                    description="Energon's .nv-meta exists and counts exactly the shards and samples of the index")
    def energon_metadata_consistent(settings: CurationSettings,
                                    packaging_settings: PackagingSettings) -> dg.AssetCheckResult:
        dest = packaging_settings.shard_dest(settings.options().output_path)
        index = shards.read_index(dest)
        if index is None:
            return dg.AssetCheckResult(passed=False, description=f"{storage.join(dest, shards.INDEX_FILE)}: missing or "
                                                                 "not a shard index")
        return _check_result(energon.energon_problems(dest, index), {"num_shards": len(index["shards"])})

    return [clip_manifest, semantic_dedup, webdataset_shards, energon_metadata, shards_readable,
            energon_metadata_consistent]


def _duplicates(output_path: str, packaging_settings: PackagingSettings) -> frozenset[str]:
    """semantic_dedup's duplicates at ``dedup_eps`` when ``exclude_duplicates`` is on (none otherwise)."""
    if not packaging_settings.exclude_duplicates:
        return frozenset()
    try:
        return dedup.load_duplicate_ids(output_path, packaging_settings.dedup_eps)
    except storage.StorageNotFoundError:
        raise dg.Failure("exclude_duplicates is on but there is no dedup result: materialise semantic_dedup "
                         "first") from None


def manifest_of_video(output_path: str, video: VideoLayout) -> tuple[pa.Table, str | None]:
    """Write one video's manifest fragment: ``(table, url)``. A video with no layout (its fragment
    is removed when its output is gone) or that failed in curation raises ``VideoFailed``."""
    if not video.exists:
        if video.rel_path:  # the video's output is gone: so is its fragment
            manifest.write_fragment(output_path, video)
        message = ("; ".join(video.problems)
                   or "no processed_videos document: materialise curate_videos for this video first")
        raise VideoFailed("layout", message, reason=message)
    table = manifest.manifest_table(video)
    url = manifest.write_fragment(output_path, video, table)
    if video.errors:
        message = "the video failed in curation: " + "; ".join(f"{k}: {v}" for k, v in video.errors.items())
        raise VideoFailed("curation", message, reason=message)
    return table, url


def _check_result(problems: list[str], md: dict[str, Any]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=not problems, description=problems[0] if problems else None,
                               metadata={**md, **_problems_md(problems)})


def _index_or_fail(dest: str) -> dict[str, Any]:
    index = shards.read_index(dest)
    if index is None:
        raise dg.Failure(f"no shard index at {storage.join(dest, shards.INDEX_FILE)}: materialise "
                         "webdataset_shards first")
    return index


def _sizes(folder: str) -> int:
    fs, path = storage.get_fs(folder)
    return int(fs.du(path, total=True))


def packaging_jobs() -> list[Any]:
    """``package_training_data`` (the dataset-level assets and their checks: what a schedule
    requests) and ``package_clip_manifest`` (the manifest of the videos of a run's partitions)."""
    return [
        dg.define_asset_job(PACKAGE_JOB_NAME, selection=dg.AssetSelection.assets(*DATASET_ASSETS),
                            description="The dataset-level training packages: semantic dedup, WebDataset shards, "
                                        "Energon metadata, with their checks."),
        dg.define_asset_job(MANIFEST_JOB_NAME, selection=dg.AssetSelection.assets(*PER_VIDEO_ASSETS),
                            description="The clip manifest fragment and the gallery fragment of each selected video."),
    ]
