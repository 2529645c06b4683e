"""The training packages as Dagster assets (issue 12): the curate job, then the manifest per video
and the dataset-level packages, through a real instance, on real videos with the Cosmos-Embed1
stand-in; a failed video fails only its manifest partition, the checks say which file and why,
blocking is a setting, and an unchanged dataset is packaged from the manifest alone."""

from __future__ import annotations

import io
import json
import pickle
import shutil
import tarfile
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pytest

from curation_assets.core import layout, storage
from curation_assets.core.keys import key_from_rel_path
from curation_assets.core.layout_read import read_video_layout
from curation_assets.core.options import PipelineOptions
from curation_assets.definitions import CURATE_JOB_NAME, build_definitions
from curation_assets.defs.packaging import assets as pkg
from curation_assets.defs.shared.resources import CurationSettings
from curation_assets.packaging import dedup, energon, manifest, shards
from curation_assets.packaging.cli import processed_rel_paths
from curation_assets.packaging.sample import schema_problems
from curation_assets.partitions import VIDEOS_PARTITION_NAME

from .model_fixtures import build_cosmos_standin
from .video_factory import make_video

RANGE = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")
RELS = ("a.mp4", "broken.mp4", "sub/b c.mp4")
KEYS = [key_from_rel_path(r) for r in RELS]
GOOD = {KEYS[0]: RELS[0], KEYS[2]: RELS[2]}
SETTINGS = pkg.PackagingSettings(num_groups=2)


def _options(videos: Path, out: Path, models: Path) -> PipelineOptions:
    return PipelineOptions(input_path=str(videos), output_path=str(out), fixed_stride_split_duration=2.0,
                           fixed_stride_min_clip_length_s=1.0, generate_embeddings="on", model_dir=str(models))


def _defs(base: SimpleNamespace, out: Path | None = None, packaging: pkg.PackagingSettings = SETTINGS,
          blocking: bool = True) -> dg.Definitions:
    options = _options(base.videos, out or base.out, base.models)
    return build_definitions(CurationSettings.from_options(options), packaging=packaging, blocking_checks=blocking)


def _run(defs: dg.Definitions, job: str, instance, keys: list[str] | None = None):
    tags = dict(zip(RANGE, (keys[0], keys[-1]))) if keys and len(keys) > 1 else {}
    return defs.resolve_job_def(job).execute_in_process(
        instance=instance, raise_on_error=False, tags=tags, partition_key=keys[0] if keys and len(keys) == 1 else None)


def _materialised(instance, asset: str, run_id: str | None = None) -> dict[str | None, dict]:
    out = {}
    for record in instance.fetch_materializations(dg.AssetKey(asset), limit=1000).records:
        if run_id is None or record.run_id == run_id:
            m = record.asset_materialization
            out.setdefault(m.partition, {k: v.value for k, v in m.metadata.items()})
    return out


def _checks(result) -> dict[str, object]:
    return {e.event_specific_data.check_name: e.event_specific_data for e in result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"}


def _metas_of(out: Path, source: str) -> dict[str, dict]:
    docs = (json.loads(p.read_text()) for p in (out / layout.METAS).glob("*.json"))
    return {d["span_uuid"]: d for d in docs if d["source_video"] == source}


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    """Three videos curated by the curate job in one ranged run (broken.mp4 fails), then the
    manifest job and the package job, in one instance kept for the module's tests."""
    root = tmp_path_factory.mktemp("pkgassets")
    videos = root / "in"
    (videos / "sub").mkdir(parents=True)
    make_video(videos / "a.mp4", seconds=4, fps=25, width=320, height=256, audio=True)
    make_video(videos / "sub" / "b c.mp4", seconds=3, fps=25, width=256, height=256)
    (videos / "broken.mp4").write_bytes(b"not a video at all")
    models = root / "models"
    build_cosmos_standin(models, "224p")
    base = SimpleNamespace(videos=videos, out=root / "out", models=models)
    defs = _defs(base)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(VIDEOS_PARTITION_NAME, KEYS)
        curate = _run(defs, CURATE_JOB_NAME, instance, KEYS)
        assert not curate.success  # broken.mp4
        base.manifest_run = _run(defs, pkg.MANIFEST_JOB_NAME, instance, KEYS)
        base.package_run = _run(defs, pkg.PACKAGE_JOB_NAME, instance)
        base.instance, base.defs = instance, defs
        yield base


def _copy(base: SimpleNamespace, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(base.out, out)
    return out


@pytest.mark.slow
def test_a_failed_video_fails_only_its_manifest_partition(curated):
    run, instance, out = curated.manifest_run, curated.instance, curated.out
    assert not run.success
    failure = next(e for e in run.all_events if e.is_step_failure)
    failed = failure.step_failure_data.user_failure_data.metadata["failed_partitions"].value
    assert set(failed) == {"broken.mp4"} and "failed in curation" in failed["broken.mp4"], failed
    assert "metadata" in failed["broken.mp4"]
    mats = _materialised(instance, "clip_manifest", run.run_id)
    assert set(mats) == set(GOOD)
    for key, rel in GOOD.items():
        metas = _metas_of(out, str(curated.videos / rel))
        md = mats[key]
        assert md["dagster/row_count"] == md["num_passed"] == len(metas) == 2, md
        assert md["num_with_embedding"] == 2 and md["num_filtered"] == 0
        assert [c.name for c in md["dagster/column_schema"].columns] == manifest.SCHEMA.names
        sample = md["sample"]
        assert [c.name for c in sample.schema.columns] == pkg.SAMPLE_COLUMNS
        assert {r.data["clip_uuid"] for r in sample.records} == set(metas)
        table = manifest.read_fragment(str(out), rel)
        assert set(table.column("clip_uuid").to_pylist()) == set(metas)
        assert md["fragment"] == manifest.fragment_url(str(out), rel)
    assert sorted(p.name for p in (out / manifest.MANIFEST_DIR).iterdir()) == sorted(
        f"{manifest.fragment_name(r)}.parquet" for r in GOOD.values())
    check = _checks(run)[pkg.ROWS_CHECK]
    assert check.passed and check.metadata["num_videos_checked"].value == 2


@pytest.mark.slow
def test_the_dataset_packages_are_built_from_the_manifest_and_checked(curated):
    run, instance, out = curated.package_run, curated.instance, curated.out
    assert run.success
    checks = _checks(run)
    assert checks[pkg.SHARDS_CHECK].passed and checks[pkg.ENERGON_CHECK].passed
    metas = {u: m for rel in GOOD.values() for u, m in _metas_of(out, str(curated.videos / rel)).items()}
    dedup_md = _materialised(instance, "semantic_dedup", run.run_id)[None]
    assert dedup_md["num_clips"] == len(metas) == 4
    assert dedup_md["num_videos"] == 2 and dedup_md["videos_without_manifest"] == ["broken.mp4"]
    assert (out / "semdedup" / "pairwise.parquet").exists() and dedup_md["bytes"] > 0
    shard_md = _materialised(instance, "webdataset_shards", run.run_id)[None]
    assert shard_md["train_samples"] == shard_md["dagster/row_count"] == 4 and shard_md["num_problems"] == 0
    assert shard_md["groups_rewritten"] == shard_md["shards_written"] == shard_md["train_shards"]
    dest = out / "webdataset" / "default"
    seen = {}
    for tar_path in sorted(dest.rglob("*.tar")):
        with tarfile.open(tar_path) as tar:
            for member in tar:
                uid, _, ext = member.name.partition(".")
                seen.setdefault(uid, {})[ext] = tar.extractfile(member).read()
    assert set(seen) == set(metas)
    for uid, parts in seen.items():
        doc = json.loads(parts["json"])  # the sample JSON (packaging.sample), made from the clip's meta
        assert schema_problems(doc) == [] and doc["clip_uuid"] == uid and doc["num_bytes"] == metas[uid]["num_bytes"]
        assert parts["mp4"] == (out / layout.CLIPS / f"{uid}.mp4").read_bytes()
        import numpy as np

        vector = np.load(io.BytesIO(parts["npy"]))
        assert np.array_equal(vector, pickle.loads((out / layout.CE1_EMBD / f"{uid}.pickle").read_bytes()).reshape(-1))
    energon_md = _materialised(instance, "energon_metadata", run.run_id)[None]
    assert energon_md["dagster/row_count"] == 4
    index = json.loads((dest / shards.INDEX_FILE).read_text())
    assert energon.energon_problems(str(dest), index) == []


@pytest.mark.slow
def test_an_unchanged_dataset_is_packaged_without_reading_a_video_document(curated, monkeypatch):
    out, dest = curated.out, curated.out / "webdataset" / "default"
    before = {p: p.read_bytes() for p in dest.rglob("*.tar")}
    read: list[str] = []
    real = storage.read_bytes
    monkeypatch.setattr(storage, "read_bytes", lambda url: read.append(url) or real(url))
    run = _run(curated.defs, pkg.PACKAGE_JOB_NAME, curated.instance)
    monkeypatch.undo()
    assert run.success
    md = _materialised(curated.instance, "webdataset_shards", run.run_id)[None]
    assert md["groups_rewritten"] == 0 and md["shards_written"] == 0 and md["train_samples"] == 4
    documents = [u for u in read if f"/{layout.PROCESSED_VIDEOS}/" in u or f"/{layout.METAS}/" in u
                 or f"/{layout.PROCESSED_CLIP_CHUNKS}/" in u]
    assert not documents, documents
    assert {p: p.read_bytes() for p in dest.rglob("*.tar")} == before
    # the layout way in (the CLI's) finds the same digests: switching between them rebuilds nothing
    videos = [read_video_layout(str(out), rel) for rel in processed_rel_paths(str(out))]
    assert shards.build_shards(videos, str(dest), SETTINGS.shard_settings()).rebuilt_groups == []


@pytest.mark.slow
def test_a_video_written_again_shows_as_a_stale_manifest_until_its_manifest_is_rebuilt(curated):
    instance, defs = curated.instance, curated.defs
    assert pkg.stale_manifest_partitions(instance) == []
    assert _run(defs, CURATE_JOB_NAME, instance, [KEYS[0]]).success
    assert pkg.stale_manifest_partitions(instance) == [KEYS[0]]
    run = _run(defs, pkg.PACKAGE_JOB_NAME, instance)
    assert _materialised(instance, "webdataset_shards", run.run_id)[None]["num_videos_with_stale_manifest"] == 1
    assert _run(defs, pkg.MANIFEST_JOB_NAME, instance, [KEYS[0]]).success
    assert pkg.stale_manifest_partitions(instance) == []


def _missing_meta(out: Path, rel: str) -> str:
    chunk = json.loads((out / layout.chunk_file(rel, 0)).read_text())
    uid = chunk["clips"][0]
    (out / layout.METAS / f"{uid}.json").unlink()
    return uid


@pytest.mark.slow
@pytest.mark.parametrize("blocking", [True, False])
def test_a_failing_manifest_check_names_the_file_and_blocks_downstream_when_set(curated, tmp_path, blocking):
    out = _copy(curated, tmp_path)
    uid = _missing_meta(out, "a.mp4")
    defs = _defs(curated, out, blocking=blocking)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(VIDEOS_PARTITION_NAME, [KEYS[0]])
        result = dg.materialize(defs.assets, selection=["clip_manifest", "semantic_dedup"], partition_key=KEYS[0],
                                instance=instance, resources=defs.resources, raise_on_error=False)
        check = _checks(result)[pkg.ROWS_CHECK]
        assert not check.passed
        assert f"no row for clip {uid}" in check.description and f"metas/v0/{uid}.json: missing" in check.description
        assert set(_materialised(instance, "clip_manifest")) == {KEYS[0]}  # written, with the clips it could read
        assert manifest.read_fragment(str(out), "a.mp4").num_rows == 1
        assert bool(_materialised(instance, "semantic_dedup")) is not blocking
    graph = defs.resolve_asset_graph()
    assert graph.get_check_spec(dg.AssetCheckKey(dg.AssetKey("clip_manifest"), pkg.ROWS_CHECK)).blocking is blocking


@pytest.mark.slow
def test_a_damaged_shard_fails_its_check_and_blocks_energon_and_energon_is_checked(curated, tmp_path):
    out = _copy(curated, tmp_path)
    dest = out / "webdataset" / "default"
    damaged = sorted(dest.rglob("*.tar"))[0]
    good = damaged.read_bytes()
    data = bytearray(good)
    data[len(data) // 2] ^= 0xFF
    name = str(damaged.relative_to(dest))
    # the package job checks the shards it keeps: the damaged one's group is rebuilt, the check passes
    damaged.write_bytes(bytes(data))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(VIDEOS_PARTITION_NAME, list(GOOD))
        result = _run(_defs(curated, out), pkg.PACKAGE_JOB_NAME, instance)
        assert _checks(result)[pkg.SHARDS_CHECK].passed
        assert _materialised(instance, "webdataset_shards", result.run_id)[None]["groups_rewritten"] == 1
        assert damaged.read_bytes() == good and _materialised(instance, "energon_metadata")
    # damaged after the build: the check finds it and, when blocking, holds energon back
    damaged.write_bytes(bytes(data))
    for blocking in (True, False):
        defs = _defs(curated, out, blocking=blocking)
        job = dg.define_asset_job("shards_check_then_energon", selection=dg.AssetSelection.checks_for_assets(
            "webdataset_shards") | dg.AssetSelection.assets("energon_metadata"))
        merged = dg.Definitions.merge(defs, dg.Definitions(jobs=[job]))
        with dg.instance_for_test() as instance:
            result = merged.resolve_job_def(job.name).execute_in_process(instance=instance, raise_on_error=False)
            check = _checks(result)[pkg.SHARDS_CHECK]
            assert not check.passed and check.description == f"{name}: size or hash differs from the index"
            assert bool(_materialised(instance, "energon_metadata")) is not blocking
    # the energon check on its own, after a file of energon's went missing
    (dest / energon.META_DIR / "split.yaml").unlink()
    defs = _defs(curated, out)
    checks_job = dg.define_asset_job("energon_checks", selection=dg.AssetSelection.checks_for_assets("energon_metadata"))
    merged = dg.Definitions.merge(defs, dg.Definitions(jobs=[checks_job]))
    with dg.instance_for_test() as instance:
        result = merged.resolve_job_def("energon_checks").execute_in_process(instance=instance, raise_on_error=False)
        check = _checks(result)[pkg.ENERGON_CHECK]
        assert not check.passed and check.description == f"{energon.META_DIR}/split.yaml: missing"


@pytest.mark.slow
def test_exclude_duplicates_leaves_semantic_dedups_duplicates_out(curated, tmp_path):
    out = _copy(curated, tmp_path)
    duplicates = dedup.load_duplicate_ids(str(out), SETTINGS.dedup_eps)
    assert 0 < len(duplicates) < 4  # the stand-in maps clips to nearly one vector
    defs = _defs(curated, out, packaging=pkg.PackagingSettings(num_groups=2, exclude_duplicates=True))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(VIDEOS_PARTITION_NAME, list(GOOD))
        result = dg.materialize(defs.assets, selection=["webdataset_shards"], instance=instance,
                                resources=defs.resources)
        md = _materialised(instance, "webdataset_shards", result.run_id)[None]
    assert md["excluded_duplicates"] == len(duplicates) and md["train_samples"] == 4 - len(duplicates)
    assert md["skipped"] == {"excluded": len(duplicates)}
    index = json.loads((out / "webdataset" / "default" / shards.INDEX_FILE).read_text())
    names = set()
    for shard in index["shards"]:
        with tarfile.open(out / "webdataset" / "default" / shard["name"]) as tar:
            names |= {m.name.partition(".")[0] for m in tar}
    assert names and not names & duplicates


@pytest.mark.slow
def test_a_refused_key_in_a_manifest_run_fails_only_itself(curated, tmp_path):
    out = _copy(curated, tmp_path)
    keys = [KEYS[0], "b%2F..%2F..%2Fetc.mp4"]
    defs = _defs(curated, out)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(VIDEOS_PARTITION_NAME, keys)
        result = _run(defs, pkg.MANIFEST_JOB_NAME, instance, keys)
        assert not result.success
        failure = next(e for e in result.all_events if e.is_step_failure)
        failed = failure.step_failure_data.user_failure_data.metadata["failed_partitions"].value
        assert set(failed) == {keys[1]} and "refused" in failed[keys[1]]
        assert set(_materialised(instance, "clip_manifest")) == {KEYS[0]}


# ---------------------------------------------------------------------------------------------
# Fast: settings, environment, jobs


def test_packaging_settings_that_cannot_work_fail_the_run_before_any_step(tmp_path):
    options = PipelineOptions(input_path=str(tmp_path / "in"), output_path=str(tmp_path / "out"))
    for bad, expected in ((dict(bucket_by="diagonal"), "bucket_by='diagonal'"), (dict(dedup_eps=1.5), "eps=1.5"),
                          (dict(energon_workers=0), "energon_workers=0"), (dict(num_groups=0), "num_groups=0")):
        defs = build_definitions(CurationSettings.from_options(options), packaging=pkg.PackagingSettings(**bad))
        with dg.instance_for_test() as instance:
            result = defs.resolve_job_def(pkg.PACKAGE_JOB_NAME).execute_in_process(instance=instance,
                                                                                   raise_on_error=False)
            assert not result.success
            assert not any(e.event_type_value == "STEP_START" for e in result.all_events)
            messages = " ".join(str(e.event_specific_data) for e in result.all_events if e.is_failure)
            assert expected in messages and "packaging settings that cannot work" in messages, messages
    assert not (tmp_path / "out").exists()


def test_packaging_settings_from_the_environment():
    s = pkg.packaging_settings_from_env({"CURATION_PACKAGE_VAL_FRACTION": "0.25", "CURATION_PACKAGE_BUCKET_BY": "aspect",
                                         "CURATION_PACKAGE_LENGTH_EDGES_S": "1, 3", "CURATION_PACKAGE_EXCLUDE_DUPLICATES": "yes",
                                         "CURATION_PACKAGE_MIN_AESTHETIC_SCORE": "none", "OTHER": "x"})
    assert (s.val_fraction, s.bucket_by, s.length_edges_s, s.exclude_duplicates) == (0.25, "aspect", [1.0, 3.0], True)
    assert s.shard_settings().length_edges_s == (1.0, 3.0) and s.min_aesthetic_score is None
    assert pkg.packaging_settings_from_env({}) == pkg.PackagingSettings()
    with pytest.raises(ValueError, match="CURATION_PACKAGE_NUM_GROUPS: not a whole number"):
        pkg.packaging_settings_from_env({"CURATION_PACKAGE_NUM_GROUPS": "many"})
    # whether failing checks block is the one location setting the layout checks use too
    from curation_assets.core.options import options_from_env

    assert options_from_env({}).checks_block_downstream is True
    assert options_from_env({"CURATION_CHECKS_BLOCK_DOWNSTREAM": "off"}).checks_block_downstream is False
    with pytest.raises(ValueError, match="CURATION_CHECKS_BLOCK_DOWNSTREAM"):
        options_from_env({"CURATION_CHECKS_BLOCK_DOWNSTREAM": "sometimes"})


def test_the_defaults_are_the_cores():
    assert pkg.PackagingSettings().shard_settings() == shards.ShardSettings()
    assert pkg.PackagingSettings().dedup_settings() == dedup.DedupSettings()


def test_the_jobs_select_curation_or_packaging_never_both():
    from curation_assets.definitions import defs

    def selected(job: str) -> set[str]:
        return {k.to_user_string() for k in defs.resolve_job_def(job).asset_layer.selected_asset_keys}

    package, per_video, curate = selected(pkg.PACKAGE_JOB_NAME), selected(pkg.MANIFEST_JOB_NAME), selected(CURATE_JOB_NAME)
    assert package == set(pkg.DATASET_ASSETS) and per_video == set(pkg.PER_VIDEO_ASSETS)
    assert not curate & (package | per_video) and "processed_videos" in curate
    assert defs.resolve_job_def(pkg.PACKAGE_JOB_NAME).partitions_def is None  # a schedule requests it as it is


@pytest.mark.slow
def test_energon_metadata_waits_for_a_package_run_writing_the_shards(curated, tmp_path):
    """energon_metadata takes the shards' lock, as ``package energon`` does: while another run holds
    it (rewriting the shards), energon's index is not written from a half-rewritten folder."""
    import threading
    import time

    out = _copy(curated, tmp_path)
    dest = out / "webdataset" / "default"
    shutil.rmtree(dest / energon.META_DIR)
    held, released = threading.Event(), []

    def other_run() -> None:
        with shards.shard_lock(str(dest)):
            held.set()
            time.sleep(12.0)  # longer than the run takes to reach the step
            released.append(time.time())

    holder = threading.Thread(target=other_run)
    holder.start()
    assert held.wait(30)
    defs = _defs(curated, out)
    job = dg.define_asset_job("energon_only", selection=dg.AssetSelection.assets("energon_metadata"))
    merged = dg.Definitions.merge(defs, dg.Definitions(jobs=[job]))
    with dg.instance_for_test() as instance:
        result = merged.resolve_job_def(job.name).execute_in_process(instance=instance, raise_on_error=False)
    holder.join()
    assert result.success
    written = min(p.stat().st_mtime for p in (dest / energon.META_DIR).rglob("*") if p.is_file())
    assert written >= released[0]
