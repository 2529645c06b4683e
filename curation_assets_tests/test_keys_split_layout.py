"""Partition keys, fixed-stride spans, windows, chunks and the layout documents."""

from __future__ import annotations

import io
import json
import pickle
import uuid

import numpy as np
import pyarrow.parquet as pq
import pytest

from curation_assets.core import layout
from curation_assets.core.keys import key_from_rel_path, rel_path_from_key
from curation_assets.core.model import Clip, ClipProbe, MotionScore, Span, VideoMetadata, VideoResult, Window
from curation_assets.core.split import fixed_stride_spans
from curation_assets.core.windows import compute_windows

NASTY = ["a.mp4", "sub/dir/b c.mp4", "x,y[1].mp4", "dots...mp4", "tab\there.mp4", "ünïcødé 视频.mp4", "100%.mp4",
         "a..b/c.mp4"]


@pytest.mark.parametrize("rel", NASTY)
def test_keys_round_trip_and_avoid_ui_hostile_characters(rel):
    key = key_from_rel_path(rel)
    assert rel_path_from_key(key) == rel
    for bad in (" ", ",", "[", "]", "...", "\t", ".."):
        assert bad not in key
    assert key_from_rel_path(rel) == key  # stable


def test_keys_are_distinct():
    keys = {key_from_rel_path(r) for r in NASTY}
    assert len(keys) == len(NASTY)


def meta(duration: float, fps: float = 25.0) -> VideoMetadata:
    return VideoMetadata(720, 1280, fps, int(duration * fps), duration, "h264", "yuv420p", None)


def test_fixed_stride_matches_reference_arithmetic():
    spans = fixed_stride_spans(meta(25.0))
    assert [(s.start_s, s.end_s) for s in spans] == [(0.0, 10.0), (10.0, 20.0), (20.0, 25.0)]
    assert [(s.start_frame, s.end_frame) for s in spans] == [(0, 250), (250, 500), (500, 625)]
    # A last piece under the minimum is dropped.
    assert len(fixed_stride_spans(meta(21.5))) == 2
    # duration comes from num_frames / fps, not the container duration
    m = VideoMetadata(90, 160, 29.97002997002997, 119, 4.004, "h264", "yuv420p", None)
    (s,) = fixed_stride_spans(m)
    assert s.end_s == pytest.approx(119 / 29.97002997002997)
    assert s.end_frame == int(s.end_s * m.framerate)
    assert len(fixed_stride_spans(meta(100.0), limit_clips=3)) == 3


def test_fixed_stride_refuses_bad_values():
    with pytest.raises(ValueError, match="clip length and stride must be positive"):
        fixed_stride_spans(meta(10), clip_len_s=0)
    with pytest.raises(ValueError, match="incomplete metadata: framerate and num_frames are required"):
        fixed_stride_spans(VideoMetadata(1, 1, None, None, None, None, None, None))


def test_clip_uuid_is_the_reference_formula():
    clip = Clip(source_video="/in/a.mp4", span=Span(0.0, 10.0, 0, 250))
    assert clip.uuid == uuid.uuid5(uuid.NAMESPACE_URL, "/in/a.mp4_0_250")


@pytest.mark.parametrize(
    "n,expected",
    [
        (3, []),
        (4, [(0, 3)]),
        (256, [(0, 255)]),
        (257, [(0, 256)]),
        (256 + 128, [(0, 255), (256, 383)]),
        (256 + 127, [(0, 382)]),
        (600, [(0, 255), (256, 599)]),
        (640, [(0, 255), (256, 511), (512, 639)]),
        (512 + 100, [(0, 255), (256, 611)]),
    ],
)
def test_windows(n, expected):
    assert compute_windows(n) == expected


def make_result(n_clips: int = 3, length: float = 10.0) -> VideoResult:
    m = meta(n_clips * length)
    clips = []
    for s in fixed_stride_spans(m, clip_len_s=length):
        c = Clip(source_video="/in/sub/v.mp4", span=s, encoded=b"mp4bytes",
                 probe=ClipProbe(1280, 720, 25.0, 250, "h264", 8), motion=MotionScore(0.01, 0.001))
        c.windows = [Window(0, 249, captions={"qwen": "a cat"}, preview=b"RIFFwebp")]
        clips.append(c)
    return VideoResult(source_video="/in/sub/v.mp4", rel_path="sub/v.mp4", metadata=m, clips=clips)


def test_chunks_close_when_duration_budget_is_reached():
    result = make_result(60, 10.0)
    chunks = layout.chunk_clips(result.clips)
    assert [len(c) for c in chunks] == [26, 26, 8]  # 26 * 10 s >= 256 s
    assert len(layout.chunk_clips(result.clips, 80)) == 8


def test_metas_document_keys_and_order():
    result = make_result(2)
    clip = result.clips[0]
    clip.errors["motion_decode"] = "decode_failed"
    doc = layout.clip_meta_doc(clip, result.metadata, "/out", layout.CaptionConfig(("qwen",), ("qwen_lm",)))
    assert list(doc) == ["span_uuid", "source_video", "duration_span", "width_source", "height_source",
                         "framerate_source", "clip_location", "width", "height", "framerate", "num_frames",
                         "video_codec", "num_bytes", "motion_score", "errors", "error_details", "windows", "valid"]
    assert doc["clip_location"] == f"/out/clips/{clip.uuid}.mp4"
    assert doc["windows"] == [{"start_frame": 0, "end_frame": 249, "qwen_caption": "a cat"}]
    assert doc["valid"] is True
    clip.filtered_by = "motion"
    doc = layout.clip_meta_doc(clip, result.metadata, "/out/", layout.CaptionConfig())
    assert doc["clip_location"] == f"/out/filtered_clips/{clip.uuid}.mp4"


def test_video_files_cover_every_directory():
    result = make_result(3)
    result.clips[1].filtered_by = "motion"
    result.clips[0].embedding = np.arange(256, dtype=np.float32)
    files = layout.video_files(result, "/out", captions=layout.CaptionConfig(("qwen",), ()))
    f = files.files
    c0, c1, c2 = result.clips
    assert set(f[layout.CLIPS]) == {f"clips/{c0.uuid}.mp4", f"clips/{c2.uuid}.mp4"}
    assert set(f[layout.FILTERED_CLIPS]) == {f"filtered_clips/{c1.uuid}.mp4"}
    assert len(f[layout.METAS]) == 3
    assert set(f[layout.PREVIEWS]) == {f"previews/{c0.uuid}/0_249.webp", f"previews/{c2.uuid}/0_249.webp"}
    emb = pickle.loads(f[layout.CE1_EMBD][f"ce1_embd/{c0.uuid}.pickle"])
    assert emb.shape == (1, 256)
    (pq_name, pq_bytes), = f[layout.CE1_EMBD_PARQUET].items()
    assert pq_name == f"ce1_embd_parquet/{uuid.uuid5(uuid.NAMESPACE_URL, '/in/sub/v.mp4_0')}.parquet"
    table = pq.read_table(io.BytesIO(pq_bytes))
    assert table.column("id").to_pylist() == [str(c0.uuid)]
    assert str(table.schema.field("embedding").type) == "list<element: float>"
    video = json.loads(f[layout.PROCESSED_VIDEOS]["processed_videos/sub/v.mp4.json"])
    assert video["num_total_clips"] == 3 and video["num_clip_chunks"] == 1
    chunk = json.loads(f[layout.PROCESSED_CLIP_CHUNKS]["processed_clip_chunks/sub/v.mp4_0.json"])
    assert chunk["num_clips_passed"] == 2 and chunk["num_clips_filtered_by_motion"] == 1
    assert chunk["num_clips_transcoded"] == 3 and chunk["num_clips_with_embeddings"] == 1
    assert chunk["total_clip_duration"] == 30.0 and chunk["max_clip_duration"] == 10.0
    assert chunk["filtered_clips"] == [str(c1.uuid)]
    assert chunk["all_windows"][str(c0.uuid)] == {"0_249": "a cat"}
    assert str(c1.uuid) not in chunk["all_windows"]


def test_dry_run_writes_only_video_and_chunk_documents():
    files = layout.video_files(make_result(2), "/out", dry_run=True).files
    assert {d for d, v in files.items() if v} == {layout.PROCESSED_VIDEOS, layout.PROCESSED_CLIP_CHUNKS}


def test_output_path_helpers():
    assert layout.get_output_path_clips("s3://b/out/") == "s3://b/out/clips"
    assert layout.get_output_path_clips("/o", filtered=True) == "/o/filtered_clips"
    assert layout.get_output_path_metas("/o", "v0") == "/o/metas/v0"
    assert layout.get_output_path_ce1_embd_parquet("/o") == "/o/ce1_embd_parquet"
    assert layout.get_output_path_processed_clip_chunks("/o") == "/o/processed_clip_chunks"


def test_output_path_helpers_cover_the_table():
    """NeMo Curator's helpers, one per directory of the table, each ``get_output_path`` of it."""
    assert set(layout.OUTPUT_PATH_HELPERS) == set(layout.ALL_DIRECTORIES)
    for directory, helper in layout.OUTPUT_PATH_HELPERS.items():
        assert helper("s3://b/out/") == layout.get_output_path("s3://b/out", directory) == f"s3://b/out/{directory}"
    assert layout.get_output_path_metas("/o", "v1") == "/o/metas/v1"
    with pytest.raises(ValueError, match="'webdataset' is not a directory of the layout"):
        layout.get_output_path("/o", "webdataset")


def test_writer_groups_follow_the_table():
    """The writer writes the table's assets in its order, the documents last."""
    from curation_assets.core import writer

    assert writer.FILE_GROUPS + writer.DOCUMENT_GROUPS == tuple(a.directories for a in layout.LAYOUT)
    assert writer.DOCUMENT_GROUPS == ((layout.PROCESSED_CLIP_CHUNKS,), (layout.PROCESSED_VIDEOS,))
