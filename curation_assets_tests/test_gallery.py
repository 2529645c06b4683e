"""The gallery's files, built from a real written layout and its manifest (no browser here:
test_gallery_browser.py opens them): one card per manifest row, links only from validated layout
paths, an incremental build that rewrites one fragment and the index, concurrent builds that lose
no entry, removed videos that drop out, an s3:// output, the CLI and the Dagster asset."""

from __future__ import annotations

import dataclasses
import json
import shutil
import threading
from pathlib import Path

import dagster as dg
import fsspec
import pyarrow as pa
import pytest

from curation_assets.cli import main
from curation_assets.core import layout
from curation_assets.core.keys import key_from_rel_path
from curation_assets.core.layout_read import read_video_layout
from curation_assets.core.options import PipelineOptions
from curation_assets.defs.packaging.gallery import gallery_assets
from curation_assets.defs.shared.resources import CurationSettings
from curation_assets.gallery import data, site
from curation_assets.packaging import manifest

from .packaging_fixtures import (  # noqa: F401 - fixtures
    VIDEOS,
    packaging_inputs,
    packaging_models,
    written_layout,
)

HOSTILE = "<img src=x onerror=\"window.__pwned=1\"> a caption </script><script>window.__pwned=2</script>"


def write_manifest(out: str) -> None:
    for rel in VIDEOS:
        manifest.write_fragment(out, read_video_layout(out, rel))


def set_caption(out: str, rel: str, text: str) -> str:
    """Rewrite the first clip's first caption of ``rel``'s fragment (through the manifest's writer);
    returns the clip's uuid."""
    table = manifest.read_fragment(out, rel)
    rows = table.to_pylist()
    target = next(r for r in rows if r["windows"] and r["windows"][0]["captions"])
    target["windows"][0]["captions"][0]["text"] = text
    target["caption"] = text
    new = pa.Table.from_pylist(rows, schema=manifest.SCHEMA)
    manifest.write_fragment(out, read_video_layout(out, rel), new)
    return target["clip_uuid"]


@pytest.fixture
def out(written_layout, tmp_path) -> Path:  # noqa: F811 - a fixture
    copy = tmp_path / "out"
    shutil.copytree(written_layout, copy)
    write_manifest(str(copy))
    return copy


def payload(out: Path, rel: str) -> dict:
    return site.read_script((out / "gallery" / "data" / f"{manifest.fragment_name(rel)}.js").read_bytes())


def test_one_card_per_manifest_row_with_what_the_manifest_says(out):
    build = site.build_gallery(str(out))
    table = manifest.read_manifest(str(out))
    assert build.clips == table.num_rows == sum(1 for _ in table.column("clip_uuid"))
    assert build.videos == len(VIDEOS) and sorted(build.written) == sorted(manifest.fragment_name(r) for r in VIDEOS)
    rows = {r["clip_uuid"]: r for r in table.to_pylist()}
    cards = {c["uuid"]: (rel, c) for rel in VIDEOS for c in payload(out, rel)["clips"]}
    assert cards.keys() == rows.keys()
    for uuid, (rel, c) in cards.items():
        row = rows[uuid]
        assert row["rel_path"] == rel and c["passed"] == row["passed"]
        assert c["filtered_by"] == row["filtered_by"] and c["width"] == row["width"]
        assert c["motion"] == pytest.approx(row["motion_global_mean"], abs=1e-4)
        assert [t for w in c["windows"] for t in w["captions"]] == [[t["model"], t["text"]] for w in row["windows"]
                                                                   for t in w["captions"]]
        assert [t for w in c["windows"] for t in w["enhanced"]] == [[t["model"], t["text"]] for w in row["windows"]
                                                                   for t in w["enhanced_captions"]]
        for w, mw in zip(c["windows"], row["windows"], strict=True):  # a link only where a preview was written
            assert w["preview"] == (layout.preview_path(uuid, mw["start_frame"], mw["end_frame"])
                                    if mw["preview_url"] else None)
            assert w["preview"] is None or (out / w["preview"]).is_file()
        assert c["clip"] == layout.clip_path(uuid, filtered=not row["passed"]) and (out / c["clip"]).is_file()
    index = site.read_index(str(out))
    assert sum(e["clips"] for e in index.values()) == table.num_rows
    assert {e["name"] for e in index.values()} == set(VIDEOS)
    for e in index.values():  # the index's column i is the fragment's clip i
        clips = payload(out, e["name"])["clips"]
        assert data.columns(e)["k"].tolist() == [(data.PASSED if c["passed"] else 0)
                                  | (data.HAS_CAPTION if any(w["captions"] for w in c["windows"]) else 0)
                                  | (data.HAS_PREVIEW if any(w["preview"] for w in c["windows"]) else 0)
                                  for c in clips]
    for name in site.STATIC_FILES:
        assert (out / "gallery" / name).is_file()


def test_a_hostile_caption_is_data_and_a_bad_id_or_link_is_dropped(out):
    uuid = set_caption(str(out), "a.mp4", HOSTILE)
    table = manifest.read_fragment(str(out), "a.mp4")
    rows = table.to_pylist()
    rows[-1]["clip_uuid"] = "../../etc/passwd"  # not a canonical uuid: no card at all
    rows[0]["windows"][0]["preview_url"] = "https://evil.example/x.webp"  # not the layout's preview: no link
    manifest.write_fragment(str(out), read_video_layout(str(out), "a.mp4"), pa.Table.from_pylist(
        rows, schema=manifest.SCHEMA))
    site.build_gallery(str(out))
    raw = (out / "gallery" / "data" / f"{manifest.fragment_name('a.mp4')}.js").read_bytes()
    assert b"</script>" not in raw and b"<img" not in raw  # escaped in the JSON (\u003c...)
    clips = {c["uuid"]: c for c in site.read_script(raw)["clips"]}
    assert "../../etc/passwd" not in clips and len(clips) == len(rows) - 1
    assert clips[uuid]["windows"][0]["captions"][0][1] == HOSTILE
    assert clips[rows[0]["clip_uuid"]]["windows"][0]["preview"] is None


def test_rebuilding_one_video_rewrites_only_its_fragment_and_the_index(out):
    site.build_gallery(str(out))
    files = {rel: out / "gallery" / "data" / f"{manifest.fragment_name(rel)}.js" for rel in VIDEOS}
    before = {rel: (p.stat().st_mtime_ns, p.read_bytes()) for rel, p in files.items()}
    statics = {n: (out / "gallery" / n).stat().st_mtime_ns for n in site.STATIC_FILES}
    index_before = (out / "gallery" / "index.js").stat().st_mtime_ns
    uuid = set_caption(str(out), "sub/b c.mp4", "a new caption")
    build = site.build_gallery(str(out), videos=["sub/b c.mp4"])
    assert build.written == [manifest.fragment_name("sub/b c.mp4")] and build.videos == len(VIDEOS)
    for rel, p in files.items():
        if rel == "sub/b c.mp4":
            assert p.read_bytes() != before[rel][1]
            assert {c["uuid"]: c for c in payload(out, rel)["clips"]}[uuid]["windows"][0]["captions"][0][1] == \
                "a new caption"
        else:
            assert (p.stat().st_mtime_ns, p.read_bytes()) == before[rel], rel
    assert {n: (out / "gallery" / n).stat().st_mtime_ns for n in site.STATIC_FILES} == statics
    index = site.read_index(str(out))
    assert (out / "gallery" / "index.js").stat().st_mtime_ns != index_before and len(index) == len(VIDEOS)


def test_a_video_removed_from_the_manifest_drops_out(out):
    site.build_gallery(str(out))
    gone = manifest.fragment_name("still.mp4")
    manifest.remove_fragments(str(out), set(VIDEOS) - {"still.mp4"})
    build = site.build_gallery(str(out), videos=["still.mp4"])
    assert build.removed == [gone] and gone not in site.read_index(str(out))
    assert not (out / "gallery" / "data" / f"{gone}.js").exists()
    site.build_gallery(str(out))  # a full build agrees
    assert set(site.read_index(str(out))) == {manifest.fragment_name(r) for r in VIDEOS if r != "still.mp4"}


def test_concurrent_builds_of_different_videos_lose_no_index_entry(out):
    """Many videos built at once, each by its own writer with no lock between them (as partition
    runs on an object store): the index ends up naming every one."""
    table = manifest.read_fragment(str(out), "a.mp4")
    rels = [f"many/v{i:02d}.mp4" for i in range(24)]
    video = read_video_layout(str(out), "a.mp4")
    for rel in rels:  # the same rows under other videos' names, through the manifest's writer
        rows = table.set_column(table.schema.get_field_index("rel_path"), "rel_path",
                                pa.array([rel] * table.num_rows, pa.string()))
        manifest.write_fragment(str(out), dataclasses.replace(video, rel_path=rel), rows)
    assert len(site.manifest_fragments(str(out))) == len(VIDEOS) + len(rels)
    barrier = threading.Barrier(len(rels))
    errors = []

    def one(rel: str) -> None:
        try:
            barrier.wait()
            site.build_gallery(str(out), videos=[rel])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(r,)) for r in rels]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert set(site.read_index(str(out))) == {manifest.fragment_name(r) for r in rels}


def test_a_write_of_a_stale_index_is_repaired_by_its_writer(out, monkeypatch):
    """The losing interleaving, forced: A lists ``data/`` before B's fragment exists, B writes its
    index, then A writes one without B. A's own second look at ``data/`` must put B back."""
    real_write = site._write_index
    paused, release = threading.Event(), threading.Event()

    def write_index(output_path, entries):
        if threading.current_thread().name == "A" and not paused.is_set():
            paused.set()
            release.wait(60)
        real_write(output_path, entries)

    monkeypatch.setattr(site, "_write_index", write_index)
    a = threading.Thread(target=site.build_gallery, args=(str(out), ["a.mp4"]), name="A")
    a.start()  # a gallery built video by video, from nothing
    assert paused.wait(60)
    site.build_gallery(str(out), videos=["sub/b c.mp4"])
    assert set(site.read_index(str(out))) == {manifest.fragment_name(r) for r in ("a.mp4", "sub/b c.mp4")}
    release.set()
    a.join(60)
    assert set(site.read_index(str(out))) == {manifest.fragment_name(r) for r in ("a.mp4", "sub/b c.mp4")}


def test_the_datacard_is_linked_when_it_exists(out):
    site.build_gallery(str(out))
    assert json.loads(json.dumps(site.read_script((out / "gallery" / "index.js").read_bytes())))["datacard"] is None
    (out / "gallery" / "datacard.html").write_text("<p>card</p>")
    site.build_gallery(str(out), videos=["a.mp4"])
    assert site.read_script((out / "gallery" / "index.js").read_bytes())["datacard"] == "datacard.html"


def test_search_slugs_are_validated():
    for bad in ("", "../x", "A", "a/b", "x" * 65, "a.b"):
        with pytest.raises(ValueError, match="slug"):
            site.search_url("/tmp/out", bad)
    assert site.search_url("/tmp/out", "a-dog-1").endswith("gallery/searches/a-dog-1.js")


def test_the_cli_prints_the_url_and_says_what_writes_the_manifest(out, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["gallery", "--output-path", str(empty)]) == 2
    said = capsys.readouterr().out
    assert "no manifest" in said and "curation-assets package manifest" in said
    assert not (empty / "gallery").exists()
    assert main(["gallery", "--output-path", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"open the gallery:  {(out / 'gallery' / 'index.html').resolve().as_uri()}" in said
    assert main(["gallery", "--output-path", str(out), "--video", "a.mp4"]) == 0
    assert "1 video(s) written" in capsys.readouterr().out


def test_an_s3_output_gets_the_site_with_relative_links(out, s3_bucket):
    fs = fsspec.filesystem("s3")
    s3_out = f"{s3_bucket}/out"
    fs.put(str(out) + "/", s3_out.removeprefix("s3://"), recursive=True)
    write_manifest(s3_out)  # the fragments of the s3 layout: its locations are s3:// URLs
    build = site.build_gallery(s3_out)
    assert build.url == f"{s3_out}/gallery/index.html" and build.clips == manifest.read_manifest(str(out)).num_rows
    names = {p.rsplit("/", 1)[-1] for p in fs.find(f"{s3_out.removeprefix('s3://')}/gallery")}
    assert set(site.STATIC_FILES) | {"index.js"} <= names
    raw = fs.cat_file(f"{s3_out.removeprefix('s3://')}/gallery/data/{manifest.fragment_name('a.mp4')}.js")
    assert b"s3://" not in raw and b"previews/" in raw
    assert site.read_script(raw)["clips"][0]["windows"][0]["preview"].startswith("previews/")


def test_the_asset_links_each_videos_gallery_view(out, packaging_inputs):  # noqa: F811 - a fixture
    options = PipelineOptions(input_path=str(packaging_inputs), output_path=str(out))
    key = key_from_rel_path("sub/b c.mp4")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("videos", [key_from_rel_path(r) for r in VIDEOS])
        result = dg.materialize(gallery_assets(), partition_key=key, instance=instance,
                                resources={"settings": CurationSettings.from_options(options)})
        assert result.success
        md = result.asset_materializations_for_node("clip_gallery")[0].metadata
    fragment = manifest.fragment_name("sub/b c.mp4")
    assert md["gallery"].value == (out / "gallery" / "index.html").resolve().as_uri() + f"#video={fragment}"
    assert (out / "gallery" / "data" / f"{fragment}.js").is_file()
    assert list(site.read_index(str(out))) == [fragment]  # only this video was asked for


def test_an_unreadable_fragment_fails_only_its_videos_partition(out, packaging_inputs):  # noqa: F811 - a fixture
    options = PipelineOptions(input_path=str(packaging_inputs), output_path=str(out))
    keys = [key_from_rel_path(r) for r in ("a.mp4", "still.mp4")]
    (out / manifest.MANIFEST_DIR / f"{manifest.fragment_name('still.mp4')}.parquet").write_bytes(b"not parquet")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("videos", keys)
        result = dg.materialize(gallery_assets(), instance=instance, raise_on_error=False,
                                resources={"settings": CurationSettings.from_options(options)},
                                tags={"dagster/asset_partition_range_start": keys[0],
                                      "dagster/asset_partition_range_end": keys[1]})
        assert not result.success
        done = {m.partition for m in (r.asset_materialization for r in instance.fetch_materializations(
            dg.AssetKey("clip_gallery"), limit=10).records)}
    assert done == {keys[0]}
    assert set(site.read_index(str(out))) == {manifest.fragment_name("a.mp4")}


def test_a_full_build_leaves_out_and_names_an_unreadable_fragment(out, capsys):
    bad = out / manifest.MANIFEST_DIR / f"{manifest.fragment_name('still.mp4')}.parquet"
    bad.write_bytes(b"not parquet")
    assert main(["gallery", "--output-path", str(out)]) == 1
    said = capsys.readouterr().out
    assert f"{bad}: unreadable, its video is not in the gallery" in said and "open the gallery:" in said
    assert {e["name"] for e in site.read_index(str(out)).values()} == {"a.mp4", "sub/b c.mp4"}
