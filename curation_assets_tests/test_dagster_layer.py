"""The Dagster layer on small generated videos: asset keys, ranged runs, per-video metadata,
settings from the environment and key refusal (the sensor: test_automation_sensor.py)."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from curation_assets.core.keys import key_from_rel_path
from curation_assets.core.options import PipelineOptions
from curation_assets.definitions import CURATE_JOB_NAME, build_definitions, defs
from curation_assets.core.options import options_from_env
from curation_assets.defs.shared.resources import CurationSettings
from curation_assets.defs.shared.tags import DATA_VERSION_TAG
from curation_assets.partitions import VIDEOS_PARTITION_NAME, source_url_for_key

from .layout_checks import check_layout
from .video_factory import make_video

EXPECTED_ASSET_KEYS = {
    "video_clips", "aesthetic_scores", "clip_embeddings", "clip_captions", "clips", "previews", "metas/v0", "ce1_embd", "ce1_embd_parquet",
    "processed_clip_chunks", "processed_videos",
    "clip_manifest", "semantic_dedup", "webdataset_shards", "energon_metadata",  # the training packages
    "clip_gallery", "data_card", "manifest_snapshot",
}


def test_the_writers_version_tag_is_dagsters_data_version():
    """The tag the writer sets (and the backfill schedule reads per partition) is the one Dagster
    records for a materialisation's data version (``MaterializeResult(data_version=...)``)."""

    @dg.asset
    def versioned() -> dg.MaterializeResult:
        return dg.MaterializeResult(data_version=dg.DataVersion("v1"))

    with dg.instance_for_test() as instance:
        assert dg.materialize([versioned], instance=instance).success
        mat = instance.fetch_materializations(dg.AssetKey("versioned"), limit=1).records[0].asset_materialization
        assert mat.tags[DATA_VERSION_TAG] == "v1"


def test_asset_keys_snapshot():
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == EXPECTED_ASSET_KEYS


def test_model_assets_are_in_the_gpu_pool():
    graph = defs.resolve_asset_graph()
    for key in ("clip_embeddings", "aesthetic_scores"):
        assert graph.get(dg.AssetKey(key)).pools == {"gpu"}


def test_resource_fields_mirror_pipeline_options():
    assert set(CurationSettings.model_fields) == set(PipelineOptions.field_names())
    opts = PipelineOptions(motion_filter="enable", caption_models=("a",), max_workers=3)
    assert CurationSettings.from_options(opts).options() == opts


def test_settings_from_environment():
    opts = options_from_env({"CURATION_INPUT_PATH": "s3://b/in", "CURATION_FIXED_STRIDE_SPLIT_DURATION": "4",
                             "CURATION_GENERATE_PREVIEWS": "false", "CURATION_CAPTION_MODELS": "other",
                             "CURATION_LIMIT_CLIPS": "3"})
    assert opts.input_path == "s3://b/in" and opts.fixed_stride_split_duration == 4.0
    assert opts.generate_previews is False and opts.caption_models == ("other",) and opts.limit_clips == 3
    with pytest.raises(ValueError, match="CURATION_GENERATE_PREVIEWS"):
        options_from_env({"CURATION_GENERATE_PREVIEWS": "maybe"})
    with pytest.raises(ValueError, match="motion_filter"):
        options_from_env({"CURATION_MOTION_FILTER": "sometimes"})


@pytest.mark.parametrize(("key", "why"), [("..%2F..%2Fetc%2Fpasswd", "is not the key of that path"),
                                          ("%2E%2E/x.mp4", r"has a '\.\.' segment"), ("/etc/passwd", "is absolute"),
                                          ("s3:%2F%2Fother/x.mp4", "is not the key of that path"),
                                          ("file:///etc/passwd", "is a URL"), ("a/../../b.mp4", "is not the key of that path")])
def test_keys_outside_input_path_are_refused(tmp_path, key, why):
    with pytest.raises(ValueError, match=why):
        source_url_for_key(str(tmp_path), key)


def test_a_refused_key_inside_a_ranged_run_fails_alone(tmp_path):
    """A key typed into the UI that decodes outside input_path, registered between two good videos
    and run with them in one partition range: only its partition fails (refused, the file outside
    is neither read nor named in the output); the good videos are written."""
    videos = tmp_path / "in"
    videos.mkdir()
    make_video(videos / "a.mp4", seconds=3, fps=25, width=128, height=96)
    make_video(videos / "b.mp4", seconds=3, fps=25, width=128, height=96)
    make_video(tmp_path / "private.mp4", seconds=3, fps=25, width=128, height=96)  # beside input_path
    out = tmp_path / "out"
    settings = CurationSettings.from_options(
        PipelineOptions(input_path=str(videos), output_path=str(out), fixed_stride_split_duration=2.0,
                        fixed_stride_min_clip_length_s=1.0, generate_embeddings="off", generate_previews=False))
    job = build_definitions(settings).resolve_job_def(CURATE_JOB_NAME)
    escape = "..%2Fprivate.mp4"
    with pytest.raises(ValueError, match="is not the key of that path"):
        source_url_for_key(str(videos), escape)
    keys = [key_from_rel_path("a.mp4"), escape, key_from_rel_path("b.mp4")]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(VIDEOS_PARTITION_NAME, keys)
        result = job.execute_in_process(
            instance=instance, raise_on_error=False,
            tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]})
        assert not result.success
        failure = next(e for e in result.all_events if e.is_step_failure)
        failed = failure.step_failure_data.user_failure_data.metadata["failed_partitions"].value
        assert list(failed) == [escape] and "names no video under input_path" in failed[escape]
        written = {r.asset_materialization.partition
                   for r in instance.fetch_materializations(dg.AssetKey("processed_videos"), limit=10).records}
        assert written == {keys[0], keys[2]}
    check_layout(out, videos, ["a.mp4", "b.mp4"])
    assert not any("private" in str(p) for p in out.rglob("*")), sorted(out.rglob("*"))


def test_ranged_run_gives_each_video_its_own_materialisation(tmp_path):
    videos = tmp_path / "in"
    (videos / "sub").mkdir(parents=True)
    make_video(videos / "a.mp4", seconds=5, fps=25, width=320, height=256, audio=True)
    make_video(videos / "sub" / "b c.mp4", seconds=3, fps=25, width=256, height=256)
    (videos / "broken.mp4").write_bytes(b"not a video at all")
    out = tmp_path / "out"
    settings = CurationSettings.from_options(
        PipelineOptions(input_path=str(videos), output_path=str(out), fixed_stride_split_duration=2.0,
                        fixed_stride_min_clip_length_s=1.0)
    )
    local_defs = build_definitions(settings)
    job = local_defs.resolve_job_def(CURATE_JOB_NAME)
    keys = [key_from_rel_path(r) for r in ("a.mp4", "broken.mp4", "sub/b c.mp4")]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(VIDEOS_PARTITION_NAME, keys)
        result = job.execute_in_process(
            instance=instance, raise_on_error=False,
            tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]},
        )
        assert not result.success  # broken.mp4 fails its partition
        mats = {}
        for record in instance.fetch_materializations(dg.AssetKey("clips"), limit=100).records:
            m = record.asset_materialization
            mats[m.partition] = m.metadata["num_clips_passed"].value
        assert mats == {keys[0]: 3, keys[2]: 2}  # 5 s: 0-2, 2-4, 4-5; 3 s: 0-2, 2-3
        failure = next(e for e in result.all_events if e.is_step_failure)
        assert "broken.mp4" in failure.step_failure_data.error.message
    summary = check_layout(out, videos, ["a.mp4", "sub/b c.mp4", "broken.mp4"])
    assert summary["a.mp4"]["passed"] == 3
    broken = json.loads((out / "processed_videos" / "broken.mp4.json").read_text())
    assert broken["errors"] == ["metadata"] and "broken.mp4" in broken["error_details"]["metadata"]


def test_launchpad_settings_apply_per_run(tmp_path):
    """Run config overrides the settings for that run only; the options a settings resource
    caches (a speed-up: the IO managers ask for them at every value) must not carry values from
    one run to the next."""
    videos = tmp_path / "in"
    videos.mkdir()
    make_video(videos / "a.mp4", seconds=4, fps=25, width=128, height=96)
    out = tmp_path / "out"
    settings = CurationSettings.from_options(PipelineOptions(input_path=str(videos), output_path=str(out)))
    job = build_definitions(settings).resolve_job_def(CURATE_JOB_NAME)
    key = key_from_rel_path("a.mp4")
    passed = []
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(VIDEOS_PARTITION_NAME, [key])
        for stride in (2.0, 1.0, None):
            # (a partial resource config replaces, not merges, the values set in code: Dagster #12898)
            config = {"input_path": str(videos), "output_path": str(out), "fixed_stride_split_duration": stride,
                      "fixed_stride_min_clip_length_s": 1.0}
            run_config = {} if stride is None else {"resources": {"settings": {"config": config}}}
            result = job.execute_in_process(instance=instance, partition_key=key, run_config=run_config)
            assert result.success
            chunk = json.loads((out / "processed_clip_chunks" / "a.mp4_0.json").read_text())
            passed.append(chunk["num_clips_passed"])
    assert passed == [2, 4, 1]  # 4 s in 2 s clips, in 1 s clips, then the default 10 s stride: one 4 s clip


def test_model_resources_decode_on_every_usable_core_by_default():
    """At 720p the embedding rate is set by decoding (2 threads left a 16-core GPU node's GPU
    idle), so the model steps decode on one thread per usable core unless told otherwise."""
    from curation_assets.core.cpus import usable_cores
    from curation_assets.defs.shared.resources import AestheticModel, EmbeddingModel

    opts = PipelineOptions()
    assert EmbeddingModel().embedder(opts).decode_workers == usable_cores()
    assert AestheticModel().scorer(opts).decode_workers == usable_cores()
    assert EmbeddingModel(decode_workers=3).embedder(opts).decode_workers == 3
