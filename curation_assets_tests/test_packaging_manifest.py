"""The clip manifest agrees with ``metas/v0`` row for row, is one fragment per video (re-writing a
video touches only its fragment) and reads with pyarrow, pandas and DuckDB."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from curation_assets.core import layout
from curation_assets.core.layout_read import read_video_layout
from curation_assets.packaging import manifest

from .layout_checks import all_files
from .packaging_fixtures import (  # noqa: F401 - fixtures
    VIDEOS,
    packaging_inputs,
    packaging_models,
    write_layout,
    written_layout,
)


@pytest.fixture
def out(written_layout, tmp_path) -> Path:
    copy = tmp_path / "out"
    shutil.copytree(written_layout, copy)
    for rel in VIDEOS:
        manifest.write_fragment(str(copy), read_video_layout(str(copy), rel))
    return copy


def test_manifest_agrees_with_metas_row_for_row(out):
    table = manifest.read_manifest(str(out))
    rows = {r["clip_uuid"]: r for r in table.to_pylist()}
    files = all_files(out)
    metas = {f.split("/")[-1][:-5]: json.loads((out / f).read_text()) for f in files if f.startswith("metas/v0/")}
    assert set(rows) == set(metas) and table.num_rows == len(metas)
    for uid, meta in metas.items():
        row = rows[uid]
        assert row["source_video"] == meta["source_video"]
        assert [row["span_start_s"], row["span_end_s"]] == meta["duration_span"]
        assert (row["source_width"], row["source_height"], row["source_framerate"]) == (
            meta["width_source"], meta["height_source"], meta["framerate_source"])
        for key in ("width", "height", "framerate", "num_frames", "video_codec", "num_bytes", "valid"):
            assert row[key] == meta.get(key), key
        assert row["motion_global_mean"] == meta["motion_score"]["global_mean"]
        assert row["motion_per_patch_min_256"] == meta["motion_score"]["per_patch_min_256"]
        assert row["errors"] == [{"key": k, "message": meta["error_details"][k]} for k in meta.get("errors", [])]
        assert [(w["start_frame"], w["end_frame"]) for w in row["windows"]] == [
            (w["start_frame"], w["end_frame"]) for w in meta["windows"]]
        for w, mw in zip(row["windows"], meta["windows"]):
            assert {c["model"]: c["text"] for c in w["captions"]} == {
                k[: -len("_caption")]: v for k, v in mw.items() if k.endswith("_caption") and not k.endswith("_enhanced_caption")}
            assert {c["model"]: c["text"] for c in w["enhanced_captions"]} == {
                k[: -len("_enhanced_caption")]: v for k, v in mw.items() if k.endswith("_enhanced_caption")}
        passed = f"clips/{uid}.mp4" in files
        assert row["passed"] is passed and (f"filtered_clips/{uid}.mp4" in files) is not passed
        assert row["clip_url"] == str(out / ("clips" if passed else "filtered_clips") / f"{uid}.mp4")
        assert row["filtered_by"] == (None if passed else "motion")
        pickle_file = out / layout.CE1_EMBD / f"{uid}.pickle"
        if pickle_file.exists():
            assert np.array_equal(np.asarray(row["embedding"], np.float32), pickle.loads(pickle_file.read_bytes()).reshape(-1))
        else:
            assert row["embedding"] is None and not passed
        if passed:
            assert row["caption"] == meta["windows"][0]["qwen_caption"]
            assert row["windows"][0]["preview_url"] and Path(row["windows"][0]["preview_url"]).exists()


def test_pandas_and_duckdb_read_the_folder(out):
    import duckdb

    folder = out / manifest.MANIFEST_DIR
    n = manifest.read_manifest(str(out)).num_rows
    frame = pd.read_parquet(folder)
    assert len(frame) == n and set(frame.columns) == set(manifest.SCHEMA.names)
    con = duckdb.connect()
    got = con.sql(f"""
        select count(*), count(embedding), sum(case when passed then 1 else 0 end),
               max(len(embedding)), max(windows[1].captions[1].text is not null)
        from read_parquet('{folder}/*.parquet')""").fetchall()[0]
    assert got[0] == n and got[1] == 3 and got[2] == 3 and got[3] == 256 and got[4] is True
    by_video = dict(con.sql(f"select rel_path, count(*) from read_parquet('{folder}/*.parquet') group by 1").fetchall())
    assert by_video == {"a.mp4": 2, "sub/b c.mp4": 1, "still.mp4": 1}


def test_rewriting_one_video_rewrites_only_its_fragment(out, packaging_inputs, packaging_models):
    fragments = {rel: Path(manifest.fragment_url(str(out), rel)) for rel in VIDEOS}
    before = {rel: (p.stat().st_mtime_ns, p.read_bytes()) for rel, p in fragments.items()}
    write_layout(packaging_inputs, str(out), packaging_models, rels=["a.mp4"], tag="v2")  # new captions
    manifest.write_fragment(str(out), read_video_layout(str(out), "a.mp4"))
    after = {rel: (p.stat().st_mtime_ns, p.read_bytes()) for rel, p in fragments.items()}
    assert after["a.mp4"][1] != before["a.mp4"][1]
    assert all(after[rel] == before[rel] for rel in VIDEOS if rel != "a.mp4")
    captions = manifest.read_manifest(str(out), columns=["rel_path", "caption"]).to_pylist()
    assert all(r["caption"].startswith("v2 ") for r in captions if r["rel_path"] == "a.mp4")
    assert all(r["caption"].startswith("v1 ") for r in captions if r["rel_path"] == "sub/b c.mp4")


def test_the_same_video_gives_the_same_fragment_bytes(out, tmp_path):
    again = tmp_path / "again"
    shutil.copytree(out, again)
    for rel in VIDEOS:
        manifest.write_fragment(str(again), read_video_layout(str(again), rel))
    # the URLs differ with the folder; everything else is the same
    urls = ["clip_url", "meta_url", "embedding_url", "windows"]
    assert manifest.read_manifest(str(out)).drop_columns(urls).equals(manifest.read_manifest(str(again)).drop_columns(urls))


def test_a_removed_video_loses_its_fragment_and_names_never_matter(out):
    gone = Path(manifest.fragment_url(str(out), "still.mp4"))
    assert gone.exists()
    (out / layout.video_file("still.mp4")).unlink()
    assert manifest.write_fragment(str(out), read_video_layout(str(out), "still.mp4")) is None
    assert not gone.exists()
    stranger = out / manifest.MANIFEST_DIR / "notes.parquet"  # not a fragment name: left alone
    stranger.write_bytes(b"x")
    removed = manifest.remove_fragments(str(out), {"a.mp4"})
    assert removed == [manifest.fragment_url(str(out), "sub/b c.mp4")] and stranger.exists()
    assert all(len(Path(manifest.fragment_url(str(out), r)).stem) == 32 for r in ("x" * 500, "a b/[c].mp4"))


def test_schema_table_lists_every_column():
    text = manifest.schema_markdown()
    assert all(f"`{name}`" in text for name in manifest.SCHEMA.names)


def test_manifest_on_s3(s3_bucket, packaging_inputs, packaging_models, out):
    s3_out = f"{s3_bucket}/out"
    write_layout(packaging_inputs, s3_out, packaging_models, rels=["a.mp4", "still.mp4"])
    for rel in ("a.mp4", "still.mp4"):
        assert manifest.write_fragment(s3_out, read_video_layout(s3_out, rel)).startswith("s3://")
    remote = manifest.read_manifest(s3_out)
    local = manifest.read_manifest(str(out), filter=manifest.ds.field("rel_path") != "sub/b c.mp4")
    assert sorted(remote.column("num_bytes").to_pylist()) == sorted(local.column("num_bytes").to_pylist())
    assert all(u.startswith("s3://") for u in remote.column("clip_url").to_pylist())
