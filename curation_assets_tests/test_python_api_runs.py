"""The package-top Python API run for real (issue 19): the seed's ClipWriterStage snippet and its
seven path helpers on a local folder and on the S3 server, and a Pipeline of NeMo's example shape
writing the same documents as the CLI with the same settings."""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import pytest

from curation_assets import (
    ClipTranscodingStage,
    ClipWriterStage,
    FixedStrideExtractorStage,
    MotionFilterStage,
    MotionVectorDecodeStage,
    Pipeline,
    PreviewStage,
    VideoReader,
)
from curation_assets.cli import main
from curation_assets.cli.arguments import UsageError
from curation_assets.core.options import settings_digest

from .test_object_storage import upload_tree
from .video_factory import make_video

pytestmark = pytest.mark.slow

VIDEOS = {"a.mp4": dict(seconds=4), "sub/b.mp4": dict(seconds=3, audio=False)}


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("videos")
    for rel, kw in VIDEOS.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        make_video(folder / rel, width=160, height=128, fps=25, **kw)
    return folder


def seed_writer(pipeline, OUT_DIR, VIDEO_DIR):  # noqa: N803 (the guide's names)
    # NeMo Curator's "Save and Export" snippet, as written
    pipeline.add_stage(ClipWriterStage(output_path=OUT_DIR, input_path=VIDEO_DIR, upload_clips=True,
        dry_run=False, generate_embeddings=True, generate_previews=False, generate_captions=False,
        embedding_algorithm="cosmos-embed1-224p", caption_models=["qwen"],
        enhanced_caption_models=["qwen_lm"], verbose=True))


def seed_helpers(OUT):  # noqa: N803
    # the guide's last snippet, as written
    return [ClipWriterStage.get_output_path_clips(OUT),
            ClipWriterStage.get_output_path_clips(OUT, filtered=True),
            ClipWriterStage.get_output_path_previews(OUT),
            ClipWriterStage.get_output_path_metas(OUT, "v0"),
            ClipWriterStage.get_output_path_ce1_embd_parquet(OUT),
            ClipWriterStage.get_output_path_processed_videos(OUT),
            ClipWriterStage.get_output_path_processed_clip_chunks(OUT)]


def _names(url: str, s3_server=None) -> set[str]:
    """The files under ``url`` (a folder or an s3:// prefix), relative to it."""
    if not url.startswith("s3://"):
        return {os.path.relpath(os.path.join(d, f), url) for d, _, fs in os.walk(url) for f in fs}
    bucket, _, prefix = url[len("s3://"):].partition("/")
    pages = s3_server.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
    return {o["Key"][len(prefix) + 1:] for page in pages for o in page.get("Contents", [])}


def _run_seed(tmp_path, video_in: str, out: str, s3_server=None) -> list[set[str]]:
    """The seed as written is refused (embeddings expected, no weights here); with
    generate_embeddings=False it runs; the files under each of the seven helpers' paths."""
    pipeline = Pipeline(name="seed")
    seed_writer(pipeline, out, video_in)
    with pytest.raises(UsageError, match=r"embeddings were asked for but the weights are missing"):
        pipeline.run(home=str(tmp_path / "home"), stream=io.StringIO())
    writer = pipeline.stages[-1]
    writer.generate_embeddings = False  # the argument value adapted: no weights on this machine
    report = io.StringIO()
    result = pipeline.run(home=str(tmp_path / "home"), stream=report)
    assert result.status == 0 and not result.failed, report.getvalue()
    assert sorted(result.written) == sorted(VIDEOS)  # the table's rows, as the CLI prints them
    assert "a.mp4" in report.getvalue()  # the CLI's per-video table
    return [_names(url, s3_server) for url in seed_helpers(out)]


def _check_seed_files(found: list[set[str]]) -> None:
    clips, filtered, previews, metas, parquet, videos, chunks = found
    assert len(clips) == 2 and all(n.endswith(".mp4") for n in clips)  # one clip per video under 10 s
    assert filtered == previews == parquet == set()  # no filter, previews and embeddings off
    assert {Path(n).stem for n in metas} == {Path(n).stem for n in clips}
    assert videos == {"a.mp4.json", "sub/b.mp4.json"}
    assert chunks == {"a.mp4_0.json", "sub/b.mp4_0.json"}


def test_seed_snippet_local_and_s3(tmp_path, video_dir, s3_bucket, s3_server, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./models here: embeddings asked for cannot run
    local = _run_seed(tmp_path / "l", str(video_dir), str(tmp_path / "out"))
    _check_seed_files(local)
    s3_in, s3_out = f"{s3_bucket}/raw", f"{s3_bucket}/curated"
    upload_tree(s3_server, video_dir, s3_in)
    assert ClipWriterStage.get_output_path_clips(s3_out) == f"{s3_out}/clips"
    on_s3 = _run_seed(tmp_path / "s", s3_in, s3_out, s3_server)
    _check_seed_files(on_s3)  # clip uuids name the input path, so only the shape is the local one's
    assert on_s3[5:] == local[5:]


def _without_hash(doc: bytes) -> bytes:
    """``doc`` with its settings record's hash blanked (the caller checks it against the record):
    the hash digests settings that name the output folder."""
    if b'"settings_hash"' not in doc:
        return doc
    return re.sub(rb'"settings_hash": "[0-9a-f]{16}"', b'"settings_hash": "<HASH>"', doc)


def test_pipeline_writes_the_clis_documents(tmp_path, video_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out_api, out_cli = tmp_path / "api", tmp_path / "cli"
    pipeline = Pipeline(name="split-and-write", description="NeMo's video_split_clip_example shape")
    pipeline.add_stage(VideoReader(input_video_path=str(video_dir), video_limit=None))
    pipeline.add_stage(FixedStrideExtractorStage(clip_len_s=2.0, clip_stride_s=2.0, min_clip_length_s=1.0,
                                                 limit_clips=0))
    pipeline.add_stage(ClipTranscodingStage(encoder="libx264", encoder_threads=1, num_clips_per_chunk=32))
    pipeline.add_stage(MotionVectorDecodeStage())
    pipeline.add_stage(MotionFilterStage(score_only=True, global_mean_threshold=0.00098,
                                         per_patch_min_256_threshold=0.000001))
    pipeline.add_stage(PreviewStage(target_fps=1.0, target_height=64))
    pipeline.add_stage(ClipWriterStage(output_path=str(out_api), input_path=str(video_dir), upload_clips=True,
                                       dry_run=False, generate_embeddings=False, generate_previews=True,
                                       generate_captions=False))
    assert pipeline.run(home=str(tmp_path / "home_api"), stream=io.StringIO()).status == 0
    argv = ["run", "--video-dir", str(video_dir), "--output-path", str(out_cli), "--fixed-stride-split-duration",
            "2", "--fixed-stride-min-clip-length-s", "1", "--transcode-encoder-threads", "1",
            "--preview-target-height", "64", "--no-generate-embeddings", "--generate-previews",
            "--dagster-home", str(tmp_path / "home_cli")]
    assert main(argv) == 0
    compared = 0
    for folder in ("metas/v0", "processed_videos", "processed_clip_chunks"):
        names = _names(str(out_api / folder))
        assert names and names == _names(str(out_cli / folder)), folder
        for rel in names:
            # the output folder is named in clip locations and the settings record, and so differs in
            # the record's hash of those settings: the only differences allowed
            for out in (out_api, out_cli):
                record = json.loads((out / folder / rel).read_bytes()).get("pipeline")
                assert record is None or record["settings_hash"] == settings_digest(record["settings"])
            api = (out_api / folder / rel).read_bytes().replace(str(out_api).encode(), b"<OUT>")
            cli = (out_cli / folder / rel).read_bytes().replace(str(out_cli).encode(), b"<OUT>")
            assert _without_hash(api) == _without_hash(cli), f"{folder}/{rel}"
            compared += 1
    assert compared == 4 + 2 + 2
    assert _names(str(out_api / "previews")) == _names(str(out_cli / "previews")) != set()
