"""The Dagster layer as an asset graph (issue: "a real asset graph"): honest dependencies, failures kept
to their video in a batched run, one copy of the bytes, a layout IO manager downstream assets
read, one settings definition, datasets kept apart, settings refused before any work."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import dagster as dg
import pytest

from curation_assets.cli import UsageError, build_parser, options_from_args, run_pipeline
from curation_assets.core import layout, storage
from curation_assets.core.keys import key_from_rel_path
from curation_assets.core.layout_read import VideoLayout
from curation_assets.core.options import PipelineOptions, options_from_env
from curation_assets.definitions import CURATE_JOB_NAME, build_definitions, defs
from curation_assets.defs.shared.resources import CurationSettings
from curation_assets.partitions import VIDEOS_PARTITION_NAME, videos_partitions

from .layout_checks import all_files, check_layout
from .model_fixtures import build_cosmos_standin
from .video_factory import make_video

RANGE = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")
LAYOUT_ASSETS = ("clips", "previews", "metas/v0", "ce1_embd", "ce1_embd_parquet", "processed_clip_chunks",
                 "processed_videos")

# Each asset's upstream assets: what the lineage view shows (a change here is a change of the graph).
EXPECTED_UPSTREAM = {
    "video_clips": set(),
    "aesthetic_scores": {"video_clips"},
    "clip_embeddings": {"video_clips", "aesthetic_scores"},
    "clip_captions": {"video_clips", "aesthetic_scores"},
    "clips": {"video_clips", "aesthetic_scores"},
    "previews": {"video_clips", "aesthetic_scores"},
    "metas/v0": {"video_clips", "aesthetic_scores", "clip_embeddings", "clip_captions"},
    "ce1_embd": {"clip_embeddings"},
    "ce1_embd_parquet": {"clip_embeddings"},
    "processed_clip_chunks": {"video_clips", "aesthetic_scores", "clip_embeddings", "clip_captions"},
    "processed_videos": {"video_clips"},
    # the training packages (defs/packaging/assets.py): the manifest reads every layout asset of its video
    "clip_manifest": {"clips", "previews", "metas/v0", "ce1_embd", "ce1_embd_parquet", "processed_clip_chunks",
                      "processed_videos"},
    "semantic_dedup": {"clip_manifest"},
    "webdataset_shards": {"clip_manifest", "semantic_dedup"},
    "energon_metadata": {"webdataset_shards"},
    "manifest_snapshot": {"clip_manifest"},  # defs/packaging/snapshot.py
    "clip_gallery": {"clip_manifest"},  # defs/packaging/gallery.py
    "data_card": {"clip_manifest"},  # defs/packaging/datacard.py: reads semdedup/ when there, never waits for it
}


def test_asset_graph_snapshot_pins_each_assets_upstream_keys():
    graph = defs.resolve_asset_graph()
    found = {k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys}
             for k in graph.get_all_asset_keys()}
    assert found == EXPECTED_UPSTREAM


def _videos(folder: Path, names=("a.mp4", "b.mp4", "c.mp4")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        make_video(folder / name, seconds=3 + i, fps=25, width=256, height=256, audio=i == 0)
    return folder


def _options(videos: Path, out: Path, **kw) -> PipelineOptions:
    return PipelineOptions(input_path=str(videos), output_path=str(out), fixed_stride_split_duration=2.0,
                           fixed_stride_min_clip_length_s=1.0, generate_embeddings="off", **kw)


def _materialised(instance, asset: str) -> set[str]:
    return {r.asset_materialization.partition
            for r in instance.fetch_materializations(dg.AssetKey(asset.split("/")), limit=1000).records}


def _observations(instance, asset: str) -> dict[str, dict]:
    out = {}
    for record in instance.fetch_observations(dg.AssetKey(asset.split("/")), limit=1000).records:
        obs = record.asset_observation
        out[obs.partition] = {k: v.value for k, v in obs.metadata.items()}
    return out


def test_one_videos_write_failure_fails_only_its_partition(tmp_path):
    videos = _videos(tmp_path / "in")
    out = tmp_path / "out"
    # b.mp4's chunk document cannot be created: a folder stands where the file must go
    (out / layout.chunk_file("b.mp4", 0)).mkdir(parents=True)
    report = io.StringIO()
    rc = run_pipeline(_options(videos, out), home=str(tmp_path / "home"), stream=report, videos_per_run=3)
    text = report.getvalue()
    assert rc == 1, text
    keys = {key_from_rel_path(n) for n in ("a.mp4", "b.mp4", "c.mp4")}
    with dg.DagsterInstance.get() as instance:
        (run,) = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.FAILURE
        for asset in LAYOUT_ASSETS:
            assert _materialised(instance, asset) == keys - {"b.mp4"}, asset
            obs = _observations(instance, asset)
            assert set(obs) == {"b.mp4"} and "write" in obs["b.mp4"]["error"], obs
        failure = next(e for e in instance.all_logs(run.run_id) if e.is_dagster_event and e.dagster_event.is_step_failure)
        data = failure.dagster_event.step_failure_data
        assert set(data.user_failure_data.metadata["failed_partitions"].value) == {"b.mp4"}
    check_layout(out, videos, ["a.mp4", "c.mp4"])
    doc = json.loads((out / layout.video_file("b.mp4")).read_text())
    assert doc["errors"] == ["write"] and layout.chunk_file("b.mp4", 0) in doc["error_details"]["write"]


def test_a_refused_key_inside_a_run_fails_only_itself(tmp_path):
    videos = _videos(tmp_path / "in", ("a.mp4", "c.mp4"))
    out = tmp_path / "out"
    job = build_definitions(CurationSettings.from_options(_options(videos, out))).resolve_job_def(CURATE_JOB_NAME)
    keys = ["a.mp4", "b%2F..%2F..%2Fetc.mp4", "c.mp4"]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(VIDEOS_PARTITION_NAME, keys)
        result = job.execute_in_process(instance=instance, raise_on_error=False, tags=dict(zip(RANGE, (keys[0], keys[-1]))))
        assert not result.success
        assert _materialised(instance, "processed_videos") == {"a.mp4", "c.mp4"}
        assert "refused" in _observations(instance, "clips")[keys[1]]["error"] or \
            "names no video" in _observations(instance, "clips")[keys[1]]["error"]
    check_layout(out, videos, ["a.mp4", "c.mp4"])
    assert sorted(os.listdir(out / "processed_videos")) == ["a.mp4.json", "c.mp4.json"]


def _tree_bytes(root: Path, suffixes=None) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and (suffixes is None or p.suffix in suffixes))


def test_one_copy_of_the_bytes_and_writer_only_reruns(tmp_path):
    videos = _videos(tmp_path / "in", ("b.mp4",))
    make_video(videos / "a.mp4", seconds=10, fps=25, width=256, height=256)
    out, home = tmp_path / "out", tmp_path / "home"
    options = _options(videos, out)
    assert run_pipeline(options, home=str(home), stream=io.StringIO()) == 0
    clip_bytes = _tree_bytes(out / "clips") + _tree_bytes(out / "previews")
    assert clip_bytes > 100_000
    assert _tree_bytes(home, {".mp4", ".webp", ".pickle"}) == 0
    assert _tree_bytes(home / "storage") < 0.1 * clip_bytes if (home / "storage").exists() else True
    assert _tree_bytes(out / "_work") < 0.1 * clip_bytes
    check_layout(out, videos, ["a.mp4", "b.mp4"])

    # only the layout assets again, with a writer setting changed: clips come from clips/ itself
    keys = ["a.mp4", "b.mp4"]
    layout_keys = [dg.AssetKey(a.split("/")) for a in LAYOUT_ASSETS]
    chunked = options.replace(clip_re_chunk_size=1, upload_clips=True)
    job = build_definitions(CurationSettings.from_options(chunked)).resolve_job_def(CURATE_JOB_NAME)
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(instance=instance, asset_selection=layout_keys, raise_on_error=False,
                                        tags=dict(zip(RANGE, keys)))
        assert result.success
    assert len(list((out / "processed_clip_chunks").glob("a.mp4_*.json"))) == 2  # 10 s in 2 s clips, 8 s per chunk
    check_layout(out, videos, ["a.mp4", "b.mp4"])

    # a setting of the transcode step changed: refused at once, naming the asset to materialise
    before = {f: (out / f).read_bytes() for f in all_files(out)}
    restrided = chunked.replace(fixed_stride_split_duration=1.0)
    job = build_definitions(CurationSettings.from_options(restrided)).resolve_job_def(CURATE_JOB_NAME)
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(instance=instance, asset_selection=layout_keys, raise_on_error=False,
                                        tags=dict(zip(RANGE, keys)))
        assert not result.success
        failure = next(e for e in result.all_events if e.is_step_failure)
        message = failure.step_failure_data.error.message
        assert "No stored value of video_clips" in message and "materialize video_clips" in message, message
    assert {f: (out / f).read_bytes() for f in all_files(out)} == before


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    build_cosmos_standin(root, "224p")
    return root


@dg.asset(partitions_def=videos_partitions, ins={"metas_v0": dg.AssetIn(key=["metas", "v0"]),
                                                 "ce1_embd": dg.AssetIn(key="ce1_embd")})
def clip_index(metas_v0: dict[str, VideoLayout], ce1_embd: dict[str, VideoLayout]) -> dg.MaterializeResult:
    """A downstream asset as a packaging step would be: it reads the layout through the IO manager."""
    from curation_assets.core.layout_read import load_embeddings

    rows = {}
    for key, video in metas_v0.items():
        vectors = load_embeddings(ce1_embd[key])
        rows[key] = [{"uuid": c.uuid, "passed": c.passed, "span": c.meta["duration_span"], "clip": c.clip_url,
                      "embedding": c.embedding_url, "dim": len(vectors[c.uuid]) if c.uuid in vectors else None}
                     for c in video.clips]
    clip_index.received.append(rows)  # type: ignore[attr-defined]
    return dg.MaterializeResult()


def test_a_downstream_asset_reads_metas_and_embeddings_for_a_range(tmp_path, model_dir):
    videos = _videos(tmp_path / "in")
    out, home = tmp_path / "out", tmp_path / "home"
    options = _options(videos, out).replace(generate_embeddings="on", model_dir=str(model_dir))
    assert run_pipeline(options, home=str(home), stream=io.StringIO()) == 0
    settings = CurationSettings.from_options(options)
    local = build_definitions(settings)
    from curation_assets.defs.curation.io_managers import ClipLayoutIOManager

    clip_index.received = []  # type: ignore[attr-defined]
    listed = []
    real = storage._find_files
    storage._find_files = lambda fs, path: listed.append(path) or real(fs, path)
    try:
        with dg.DagsterInstance.get() as instance:
            result = dg.materialize([clip_index, *local.assets], selection=[clip_index], instance=instance,
                                    resources={**local.resources, "layout_io_manager": ClipLayoutIOManager(settings=settings)},
                                    tags=dict(zip(RANGE, ("a.mp4", "c.mp4"))))
            assert result.success
    finally:
        storage._find_files = real
    assert not listed, listed  # a video's documents name its files: nothing is listed
    (rows,) = clip_index.received  # type: ignore[attr-defined]
    assert set(rows) == {"a.mp4", "b.mp4", "c.mp4"}
    for key, clips in rows.items():
        metas = {json.loads(p.read_text())["span_uuid"]: json.loads(p.read_text()) for p in (out / "metas" / "v0").glob("*.json")
                 if json.loads(p.read_text())["source_video"] == str(videos / key)}
        assert {c["uuid"] for c in clips} == set(metas)
        for c in clips:
            assert c["passed"] and Path(c["clip"]).exists() and Path(c["embedding"]).exists() and c["dim"] == 256


def test_settings_hash_is_the_same_from_the_cli_the_environment_and_the_launchpad(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    flags = ["run", "--video-dir", "in", "--output-path", "./out/", "--fixed-stride-split-duration", "4",
             "--motion-filter", "enable", "--no-generate-previews"]
    cli = options_from_args(build_parser().parse_args(flags))
    env = options_from_env({"CURATION_INPUT_PATH": "in/", "CURATION_OUTPUT_PATH": "out",
                            "CURATION_FIXED_STRIDE_SPLIT_DURATION": "4.0", "CURATION_MOTION_FILTER": "enable",
                            "CURATION_GENERATE_PREVIEWS": "false"})
    launchpad = CurationSettings(input_path="./in", output_path=str(tmp_path / "out"), fixed_stride_split_duration=4,
                                 motion_filter="enable", generate_previews=False).options()
    hashes = {o.record()["settings_hash"] for o in (cli, env, launchpad)}
    assert len(hashes) == 1, [cli, env, launchpad]
    assert cli.input_path == str(tmp_path / "in")
    assert PipelineOptions().record()["settings_hash"] not in hashes


def test_cli_help_shows_every_flag_with_its_default():
    text = build_parser()._subparsers._group_actions[0].choices["run"].format_help().split("options:", 1)[1]
    for flag, default in (("--fixed-stride-split-duration", "10.0"), ("--motion-filter", "score-only"),
                          ("--max-workers", "6"), ("--generate-previews", "True"), ("--preview-target-fps", "1.0")):
        assert flag in text
        block = text.split(flag, 1)[1].split("\n  --", 1)[0]
        assert f"(default: {default})" in " ".join(block.split()), block


def test_an_enhanced_caption_model_without_its_caption_model_is_refused_with_a_message():
    """Two caption models are fine (each its own key); a second enhanced model with no caption
    model to pair with is refused, from the options and from the Dagster settings alike."""
    assert PipelineOptions(caption_models=("qwen", "other")).caption_models == ("qwen", "other")
    with pytest.raises(ValueError, match="more than caption_models"):
        PipelineOptions(caption_models=("qwen",), enhanced_caption_models=("qwen_lm", "other_lm"))
    with pytest.raises(ValueError, match="more than caption_models"):
        CurationSettings(caption_models=["qwen"], enhanced_caption_models=["qwen_lm", "other_lm"]).options()


def test_two_input_folders_never_share_a_partition(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    first = _videos(tmp_path / "first", ("x.mp4",))
    second = tmp_path / "second"
    second.mkdir()
    make_video(second / "x.mp4", seconds=2, fps=25, width=256, height=256)
    for folder in (first, second):
        assert run_pipeline(_options(folder, tmp_path / f"out-{folder.name}"), stream=io.StringIO()) == 0
    homes = [tmp_path / ".dagster_home"] + list((tmp_path / ".dagster_home" / "datasets").iterdir())
    assert len(homes) == 2
    seen = []
    for home in homes:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            assert instance.get_dynamic_partitions(VIDEOS_PARTITION_NAME) == ["x.mp4"]
            (record,) = instance.fetch_materializations(dg.AssetKey("processed_videos"), limit=10).records
            seen.append(record.asset_materialization.metadata["location"].value)
    assert len(set(seen)) == 2
    # an explicit instance of another folder is refused, and so is a run of the code location
    with pytest.raises(UsageError, match="holds the videos of"):
        run_pipeline(_options(second, tmp_path / "out3"), home=str(tmp_path / ".dagster_home"), stream=io.StringIO())
    job = build_definitions(CurationSettings.from_options(_options(second, tmp_path / "out4"))).resolve_job_def(CURATE_JOB_NAME)
    with dg.DagsterInstance.from_config(str(tmp_path / ".dagster_home")) as instance:
        result = job.execute_in_process(instance=instance, partition_key="x.mp4", raise_on_error=False)
        assert not result.success
        assert "holds the video partitions of" in next(e for e in result.all_events if e.is_step_failure).step_failure_data.error.message
    assert not (tmp_path / "out4").exists()


def test_a_stale_key_writes_nothing_into_the_output(tmp_path):
    videos = _videos(tmp_path / "in", ("a.mp4",))
    out = tmp_path / "out"
    job = build_definitions(CurationSettings.from_options(_options(videos, out))).resolve_job_def(CURATE_JOB_NAME)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(VIDEOS_PARTITION_NAME, ["gone.mp4"])
        result = job.execute_in_process(instance=instance, partition_key="gone.mp4", raise_on_error=False)
        assert not result.success
        assert "no such video" in _observations(instance, "processed_videos")["gone.mp4"]["error"]
    assert not all_files(out)


def test_settings_that_cannot_work_fail_the_run_before_any_video_is_decoded(tmp_path, monkeypatch):
    videos = _videos(tmp_path / "in", ("a.mp4",))
    out = tmp_path / "out"
    decoded = []
    from curation_assets.core import steps

    monkeypatch.setattr(steps, "process_video", lambda *a, **k: decoded.append(a) or pytest.fail("decoded"))
    cases = [dict(generate_embeddings="on", model_dir=str(tmp_path / "no-models")),
             dict(aesthetic_threshold=3.5, model_dir=str(tmp_path / "no-models")),
             dict(generate_captions=True)]
    for case in cases:
        options = _options(videos, out).replace(**case)
        job = build_definitions(CurationSettings.from_options(options)).resolve_job_def(CURATE_JOB_NAME)
        with dg.instance_for_test() as instance:
            instance.add_dynamic_partitions(VIDEOS_PARTITION_NAME, ["a.mp4"])
            result = job.execute_in_process(instance=instance, partition_key="a.mp4", raise_on_error=False)
            failure = next(e for e in result.all_events if e.is_step_failure)
            assert failure.step_key == "video_clips", failure.step_key
            assert "cannot work" in failure.step_failure_data.error.message
        with pytest.raises(UsageError, match="cannot work"):
            run_pipeline(options, home=str(tmp_path / "home"), stream=io.StringIO())
    assert not decoded and not out.exists()
