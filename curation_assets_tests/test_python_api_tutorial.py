"""NeMo Curator's getting-started scripts ported by changing their imports only (issue 19).

Each script below is written in the shape of the tutorial's "Complete Pipeline Example" and its
captioning snippet (same stages, parameters and order), with NeMo Curator's import lines. The test
rewrites every ``from nemo_curator... import X`` into ``from curation_assets import X`` and nothing
else, then runs the script in a subprocess on real small videos: stand-in checkpoints in
``./models`` (Cosmos-Embed1 336p with 768-d embeddings, CLIP + the aesthetic MLP), the caption
endpoint a local OpenAI-compatible server. Also here: the launchpad's ``generate_embeddings`` as a
bool, through a real run with run config.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from curation_assets.core.keys import key_from_rel_path
from curation_assets.core.options import PipelineOptions
from curation_assets.definitions import CURATE_JOB_NAME, build_definitions
from curation_assets.defs.shared.resources import CurationSettings
from curation_assets.models.captions import DEFAULT_CAPTION_PROMPT
from curation_assets.partitions import VIDEOS_PARTITION_NAME

from .model_fixtures import (
    ChatServer,
    CosmosStandinSize,
    build_clip_standin,
    build_cosmos_standin,
    make_clip,
    make_mlp_state,
    write_mlp,
)
from .video_factory import make_video

pytestmark = pytest.mark.slow

THRESHOLD = 3.5  # the tutorial's ClipAestheticFilterStage(score_threshold=3.5)

TUTORIAL = '''
from nemo_curator.backends.xenna import XennaExecutor
from nemo_curator.pipeline import Pipeline
from nemo_curator.stages.video.clipping.clip_extraction_stages import ClipTranscodingStage, FixedStrideExtractorStage
from nemo_curator.stages.video.clipping.clip_frame_extraction import ClipFrameExtractionStage
from nemo_curator.stages.video.embedding.cosmos_embed1 import CosmosEmbed1EmbeddingStage, CosmosEmbed1FrameCreationStage
from nemo_curator.stages.video.filtering.clip_aesthetic_filter import ClipAestheticFilterStage
from nemo_curator.stages.video.io.clip_writer import ClipWriterStage
from nemo_curator.stages.video.io.video_reader import VideoReader
from nemo_curator.utils.decoder_utils import FrameExtractionPolicy, FramePurpose

VIDEO_DIR = "videos/"
MODEL_DIR = "./models"
OUTPUT_DIR = "outputs/"


def main():
    pipeline = Pipeline(name="full_video_curation", description="Complete video curation workflow")
    pipeline.add_stage(VideoReader(input_video_path=VIDEO_DIR))
    pipeline.add_stage(FixedStrideExtractorStage(clip_len_s=10.0, clip_stride_s=10.0, min_clip_length_s=2.0,
                                                 limit_clips=0))
    pipeline.add_stage(ClipTranscodingStage(encoder="libx264"))
    pipeline.add_stage(ClipFrameExtractionStage(extraction_policies=(FrameExtractionPolicy.sequence,),
                                                extract_purposes=[FramePurpose.EMBEDDINGS, FramePurpose.AESTHETICS]))
    pipeline.add_stage(ClipAestheticFilterStage(model_dir=MODEL_DIR, score_threshold=3.5))
    pipeline.add_stage(CosmosEmbed1FrameCreationStage(model_dir=MODEL_DIR, variant="336p", target_fps=2.0))
    pipeline.add_stage(CosmosEmbed1EmbeddingStage(model_dir=MODEL_DIR, variant="336p", gpu_memory_gb=20))
    pipeline.add_stage(ClipWriterStage(output_path=OUTPUT_DIR, input_path=VIDEO_DIR, upload_clips=True, dry_run=False,
                                       generate_embeddings=True, generate_previews=False, generate_captions=False,
                                       embedding_algorithm="cosmos-embed1-336p"))
    executor = XennaExecutor()
    pipeline.run(executor)


if __name__ == "__main__":
    main()
'''

CAPTIONING = '''
from nemo_curator.backends.xenna import XennaExecutor
from nemo_curator.pipeline import Pipeline
from nemo_curator.stages.video.caption.caption_enhancement import CaptionEnhancementStage
from nemo_curator.stages.video.caption.caption_generation import CaptionGenerationStage
from nemo_curator.stages.video.caption.caption_preparation import CaptionPreparationStage
from nemo_curator.stages.video.clipping.clip_extraction_stages import ClipTranscodingStage, FixedStrideExtractorStage
from nemo_curator.stages.video.io.clip_writer import ClipWriterStage
from nemo_curator.stages.video.io.video_reader import VideoReader

VIDEO_DIR = "videos/"
OUTPUT_DIR = "outputs/"

pipeline = Pipeline(name="video_captioning", description="A caption and an enhanced caption per clip window")
pipeline.add_stage(VideoReader(input_video_path=VIDEO_DIR))
pipeline.add_stage(FixedStrideExtractorStage(clip_len_s=10.0, clip_stride_s=10.0, min_clip_length_s=2.0))
pipeline.add_stage(ClipTranscodingStage(encoder="libx264"))
pipeline.add_stage(CaptionPreparationStage(model_variant="qwen", prompt_variant="default", sampling_fps=2.0,
                                           window_size=256))
pipeline.add_stage(CaptionGenerationStage(model_dir="./models", model_variant="qwen", caption_batch_size=8,
                                          max_output_tokens=512))
pipeline.add_stage(CaptionEnhancementStage(model_dir="./models", model_variant="qwen", model_batch_size=128))
pipeline.add_stage(ClipWriterStage(output_path=OUTPUT_DIR, input_path=VIDEO_DIR, upload_clips=True, dry_run=False,
                                   generate_embeddings=False, generate_previews=False, generate_captions=True))
pipeline.run(XennaExecutor())
'''

_NEMO_IMPORT = re.compile(r"^from nemo_curator[\w.]* import (.+)$", re.MULTILINE)


def port(script: str) -> str:
    """The mechanical rewrite a user makes: every NeMo import line, and nothing else."""
    ported = _NEMO_IMPORT.sub(r"from curation_assets import \1", script)
    kept = [line for line in script.splitlines() if not line.startswith("from nemo_curator")]
    assert [line for line in ported.splitlines() if not line.startswith("from curation_assets")] == kept
    assert "nemo_curator" not in ported
    return ported


def run_script(folder: Path, script: str, **env: str) -> subprocess.CompletedProcess:
    (folder / "script.py").write_text(port(script))
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CURATION_")}
    environ.update(DAGSTER_HOME=str(folder / "home"), **env)
    return subprocess.run([sys.executable, "script.py"], cwd=folder, env=environ, capture_output=True, text=True,
                          timeout=600)


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _calibrated_mlp(models: Path, warm: bytes, cool: bytes) -> None:
    """The aesthetic MLP (affine: no activations in LAION's head) scaled and shifted so the warm
    video scores about THRESHOLD + 2 and the cool one THRESHOLD - 2 with the CLIP stand-in."""
    from curation_assets.models import AestheticScorer
    from curation_assets.models._weights import clear_model_cache

    state = make_mlp_state()
    write_mlp(models, state)
    s_warm, s_cool = AestheticScorer(model_dir=models).score_clips([warm, cool])
    clear_model_cache()
    bias = float(state["layers.7.bias"][0])
    d_warm, d_cool = s_warm - bias, s_cool - bias
    assert abs(d_warm - d_cool) > 1e-4, "the CLIP stand-in does not tell the two colours apart"
    k = 4.0 / (d_warm - d_cool)
    state["layers.7.weight"] = state["layers.7.weight"] * k
    state["layers.7.bias"] = state["layers.7.bias"] * 0 + THRESHOLD - k * (d_warm + d_cool) / 2
    write_mlp(models, state)


def test_the_complete_pipeline_example_ports_by_its_imports(tmp_path):
    videos, models, out = tmp_path / "videos", tmp_path / "models", tmp_path / "outputs"
    videos.mkdir()
    warm = make_clip(4.0, 24, (160, 128), color_fn=lambda k: (220, 120, 40))
    cool = make_clip(4.0, 24, (160, 128), seed=3, color_fn=lambda k: (30, 60, 200))
    (videos / "warm.mp4").write_bytes(warm)
    (videos / "cool.mp4").write_bytes(cool)
    build_cosmos_standin(models, "336p", CosmosStandinSize(embed_dim=768, resolution=96, patch_size=16), seed=1)
    build_clip_standin(models)
    _calibrated_mlp(models, warm, cool)

    done = run_script(tmp_path, TUTORIAL)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "warm.mp4" in done.stdout and "cool.mp4" in done.stdout  # the per-video table
    assert "gpu_memory_gb have no effect here" in done.stderr  # a hint: named, not dropped in silence

    files = _files(out)
    clips = [f for f in files if f.startswith("clips/")]
    filtered = [f for f in files if f.startswith("filtered_clips/")]
    assert len(clips) == 1 and len(filtered) == 1, files  # one 4 s clip per video; the cool one below 3.5
    metas = {Path(f).stem: json.loads((out / f).read_text()) for f in files if f.startswith("metas/v0/")}
    assert set(metas) == {Path(f).stem for f in clips + filtered}
    for uuid, meta in metas.items():
        passed = f"clips/{uuid}.mp4" in clips
        assert (meta["aesthetic_score"] >= THRESHOLD) == passed, meta
        assert meta["clip_location"].endswith(f"{'clips' if passed else 'filtered_clips'}/{uuid}.mp4")
    by_video = {Path(m["source_video"]).name: m for m in metas.values()}
    assert by_video["warm.mp4"]["aesthetic_score"] > THRESHOLD + 1 > THRESHOLD - 1 > \
        by_video["cool.mp4"]["aesthetic_score"]
    # embeddings of the passed clip only, 768-d (Cosmos-Embed1-336p)
    (pickle_file,) = [f for f in files if f.startswith("ce1_embd/")]
    assert Path(pickle_file).stem == Path(clips[0]).stem
    assert pickle.loads((out / pickle_file).read_bytes()).shape == (1, 768)
    table = pq.read_table(out / next(f for f in files if f.startswith("ce1_embd_parquet/")))
    assert table.num_rows == 1 and len(table.column("embedding")[0].as_py()) == 768
    processed = json.loads((out / "processed_videos" / "warm.mp4.json").read_text())
    assert processed["pipeline"]["settings"]["embedding_algorithm"] == "cosmos-embed1-336p"


def test_the_captioning_snippet_ports_by_its_imports(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    make_video(videos / "a.mp4", seconds=3, fps=24, width=160, height=128, audio=False)
    with ChatServer() as server:
        done = run_script(tmp_path, CAPTIONING, CURATION_CAPTION_BASE_URL=server.base_url,
                          CURATION_CAPTION_API_KEY="sk-test", CURATION_CAPTION_BACKOFF_S="0.01")
        received = list(server.received)
    assert done.returncode == 0, done.stdout + done.stderr
    out = tmp_path / "outputs"
    (meta_file,) = [f for f in _files(out) if f.startswith("metas/v0/")]
    (window,) = json.loads((out / meta_file).read_text())["windows"]
    assert window["qwen_caption"].startswith("images=")  # the server's answer to the window's frames
    assert window["qwen_lm_enhanced_caption"] == f"enhanced: {window['qwen_caption']}"
    captions = [r.body for r in received if isinstance(r.body["messages"][-1]["content"], list)]
    assert len(captions) == 1 and len(received) == 2
    # prompt_variant="default" is NeMo's default prompt; max_output_tokens=512 the requests' max_tokens
    assert captions[0]["messages"][-1]["content"][-1] == {"type": "text", "text": DEFAULT_CAPTION_PROMPT}
    assert {r.body["max_tokens"] for r in received} == {512}


def test_the_launchpad_takes_generate_embeddings_as_a_bool(tmp_path):
    videos, models, out = tmp_path / "in", tmp_path / "models", tmp_path / "out"
    videos.mkdir()
    make_video(videos / "a.mp4", seconds=2, fps=25, width=128, height=96, audio=False)
    build_cosmos_standin(models, "224p")
    settings = CurationSettings.from_options(PipelineOptions(input_path=str(videos), output_path=str(out)))
    job = build_definitions(settings).resolve_job_def(CURATE_JOB_NAME)
    key = key_from_rel_path("a.mp4")
    embedded = []
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(VIDEOS_PARTITION_NAME, [key])
        for value in (True, False):
            # the launchpad's YAML `generate_embeddings: true` (a partial config replaces the code's values)
            config = {"input_path": str(videos), "output_path": str(out), "model_dir": str(models),
                      "generate_previews": False, "generate_embeddings": value}
            result = job.execute_in_process(instance=instance, partition_key=key,
                                            run_config={"resources": {"settings": {"config": config}}})
            assert result.success
            chunk = json.loads((out / "processed_clip_chunks" / "a.mp4_0.json").read_text())
            embedded.append(chunk["num_clips_with_embeddings"])
            record = json.loads((out / "processed_videos" / "a.mp4.json").read_text())["pipeline"]["settings"]
            assert record["generate_embeddings"] == ("on" if value else "off")
    assert embedded == [1, 0]
