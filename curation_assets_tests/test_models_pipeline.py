"""The model stages through the Dagster assets: stand-in checkpoints built locally (the real
checkpoints' contracts), a chat-completions server in the test process, real videos."""

from __future__ import annotations

import io
import json
import pickle

import pyarrow.parquet as pq
import pytest

from curation_assets.cli import UsageError, run_pipeline
from curation_assets.core.options import PipelineOptions
from curation_assets.defs.shared.resources import CaptionService

from .layout_checks import all_files, check_layout
from .model_fixtures import ChatServer, build_clip_standin, build_cosmos_standin, write_mlp
from .video_factory import make_video

KEY_ENV = "CURATION_TEST_VLM_KEY"
SECRET = "sk-pipeline-5ecret-987654321"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    build_cosmos_standin(root, "224p")
    build_clip_standin(root)
    write_mlp(root)
    return root


@pytest.fixture()
def videos(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    make_video(folder / "a.mp4", seconds=4, fps=25, width=320, height=256)
    make_video(folder / "b.mp4", seconds=2, fps=25, width=256, height=256, audio=False)
    return folder


def test_embeddings_aesthetics_and_captions_end_to_end(tmp_path, videos, model_dir, monkeypatch, capsys):
    monkeypatch.setenv(KEY_ENV, SECRET)
    home = tmp_path / "home"
    out = tmp_path / "out"
    options = PipelineOptions(input_path=str(videos), output_path=str(out), fixed_stride_split_duration=2.0,
                              model_dir=str(model_dir), generate_embeddings="on", aesthetic_threshold=-1e9,
                              generate_captions=True, enhance_captions=True)
    report = io.StringIO()
    with ChatServer() as server:
        service = CaptionService(base_url=server.base_url, api_key_env=KEY_ENV, backoff_s=0.01, timeout_s=10)
        rc = run_pipeline(options, home=str(home), stream=report, caption_service=service)
        assert rc == 0, report.getvalue()
        assert server.received and all(r.headers.get("Authorization") == f"Bearer {SECRET}" for r in server.received)
    summary = check_layout(out, videos, ["a.mp4", "b.mp4"])
    assert summary["a.mp4"]["passed"] == 2 and summary["b.mp4"]["passed"] == 1
    files = all_files(out)
    pickles = [f for f in files if f.startswith("ce1_embd/")]
    assert len(pickles) == 3
    for f in pickles:
        assert pickle.loads((out / f).read_bytes()).shape == (1, 256)
    rows = sum(pq.read_table(out / f).num_rows for f in files if f.startswith("ce1_embd_parquet/"))
    assert rows == 3
    metas = [json.loads((out / f).read_text()) for f in files if f.startswith("metas/v0/")]
    for meta in metas:
        assert isinstance(meta["aesthetic_score"], float)
        (window,) = meta["windows"]
        assert window["qwen_caption"] and window["qwen_lm_enhanced_caption"]
    chunk = json.loads((out / "processed_clip_chunks" / "a.mp4_0.json").read_text())
    assert chunk["num_clips_with_embeddings"] == 2 and chunk["num_clips_with_caption"] == 2
    assert all(chunk["all_windows"][u] for u in chunk["clips"])
    assert all(chunk["all_windows_enhanced_caption"][u] for u in chunk["clips"])
    # The key never reaches the output, the report or the logs.
    everything = report.getvalue() + "".join(capsys.readouterr())
    everything += "".join((out / f).read_bytes().decode("latin-1") for f in files)
    for path in home.rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            everything += path.read_bytes().decode("latin-1")
    assert SECRET not in everything

    # A threshold nobody reaches: every clip moves to filtered_clips, its embedding files go away.
    rc = run_pipeline(options.replace(aesthetic_threshold=1e9, generate_captions=False, enhance_captions=False),
                      home=str(home), stream=io.StringIO())
    assert rc == 0
    summary = check_layout(out, videos, ["a.mp4", "b.mp4"])
    assert summary["a.mp4"]["passed"] == 0 and summary["a.mp4"]["filtered"] == 2
    files = all_files(out)
    assert not [f for f in files if f.startswith(("ce1_embd/", "ce1_embd_parquet/", "clips/", "previews/"))]
    chunk = json.loads((out / "processed_clip_chunks" / "a.mp4_0.json").read_text())
    assert chunk["num_clips_filtered_by_aesthetic"] == 2 and chunk["num_clips_passed"] == 0


def test_missing_weights_fail_when_asked_and_are_noted_in_auto_mode(tmp_path, videos):
    empty_models = tmp_path / "no-models"
    base = PipelineOptions(input_path=str(videos), output_path=str(tmp_path / "out"), model_dir=str(empty_models),
                           generate_previews=False)
    report = io.StringIO()
    assert run_pipeline(base, home=str(tmp_path / "h1"), stream=report) == 0
    text = report.getvalue()
    assert "embeddings skipped" in text and str(empty_models / "nvidia" / "Cosmos-Embed1-224p") in text
    assert "huggingface-cli download nvidia/Cosmos-Embed1-224p" in text

    # asked for explicitly: refused before any video is decoded, nothing written
    with pytest.raises(UsageError, match="embeddings were asked for but the weights are missing"):
        run_pipeline(base.replace(generate_embeddings="on", output_path=str(tmp_path / "out2")),
                     home=str(tmp_path / "h2"), stream=io.StringIO())
    assert not (tmp_path / "out2").exists()


def test_an_aesthetic_threshold_without_its_weights_fails_the_run_and_names_them(tmp_path):
    """No aesthetic weights (CLIP ViT-L/14 first) where a threshold asks for them: the filter
    cannot be applied, so the run is refused before any video is decoded, nothing is written, and
    the message names the folder searched and the command that downloads the weights."""
    videos = tmp_path / "in"
    videos.mkdir()
    make_video(videos / "a.mp4", seconds=2, fps=25, width=256, height=256, audio=False)
    models = tmp_path / "no-models"
    out = tmp_path / "out"
    options = PipelineOptions(input_path=str(videos), output_path=str(out), model_dir=str(models),
                              generate_previews=False, generate_embeddings="off", aesthetic_threshold=0.5)
    with pytest.raises(UsageError) as refused:  # before any video is decoded
        run_pipeline(options, home=str(tmp_path / "h"), stream=io.StringIO())
    text = str(refused.value)
    folder = models / "openai" / "clip-vit-large-patch14"
    assert "aesthetic_threshold is set but the weights are missing" in text and str(folder) in text
    assert "huggingface-cli download openai/clip-vit-large-patch14 " in text and f"--local-dir {folder}" in text
    assert not out.exists()


def test_aesthetic_weights_gone_by_the_time_the_step_runs_fail_it_by_name_and_nothing_is_written(tmp_path, videos,
                                                                                                  model_dir):
    """The weights were there when the run checked its settings (video_clips) but are gone when the
    aesthetic step runs (a shared model folder changed, or the step is re-executed later): the step
    fails naming the weights, the writer does not run, and no file of either video is written."""
    import shutil

    import dagster as dg

    from curation_assets.core.keys import key_from_rel_path
    from curation_assets.definitions import CURATE_JOB_NAME, build_definitions
    from curation_assets.defs.shared.resources import CurationSettings
    from curation_assets.models import clear_model_cache
    from curation_assets.partitions import VIDEOS_PARTITION_NAME

    models = tmp_path / "models"
    shutil.copytree(model_dir, models)
    out = tmp_path / "out"
    options = PipelineOptions(input_path=str(videos), output_path=str(out), model_dir=str(models),
                              fixed_stride_split_duration=2.0, generate_previews=False, generate_embeddings="off",
                              aesthetic_threshold=0.5)
    job = build_definitions(CurationSettings.from_options(options)).resolve_job_def(CURATE_JOB_NAME)
    keys = [key_from_rel_path("a.mp4"), key_from_rel_path("b.mp4")]
    tags = {"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]}
    later = [k for k in job.asset_layer.executable_asset_keys if k != dg.AssetKey("video_clips")]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(VIDEOS_PARTITION_NAME, keys)
        first = job.execute_in_process(instance=instance, tags=tags, asset_selection=[dg.AssetKey("video_clips")])
        assert first.success
        clip = models / "openai" / "clip-vit-large-patch14"
        shutil.rmtree(clip)
        clear_model_cache()  # a new process: nothing loaded before the weights went
        rest = job.execute_in_process(instance=instance, tags=tags, asset_selection=later, raise_on_error=False)
    assert not rest.success
    failure = next(e for e in rest.all_events if e.is_step_failure)
    message = failure.step_failure_data.error.message
    assert failure.step_key == "aesthetic_scores", failure.step_key
    assert "aesthetic_threshold is set but the weights are missing" in message and str(clip) in message
    assert not [e for e in rest.all_events if e.is_step_materialization and e.step_key != "aesthetic_scores"]
    assert not all_files(out)
