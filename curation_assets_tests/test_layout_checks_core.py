"""The layout checks (core.layout_checks) on a layout the production pipeline wrote (embeddings from
the Cosmos stand-in, previews, captions from a local chat server), then broken one file at a time:
each check fails naming the file and why, and only the check whose rule was broken fails."""

from __future__ import annotations

import io
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation_assets.cli import run_pipeline
from curation_assets.core import layout
from curation_assets.core import layout_checks as lc
from curation_assets.core.options import PipelineOptions
from curation_assets.defs.shared.resources import CaptionService

from .bad_inputs import truncated_faststart
from .model_fixtures import ChatServer, build_cosmos_standin
from .video_factory import make_video

VIDEO = "a.mp4"


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """One output folder written by the pipeline: a.mp4 (3 clips) and the truncated mp4 of the
    bad-input corpus (a clip across the cut, recorded with a ``truncated`` error)."""
    root = tmp_path_factory.mktemp("checks")
    videos = root / "in"
    videos.mkdir()
    make_video(videos / VIDEO, seconds=5, fps=25, width=256, height=256, audio=True)
    full = make_video(root / "full.mp4", seconds=6, fps=25, width=256, height=256, audio=True)
    truncated_faststart(full, videos / "truncated half.mp4")
    build_cosmos_standin(root / "models")
    out = root / "out"
    options = PipelineOptions(input_path=str(videos), output_path=str(out), fixed_stride_split_duration=2.0,
                              fixed_stride_min_clip_length_s=1.0, model_dir=str(root / "models"),
                              generate_embeddings="on", generate_previews=True, generate_captions=True)
    with ChatServer() as server:
        service = CaptionService(base_url=server.base_url, backoff_s=0.01, timeout_s=10)
        report = io.StringIO()
        run_pipeline(options, home=str(root / "home"), stream=report, caption_service=service)
    return videos, out


@pytest.fixture()
def out(written, tmp_path):
    """A private copy of the written layout (its ids embed the input path, which stays the same)."""
    videos, original = written
    copy = tmp_path / "out"
    shutil.copytree(original, copy)
    return videos, copy


def _check(videos: Path, out: Path, rel: str = VIDEO) -> dict[str, lc.CheckOutcome]:
    return lc.check_video(str(out), rel, str(videos / rel))


def _failing(outcomes) -> dict[str, list[str]]:
    return {name: [str(f) for f in o.findings] for name, o in outcomes.items() if not o.passed}


def _meta(out: Path, n: int = 0) -> tuple[Path, dict]:
    chunk = json.loads((out / layout.chunk_file(VIDEO, 0)).read_text())
    uid = chunk["clips"][n]
    path = out / layout.METAS / f"{uid}.json"
    return path, json.loads(path.read_text())


def test_the_written_layout_passes_every_check(written):
    videos, out = written
    outcomes = _check(videos, out)
    assert _failing(outcomes) == {}
    assert outcomes[lc.CLIP_FILES_DECODE].checked == 3 and outcomes[lc.PREVIEWS_COVER_WINDOWS].checked == 3
    assert outcomes[lc.PARQUET_ROWS_MATCH_CLIPS].checked == 1 and outcomes[lc.METAS_MATCH_SPEC].checked == 3
    assert set(outcomes) == set(lc.CHECKS)


def test_a_clip_cut_short_by_its_source_is_explained_by_its_own_error(written):
    videos, out = written
    outcomes = _check(videos, out, "truncated half.mp4")
    assert _failing(outcomes) == {}
    explained = outcomes[lc.CLIP_FILES_DECODE].explained
    assert explained and all("span" in f.why for f in explained), explained


def test_a_missing_or_broken_clip_file_is_named(out):
    videos, out = out
    chunk = json.loads((out / layout.chunk_file(VIDEO, 0)).read_text())
    first, second, third = (f"{layout.CLIPS}/{u}.mp4" for u in chunk["clips"])
    (out / first).unlink()
    data = (out / second).read_bytes()
    (out / second).write_bytes(data[: len(data) // 3])
    (out / layout.FILTERED_CLIPS).mkdir(exist_ok=True)
    shutil.copyfile(out / third, out / layout.FILTERED_CLIPS / Path(third).name)  # in both folders
    failing = _failing(_check(videos, out))
    assert set(failing) == {lc.CLIP_FILES_DECODE}, failing
    text = "\n".join(failing[lc.CLIP_FILES_DECODE])
    assert f"{first}: missing" in text
    assert f"{second}: {len(data) // 3} bytes, its metas/v0 document records {len(data)}" in text
    assert f"{layout.FILTERED_CLIPS}/{Path(third).name}: a passed clip's mp4 is also in filtered_clips/" in text


def test_a_clip_of_the_wrong_length_fails_the_decode_check(out):
    videos, out = out
    path, meta = _meta(out, 0)
    chunk = json.loads((out / layout.chunk_file(VIDEO, 0)).read_text())
    # the second clip's bytes under the first clip's name: it decodes, but holds another span's frames
    (out / layout.CLIPS / f"{chunk['clips'][0]}.mp4").write_bytes((out / layout.CLIPS / f"{chunk['clips'][2]}.mp4").read_bytes())
    meta["num_bytes"] = (out / layout.CLIPS / f"{chunk['clips'][0]}.mp4").stat().st_size
    path.write_text(json.dumps(meta, indent=4))
    (finding,) = _check(videos, out)[lc.CLIP_FILES_DECODE].findings
    assert finding.file == f"{layout.CLIPS}/{chunk['clips'][0]}.mp4"
    assert "frames, its span [0.000, 2.000) s holds 50.0" in finding.why and "lasts" in finding.why


def test_a_clip_whose_keyframe_does_not_decode_fails_the_decode_check(out):
    """The check counts frames from the packets and decodes only keyframes: a keyframe whose bytes
    are destroyed (same size, so only decoding can tell) is still caught."""
    import av

    videos, out = out
    chunk = json.loads((out / layout.chunk_file(VIDEO, 0)).read_text())
    path = out / layout.CLIPS / f"{chunk['clips'][1]}.mp4"
    with av.open(str(path)) as container:
        key = next(p for p in container.demux(container.streams.video[0]) if p.is_keyframe)
        pos, size = key.pos, key.size
    data = bytearray(path.read_bytes())
    data[pos:pos + size] = bytes(size)
    path.write_bytes(bytes(data))
    failing = _failing(_check(videos, out))
    assert set(failing) == {lc.CLIP_FILES_DECODE}, failing
    (why,) = failing[lc.CLIP_FILES_DECODE]
    assert why.startswith(f"{layout.CLIPS}/{path.name}: does not decode"), why


def test_metas_keys_types_and_order_are_the_specs(out):
    videos, out = out
    path, meta = _meta(out, 0)
    meta["width_source"] = str(meta["width_source"])
    meta["extra"] = 1
    path.write_text(json.dumps(meta, indent=4))
    path2, meta2 = _meta(out, 1)
    path2.write_text(json.dumps({"valid": meta2.pop("valid"), **meta2}, indent=4))
    failing = _failing(_check(videos, out))
    assert set(failing) == {lc.METAS_MATCH_SPEC}, failing
    rel, rel2 = (str(p.relative_to(out)) for p in (path, path2))
    assert f"{rel}: width_source '256' is not a positive integer" in failing[lc.METAS_MATCH_SPEC]
    assert f"{rel}: keys not in the spec: 'extra'" in failing[lc.METAS_MATCH_SPEC]
    assert any(f.startswith(f"{rel2}: keys out of the spec's order: valid, span_uuid") for f in failing[lc.METAS_MATCH_SPEC])


def test_a_document_without_a_key_the_spec_requires_is_named(out):
    videos, out = out
    path, meta = _meta(out, 0)
    del meta["height_source"]
    path.write_text(json.dumps(meta, indent=4))
    video_path = out / layout.video_file(VIDEO)
    doc = json.loads(video_path.read_text())
    del doc["pixel_format"]
    video_path.write_text(json.dumps(doc, indent=4))
    failing = _failing(_check(videos, out))
    assert f"{path.relative_to(out)}: missing keys: height_source" in failing[lc.METAS_MATCH_SPEC], failing
    assert f"{layout.video_file(VIDEO)}: missing keys: pixel_format" in failing[lc.VIDEO_DOCUMENT_MATCHES_SPEC], failing


def test_a_meta_whose_valid_flag_lies_is_named(out):
    videos, out = out
    path, meta = _meta(out, 2)
    meta["valid"] = False
    path.write_text(json.dumps(meta, indent=4))
    (finding,) = _check(videos, out)[lc.METAS_MATCH_SPEC].findings
    assert finding.why == "valid is false but the clip has bytes and 1 window(s)"


def _parquet(videos: Path, out: Path) -> Path:
    path = out / layout.parquet_file(str(videos / VIDEO), 0)
    chunk = json.loads((out / layout.chunk_file(VIDEO, 0)).read_text())
    assert set(pq.read_table(path).column("id").to_pylist()) == set(chunk["clips"])
    return path


def test_parquet_rows_must_be_the_passed_clips_with_embeddings(out):
    videos, out = out
    path = _parquet(videos, out)
    table = pq.read_table(path)
    pq.write_table(table.slice(0, 2), path)  # a row lost
    dropped = table.column("id")[2].as_py()
    failing = _failing(_check(videos, out))
    rel = str(path.relative_to(out))
    assert f"{rel}: 2 row(s), its chunk document counts 3 clip(s) with embeddings" in failing[lc.PARQUET_ROWS_MATCH_CLIPS]
    assert f"{rel}: no row for passed clip(s) with an embedding: {dropped}" in failing[lc.PARQUET_ROWS_MATCH_CLIPS]
    # the chunk document's count of embeddings follows the parquet rows: it disagrees now too
    assert any("num_clips_with_embeddings 3, the files give 2" in f for f in failing[lc.CHUNK_COUNTS_MATCH_FILES])


def test_a_parquet_vector_that_differs_from_its_pickle_is_named(out):
    videos, out = out
    path = _parquet(videos, out)
    table = pq.read_table(path)
    vectors = [np.asarray(v, dtype=np.float32) for v in table.column("embedding").to_pylist()]
    vectors[1] = vectors[1] + 1.0
    pq.write_table(pa.table({"id": table.column("id"), "embedding": pa.array(vectors, pa.list_(pa.float32()))}), path)
    (finding,) = _check(videos, out)[lc.PARQUET_ROWS_MATCH_CLIPS].findings
    assert finding.why.startswith(f"the row of {table.column('id')[1].as_py()} differs from ce1_embd/")
    pickle_path = out / layout.CE1_EMBD / f"{table.column('id')[0].as_py()}.pickle"
    pickle_path.write_bytes(pickle.dumps({"not": "an array"}))
    assert any("not a numpy array" in str(f) for f in _check(videos, out)[lc.PARQUET_ROWS_MATCH_CLIPS].findings)


def test_every_window_of_every_passed_clip_has_its_preview(out):
    videos, out = out
    previews = sorted((out / layout.PREVIEWS).rglob("*.webp"))
    own = [p for p in previews if p.parent.name in json.loads((out / layout.chunk_file(VIDEO, 0)).read_text())["clips"]]
    own[0].unlink()
    own[1].write_bytes(b"GIF89a not a webp")
    failing = _failing(_check(videos, out))
    rels = [str(p.relative_to(out)) for p in own[:2]]
    assert failing[lc.PREVIEWS_COVER_WINDOWS] == sorted([f"{rels[0]}: missing", f"{rels[1]}: not a WebP file"])
    assert any("num_clips_with_webp 3, the files give 1" in f for f in failing[lc.CHUNK_COUNTS_MATCH_FILES])


def test_chunk_counts_and_durations_must_agree_with_the_clips(out):
    videos, out = out
    path = out / layout.chunk_file(VIDEO, 0)
    chunk = json.loads(path.read_text())
    chunk["num_clips_passed"] += 1
    chunk["total_clip_duration"] += 0.5
    path.write_text(json.dumps(chunk, indent=4))
    failing = _failing(_check(videos, out))
    rel = layout.chunk_file(VIDEO, 0)
    assert set(failing) == {lc.CHUNK_COUNTS_MATCH_FILES}, failing
    assert f"{rel}: num_clips_passed 4, the files give 3" in failing[lc.CHUNK_COUNTS_MATCH_FILES]
    assert any(f.startswith(f"{rel}: total_clip_duration 5.5, the clips' spans give 5.0") for f in failing[lc.CHUNK_COUNTS_MATCH_FILES])
    # a chunk document past num_clip_chunks (left by an older write): named
    shutil.copyfile(path, out / layout.chunk_file(VIDEO, 1))
    assert any(f.startswith(f"{layout.chunk_file(VIDEO, 1)}: a chunk document past num_clip_chunks")
               for f in _failing(_check(videos, out))[lc.CHUNK_COUNTS_MATCH_FILES])


def test_the_video_document_and_its_pipeline_hash(out):
    videos, out = out
    path = out / layout.video_file(VIDEO)
    doc = json.loads(path.read_text())
    doc["pipeline"]["settings"]["fixed_stride_split_duration"] = 3.0  # edited without its hash
    doc["duration"] = "5"
    path.write_text(json.dumps(doc, indent=4))
    failing = _failing(_check(videos, out))
    rel = layout.video_file(VIDEO)
    assert f"{rel}: duration '5' has the wrong type" in failing[lc.VIDEO_DOCUMENT_MATCHES_SPEC]
    assert any("is not the hash of its settings" in f for f in failing[lc.VIDEO_DOCUMENT_MATCHES_SPEC])


def test_a_video_never_written_fails_every_check_naming_its_document(written, tmp_path):
    videos, _ = written
    outcomes = lc.check_video(str(tmp_path / "empty"), VIDEO, str(videos / VIDEO))
    assert all(not o.passed and o.findings[0].file == layout.video_file(VIDEO) for o in outcomes.values())


def test_a_meta_that_cannot_be_read_is_a_metas_failure(out):
    videos, out = out
    path, _ = _meta(out, 1)
    path.write_text("{not json")
    failing = _failing(_check(videos, out))
    assert any(f.startswith(f"{path.relative_to(out)}: not JSON") for f in failing[lc.METAS_MATCH_SPEC]), failing
