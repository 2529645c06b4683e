"""The model steps fed by the decode pass's frames (``model_frames=source``) against ``clip`` mode,
through the pipeline's own functions, stand-in checkpoints built locally and a chat server."""

from __future__ import annotations

import builtins
import json
import os
from dataclasses import replace

import av
import numpy as np
import pytest

from curation_assets import curate
from curation_assets.core import filters, layout
from curation_assets.core.options import PipelineOptions
from curation_assets.models.video import process_video
from curation_assets.core.work import VideoSpill, WorkArea
from curation_assets.models import AestheticScorer, CaptionClient, CosmosEmbedder, clear_model_cache, stages

from .model_fixtures import ChatServer, CosmosStandinSize, build_clip_standin, build_cosmos_standin, chat_answer, request_images, write_mlp
from .video_factory import make_video


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    build_cosmos_standin(root, "224p")
    build_clip_standin(root)
    write_mlp(root)
    yield root
    clear_model_cache()


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("in") / "a.mp4", seconds=5, fps=25, width=320, height=256)


def count_images(server: ChatServer, rec) -> tuple[int, dict]:
    return 200, chat_answer(f"{len(request_images(rec.body))} images")


class Opens:
    """Counts what the model steps open: containers (``av.open``) and clip files (``open(*.mp4)``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.av = 0
        self.clip_files = 0
        av_open, py_open = av.open, builtins.open

        def counting_av_open(*args, **kwargs):
            self.av += 1
            return av_open(*args, **kwargs)

        def counting_open(file, *args, **kwargs):
            if str(file).endswith(".mp4"):
                self.clip_files += 1
            return py_open(file, *args, **kwargs)

        monkeypatch.setattr(av, "open", counting_av_open)
        monkeypatch.setattr(builtins, "open", counting_open)


def run_models(video, model_dir, tmp_path, mode: str, monkeypatch=None):
    """process_video, then the three model steps and the writer's annotation, through the
    functions the assets call (``curate``); returns (options, result, opens)."""
    options = PipelineOptions(input_path=str(video.parent), output_path=str(tmp_path / "out"),
                              fixed_stride_split_duration=2.5, model_dir=str(model_dir), generate_embeddings="on",
                              aesthetic_threshold=-1e9, generate_captions=True, model_frames=mode)
    spill = VideoSpill(WorkArea(str(tmp_path / f"work_{mode}"), options.output_path), str(video), options.output_path)
    result = process_video(str(video), video.name, lambda: open(video, "rb"), options, spill=spill)
    assert not result.errors and all(c.encoded for c in result.clips)
    assert all(bool(c.model_frames) == (mode == "source") for c in result.clips)
    scorer = AestheticScorer(model_dir=model_dir, reduction=options.aesthetic_reduction)
    embedder = CosmosEmbedder(options.embedding_algorithm, model_dir=model_dir, batch_size=4)
    scorer.load(), embedder.load()  # loading reads the checkpoints, not clips
    opens = Opens(monkeypatch) if monkeypatch is not None else None
    results = {"a": result}
    aesthetics = curate.aesthetic_step(results, options, scorer)
    embeddings = curate.embedding_step(results, options, embedder, aesthetics)
    with ChatServer(count_images) as server:
        client = CaptionClient(server.base_url, "vlm", backoff_s=0.01, timeout_s=10)
        captions = curate.caption_step(results, options, client, aesthetics)
    if monkeypatch is not None:
        monkeypatch.undo()
    filters.annotate_and_filter(result, options, aesthetics=aesthetics["a"], embeddings=embeddings["a"],
                               captions=captions["a"])  # as curate.write_one does before writing
    for ann in (aesthetics["a"], embeddings["a"], captions["a"]):
        assert not ann.errors and not ann.video_error
    return options, result, opens


def test_model_steps_open_no_clip_with_source_frames(video, model_dir, tmp_path, monkeypatch):
    _, result, opens = run_models(video, model_dir, tmp_path, "source", monkeypatch)
    assert len(result.clips) == 2 and all(c.embedding is not None and c.aesthetic_score is not None
                                          for c in result.clips)
    assert all(w.captions["qwen"].endswith(" images") for c in result.clips for w in c.windows)
    assert (opens.av, opens.clip_files) == (0, 0)

    # the same steps in clip mode open every clip (so the counter sees opens)
    _, _, opens = run_models(video, model_dir, tmp_path, "clip", monkeypatch)
    assert opens.av >= 3 * len(result.clips) and opens.clip_files == 0  # PyAV opens the spilled clip by path


def _files(options, result) -> dict[str, bytes]:
    files = layout.video_files(result, options.output_path, pipeline=result.record)
    out = {}
    for directory in files.files.values():
        for rel, data in directory.items():
            out[rel[len(options.output_path):] if rel.startswith(options.output_path) else rel] = \
                data if isinstance(data, (bytes, str)) else data.read()
    return out


def test_outputs_differ_only_in_embedding_and_score_values(video, model_dir, tmp_path):
    """Source frames change what the models compute from, nothing else: clips, previews, windows,
    captions (the chat server answers with the number of images per window) and every document
    are the same, apart from the embeddings, the aesthetic scores and the recorded setting."""
    src_options, src, _ = run_models(video, model_dir, tmp_path, "source")
    clip_options, ref, _ = run_models(video, model_dir, tmp_path, "clip")
    a, b = _files(src_options, src), _files(clip_options, ref)
    assert sorted(a) == sorted(b)
    differing = []
    for rel in sorted(a):
        if a[rel] == b[rel]:
            continue
        differing.append(rel.split("/")[0] if "/" in rel else rel)
        if rel.startswith(("ce1_embd/", "ce1_embd_parquet/")):
            continue
        da, db = json.loads(a[rel]), json.loads(b[rel])
        if "aesthetic_score" in da:  # metas/v0
            da.pop("aesthetic_score"), db.pop("aesthetic_score")
        if "pipeline" in da:  # processed_videos: the model_frames setting and the settings hash
            assert da["pipeline"]["settings"].pop("model_frames") == "source"
            assert db["pipeline"]["settings"].pop("model_frames") == "clip"
            da["pipeline"].pop("settings_hash"), db["pipeline"].pop("settings_hash")
        assert da == db, rel
    assert set(differing) <= {"ce1_embd", "ce1_embd_parquet", "metas", "processed_videos"}
    assert any(rel.startswith("clips/") for rel in a) and any(rel.startswith("previews/") for rel in a)

    # The values themselves: what the source's pixels change in the stand-ins' outputs.
    for c_src, c_ref in zip(src.clips, ref.clips):
        cosine = float(np.dot(c_src.embedding, c_ref.embedding))  # both L2-normalised
        assert cosine > 0.999, cosine
        assert abs(c_src.aesthetic_score - c_ref.aesthetic_score) < 0.05 * abs(c_ref.aesthetic_score)


def test_stored_frames_for_another_model_are_not_used(video, model_dir, tmp_path, monkeypatch):
    """Frames stored for a 224² processor do not feed one of another size: that step decodes the clip."""
    options = PipelineOptions(fixed_stride_split_duration=2.5, generate_embeddings="on", generate_previews=False)
    result = process_video(str(video), video.name, lambda: open(video, "rb"), options)
    build_cosmos_standin(tmp_path, "336p", CosmosStandinSize(embed_dim=768, resolution=96, patch_size=16), seed=1)
    embedder = CosmosEmbedder("cosmos-embed1-336p", model_dir=tmp_path, batch_size=2)
    embedder.load()
    opens = Opens(monkeypatch)
    out = stages.embed({"a": result}, embedder)["a"]
    monkeypatch.undo()
    assert len(out.values) == 2 and not out.errors and opens.av >= 2
    # and the 224p frames feed the 224p model without a decode, giving what clip mode gives closely
    embedder224 = CosmosEmbedder(model_dir=model_dir, batch_size=2)
    embedder224.load()
    opens = Opens(monkeypatch)
    from_source = stages.embed({"a": result}, embedder224)["a"]
    monkeypatch.undo()
    assert opens.av == 0
    clip_mode = [c for c in (replace(c, model_frames=None) for c in result.clips)]
    from_clip = stages.embed({"a": replace(result, clips=clip_mode)}, embedder224)["a"]
    for uid, v in from_source.values.items():
        assert float(np.dot(v, from_clip.values[uid])) > 0.999


def test_a_transcode_is_not_reused_once_its_model_frames_are_gone(video, model_dir, tmp_path):
    """A rerun whose previous transcode value points at clips still there (moved into the output)
    but at model frames removed with the finished write transcodes again: reusing it would feed the
    models decoded-clip pixels instead of the tap's, and a rerun would change the embeddings."""
    from curation_assets.core.model import SpilledBytes
    from curation_assets.models.video import clips_of_video

    options = PipelineOptions(input_path=str(video.parent), output_path=str(tmp_path / "out"),
                              fixed_stride_split_duration=2.5, model_dir=str(model_dir), generate_embeddings="on")
    area = WorkArea(str(tmp_path / "work"), options.output_path)
    first, reused = clips_of_video(str(video), video.name, options, area)
    assert not reused and not first.errors
    assert all(isinstance(c.model_frames, SpilledBytes) for c in first.clips)
    again, reused = clips_of_video(str(video), video.name, options, area)
    assert reused  # everything still in place
    os.remove(first.clips[0].model_frames.path)
    fresh, reused = clips_of_video(str(video), video.name, options, area)
    assert not reused and all(c.model_frames.locate() for c in fresh.clips)
