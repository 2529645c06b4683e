"""Text-to-clip search end to end through the CLI: a real written layout (the Cosmos-Embed1
stand-in's video tower embedded its clips), its manifest, and a copy of the stand-in whose text
tower agrees with the video tower on planted (query, clip) pairs: each planted clip must rank
first for its query. Also the refusals that need a real output: a variant other than the one the
output was embedded with, and missing weights."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from curation_assets.cli import main
from curation_assets.core import layout
from curation_assets.packaging import manifest

from .model_fixtures import CosmosStandinSize, build_cosmos_standin, plant_text_pairs
from .packaging_fixtures import make_inputs, write_layout

PLANTED_QUERIES = ["dog", "a red car", "person walking on the street"]
# 2 s clips: 3 + 2 passed, embedded clips and a still video's filtered clip (no embedding)
VIDEOS = {"walk.mp4": dict(seconds=6, width=320, height=256, audio=False),
          "drive/b c.mp4": dict(seconds=4, width=256, height=256, audio=False),
          "still.mp4": dict(still=True, seconds=2)}


@pytest.fixture(scope="module")
def searchable(tmp_path_factory):
    """A written layout with its manifest, and the planted model folder."""
    base = tmp_path_factory.mktemp("search")
    out = base / "out"
    packaging_models = base / "models"  # weights spread wide enough that clips' vectors differ clearly
    build_cosmos_standin(packaging_models, "224p", CosmosStandinSize(extra={"init_std": 0.2}))
    write_layout(make_inputs(base / "in", VIDEOS), str(out), packaging_models, rels=list(VIDEOS),
                 generate_captions=False, enhance_captions=False)
    assert main(["package", "manifest", "--output-path", str(out)]) == 0
    table = manifest.read_manifest(str(out), columns=["clip_uuid", "embedding", "passed"])
    rows = [r for r in table.to_pylist() if r["embedding"] is not None]
    assert len(rows) >= len(PLANTED_QUERIES) + 1, "the layout needs more embedded clips than planted queries"
    # plant the queries on clips spread over the list (not simply the first ones)
    picks = [rows[i] for i in np.linspace(len(rows) - 1, 0, len(PLANTED_QUERIES)).astype(int)]
    pairs = {q: np.asarray(r["embedding"], np.float32) for q, r in zip(PLANTED_QUERIES, picks, strict=True)}
    src = Path(packaging_models) / "nvidia" / "Cosmos-Embed1-224p"
    models = base / "planted-models"
    plant_text_pairs(src, models / "nvidia" / "Cosmos-Embed1-224p", pairs)
    return out, models, {q: r["clip_uuid"] for q, r in zip(PLANTED_QUERIES, picks, strict=True)}, len(rows)


def run_json(capsys, *argv: str) -> dict:
    assert main(["search", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_each_planted_clip_ranks_first(searchable, capsys):
    out, models, planted, num_embedded = searchable
    for query, clip in planted.items():
        doc = run_json(capsys, query, "--output-path", str(out), "--model-dir", str(models), "--device", "cpu",
                       "--top-k", "3")
        assert doc["model"] == "cosmos-embed1-224p" and doc["method"] == "exact"
        assert doc["num_clips"] == num_embedded
        first = doc["results"][0]
        assert first["clip_uuid"] == clip, (query, doc["results"])
        assert first["score"] == pytest.approx(1.0, abs=1e-4)
        assert doc["results"][1]["score"] < first["score"] - 1e-3  # well beyond float error
        assert [r["rank"] for r in doc["results"]] == [1, 2, 3]
        # joined to the manifest: source, span, preview of the clip
        row = manifest.read_manifest(str(out), filter=manifest.ds.field("clip_uuid") == clip).to_pylist()[0]
        assert first["source_video"] == row["source_video"]
        assert (first["span_start_s"], first["span_end_s"]) == (row["span_start_s"], row["span_end_s"])
        assert first["passed"] is True and first["preview"] == row["windows"][0]["preview_url"]
        assert Path(first["preview"]).is_file()
        # the gallery's script for this search
        script = Path(out / "gallery" / "searches" / (doc["gallery"].split("#search=")[1] + ".js")).read_text()
        loaded = json.loads(script[len("galleryLoad("):-3])
        assert loaded["query"] == query and loaded["results"][0]["clip_uuid"] == clip
        assert loaded["results"][0]["fragment"] == manifest.fragment_name(row["rel_path"])


def test_table_output_and_no_gallery(searchable, capsys):
    out, models, planted, _ = searchable
    before = set((out / "gallery" / "searches").glob("*.js")) if (out / "gallery").exists() else set()
    rc = main(["search", "dog", "--output-path", str(out), "--model-dir", str(models), "--top-k", "2",
               "--no-gallery"])
    text = capsys.readouterr().out
    assert rc == 0
    lines = text.splitlines()
    first = next(line for line in lines if line.strip().startswith("1 "))
    row = manifest.read_manifest(str(out), filter=manifest.ds.field("clip_uuid") == planted["dog"]).to_pylist()[0]
    assert planted["dog"] in first and "passed" in first and row["source_video"] in first
    assert f"{row['span_start_s']:.2f}-{row['span_end_s']:.2f}s" in first
    assert row["windows"][0]["preview_url"] in text
    assert "gallery:" not in text
    after = set((out / "gallery" / "searches").glob("*.js")) if (out / "gallery").exists() else set()
    assert after == before


def test_a_new_parquet_is_searched_after_the_cache_is_rebuilt(searchable, capsys, tmp_path):
    out, models, planted, num_embedded = searchable
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    # a clip that only the cache rebuild can know about: the "dog" vector, in a new chunk file
    dog_row = manifest.read_manifest(str(copy), filter=manifest.ds.field("clip_uuid") == planted["dog"]).to_pylist()[0]
    new_id = str(uuid.uuid4())
    vector = np.asarray(dog_row["embedding"], np.float32) * 3.0
    import pyarrow as pa

    pq.write_table(pa.table({"id": [new_id], "embedding": pa.array([vector], pa.list_(pa.float32()))}),
                   copy / layout.CE1_EMBD_PARQUET / f"{uuid.uuid4()}.parquet")
    doc = run_json(capsys, "dog", "--output-path", str(copy), "--model-dir", str(models), "--top-k", "2")
    assert doc["num_clips"] == num_embedded + 1
    assert {r["clip_uuid"] for r in doc["results"]} == {planted["dog"], new_id}
    unknown = next(r for r in doc["results"] if r["clip_uuid"] == new_id)
    assert unknown["in_manifest"] is False and unknown["source_video"] is None


def test_another_variant_is_refused(searchable, capsys):
    out, models, _, _ = searchable
    rc = main(["search", "dog", "--output-path", str(out), "--model-dir", str(models),
               "--embedding-algorithm", "336p"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "does not match the variant the output was embedded with (cosmos-embed1-224p" in err


def test_missing_weights_give_the_pipelines_message(searchable, capsys, tmp_path):
    out, _, _, _ = searchable
    rc = main(["search", "dog", "--output-path", str(out), "--model-dir", str(tmp_path / "no-models")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "Cosmos-Embed1 (cosmos-embed1-224p) weights not found (nvidia/Cosmos-Embed1-224p)" in err
    assert "Download them with:" in err and "docs/models.md" in err


def test_search_an_object_store_output(searchable, capsys, s3_bucket, tmp_path, monkeypatch):
    """An s3:// output: read through the storage layer, the cache kept on local disk (memory maps
    need one), the gallery's script written to the bucket and its s3:// address printed."""
    out, models, planted, num_embedded = searchable
    from curation_assets.core import storage

    url = f"{s3_bucket}/curated"
    for path in out.rglob("*"):
        rel = path.relative_to(out).as_posix()
        if path.is_file() and not rel.startswith(("manifest/", "search/", "gallery/")):
            storage.write_bytes_atomic(f"{url}/{rel}", path.read_bytes())
    assert main(["package", "manifest", "--output-path", url]) == 0
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    capsys.readouterr()
    doc = run_json(capsys, "a red car", "--output-path", url, "--model-dir", str(models), "--top-k", "2")
    first = doc["results"][0]
    assert first["clip_uuid"] == planted["a red car"] and first["source_video"]
    assert first["preview"].startswith(f"{url}/previews/")
    assert doc["num_clips"] == num_embedded
    assert doc["gallery"].startswith(f"{url}/gallery/index.html#search=a-red-car-")
    slug = doc["gallery"].split("#search=")[1]
    script = storage.read_bytes(f"{url}/gallery/searches/{slug}.js").decode()
    assert json.loads(script[len("galleryLoad("):-3])["results"][0]["clip_uuid"] == planted["a red car"]
    caches = list((tmp_path / "cache" / "curation-assets" / "search").glob("*/cache.json"))
    assert len(caches) == 1
    assert not any(u.startswith(f"{url}/search/") for u in storage.list_files(url))


def test_embed_texts_is_the_text_towers_normalised_output(searchable):
    from curation_assets.models.embeddings import CosmosEmbedder

    _, models, _, _ = searchable
    texts = ["dog", "a red car", "person walking on the street", "the cat"]
    one = CosmosEmbedder(model_dir=str(models), device="cpu", batch_size=1).embed_texts(texts)
    three = CosmosEmbedder(model_dir=str(models), device="cpu", batch_size=3).embed_texts(texts)
    assert one.dtype == np.float32 and one.shape == (4, 256)
    np.testing.assert_allclose(np.linalg.norm(one, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(one, three, atol=1e-5)  # batching (padding to max_txt_len) changes nothing
    assert CosmosEmbedder(model_dir=str(models), device="cpu").embed_texts([]).shape == (0, 256)


def test_the_index_path_through_the_cli(searchable, capsys):
    pytest.importorskip("faiss")
    out, models, planted, _ = searchable
    doc = run_json(capsys, "dog", "--output-path", str(out), "--model-dir", str(models), "--index", "ann",
                   "--no-gallery")
    assert doc["method"] == "faiss-hnsw" and doc["results"][0]["clip_uuid"] == planted["dog"]
    assert doc["gallery"] is None
