"""WebDataset shards: read back with the ``webdataset`` library and with megatron-energon, the same
bytes for the same input, one group rewritten when one video changes, whole files when killed."""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import av
import numpy as np
import pytest

from curation_assets.core import layout, storage, temp_files
from curation_assets.core.layout_read import read_video_layout
from curation_assets.packaging import shards
from curation_assets.cli import main as package_main
from curation_assets.packaging.manifest import first_caption
from curation_assets.packaging.sample import SAMPLE_KEYS, sample_json

from .packaging_fixtures import (  # noqa: F401 - fixtures
    VIDEOS,
    packaging_inputs,
    packaging_models,
    write_layout,
    written_layout,
)


def layouts(out: Path | str) -> list:
    return [read_video_layout(str(out), rel) for rel in VIDEOS]


def selected(out: Path | str, selection: shards.Selection = shards.Selection()) -> dict[str, object]:
    return {c.uuid: c for v in layouts(out) for c in v.clips if selection.skip_reason(c) is None}


def tars(dest: Path) -> dict[str, bytes]:
    return {str(p.relative_to(dest)): p.read_bytes() for p in sorted(dest.rglob("*.tar"))}


@pytest.fixture
def out(written_layout, tmp_path) -> Path:
    copy = tmp_path / "out"
    shutil.copytree(written_layout, copy)
    return copy


def test_webdataset_reads_every_selected_clip_once(out):
    import webdataset as wds

    dest = Path(shards.default_dest(str(out)))
    result = shards.build_shards(layouts(out), str(dest), shards.ShardSettings(num_groups=4, max_shard_samples=1))
    want = selected(out)
    videos = {c.uuid: v for v in layouts(out) for c in v.clips}
    assert len(want) == 3 and result.index["splits"]["train"]["samples"] == 3
    urls = [str(dest / s["name"]) for s in result.index["shards"]]
    seen = []
    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
        key = sample["__key__"]
        seen.append(key)
        clip = want[key]
        meta = json.loads(sample["json"])
        assert meta == sample_json(videos[key], clip) and list(meta) == list(SAMPLE_KEYS)
        assert sample["mp4"] == Path(clip.clip_url).read_bytes()
        with av.open(io.BytesIO(sample["mp4"])) as c:
            assert sum(1 for _ in c.decode(video=0)) == meta["num_frames"]
        vector = np.load(io.BytesIO(sample["npy"]))
        assert vector.dtype == np.float32 and np.array_equal(
            vector, pickle.loads(Path(clip.embedding_url).read_bytes()).reshape(-1))
        assert sample["txt"].decode() == first_caption(clip) == meta["caption"] == clip.meta["windows"][0]["qwen_caption"]
    assert sorted(seen) == sorted(want)  # every selected clip, once
    assert shards.verify_shards(str(dest), result.index) == []


def test_members_are_contiguous_fixed_and_owned_by_nobody(out):
    dest = out / "webdataset" / "x"
    result = shards.build_shards(layouts(out), str(dest), shards.ShardSettings(num_groups=1))
    (shard,) = result.index["shards"]
    with tarfile.open(dest / shard["name"]) as tar:
        members = tar.getmembers()
    assert [m.name.split(".")[1] for m in members] == ["json", "mp4", "npy", "txt"] * 3
    keys = [m.name.split(".")[0] for m in members]
    assert keys == sorted(keys, key=keys.index) and len(set(keys)) == 3  # each key's members together
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {(0, 0, 0, "", "", 0o644)}
    assert (dest / shard["name"]).read_bytes()[257:262] == b"ustar"


def test_same_input_same_bytes_and_caps(out, tmp_path):
    settings = shards.ShardSettings(num_groups=3, max_shard_bytes=100_000)
    a = shards.build_shards(layouts(out), str(tmp_path / "a"), settings)
    b = shards.build_shards(layouts(out), str(tmp_path / "b"), settings)
    assert tars(tmp_path / "a") == tars(tmp_path / "b") and a.index["shards"] == b.index["shards"]
    for s in a.index["shards"]:
        size = (tmp_path / "a" / s["name"]).stat().st_size
        assert size == s["bytes"] and (size <= settings.max_shard_bytes or s["samples"] == 1)
    one = shards.build_shards(layouts(out), str(tmp_path / "c"), shards.ShardSettings(num_groups=1, max_shard_samples=2))
    assert [s["samples"] for s in one.index["shards"]] == [2, 1]


def test_reprocessing_one_video_rewrites_only_its_group(out, packaging_inputs, packaging_models):
    dest = out / "webdataset" / "default"
    settings = shards.ShardSettings(num_groups=8, max_shard_samples=1)
    first = shards.build_shards(layouts(out), str(dest), settings)
    group = shards.shard_group("a.mp4", 8)
    assert len({shards.shard_group(r, 8) for r in VIDEOS}) == 3  # the three videos in three groups
    before = {p: (dest / p).stat().st_mtime_ns for p in tars(dest)}
    time.sleep(0.01)
    again = shards.build_shards(layouts(out), str(dest), settings)
    assert again.rebuilt_groups == [] and {p: (dest / p).stat().st_mtime_ns for p in tars(dest)} == before

    # a.mp4 again, now cut into one clip: its group loses a shard, the others are not touched
    write_layout(packaging_inputs, str(out), packaging_models, rels=["a.mp4"], tag="v2", limit_clips=1)
    third = shards.build_shards(layouts(out), str(dest), settings)
    assert third.rebuilt_groups == [group]
    after = {p: (dest / p).stat().st_mtime_ns for p in tars(dest)}
    mine = [p for p in before if f"/g{group:04d}-" in p]
    assert len(mine) == 2 and set(third.written) == {mine[0]} and mine[1] in third.removed
    assert mine[1] not in after and after[mine[0]] != before[mine[0]]
    assert {p: t for p, t in after.items() if p not in mine} == {p: t for p, t in before.items() if p not in mine}
    assert third.index["splits"]["train"]["samples"] == 2

    # changed settings: everything is rebuilt, old names go
    fourth = shards.build_shards(layouts(out), str(dest), shards.ShardSettings(num_groups=2))
    assert set(tars(dest)) == set(fourth.written) and all(f"g{g:04d}" for g in fourth.rebuilt_groups)


def test_shards_of_another_sample_format_are_rebuilt(out, tmp_path, monkeypatch):
    """Same settings, same clips, but samples of an older format (other keys or members): the next
    run rewrites every group instead of keeping old samples beside new ones."""
    from curation_assets.packaging import shard_plan

    dest = str(tmp_path / "ds")
    settings = shards.ShardSettings(num_groups=3)
    monkeypatch.setattr(shard_plan, "SAMPLE_FORMAT", "1/the-raw-metas-document")
    first = shards.build_shards(layouts(out), dest, settings)
    monkeypatch.undo()
    again = shards.build_shards(layouts(out), dest, settings)
    assert first.rebuilt_groups and sorted(again.rebuilt_groups) == sorted(first.rebuilt_groups)
    assert shards.build_shards(layouts(out), dest, settings).rebuilt_groups == []


def test_a_samples_bytes_do_not_depend_on_where_the_output_lies(out, tmp_path):
    """The output copied elsewhere and packaged again gives the same shards: a sample names the
    layout's files relative to the output folder (the manifest keeps them absolute)."""
    moved = tmp_path / "moved"
    shutil.copytree(out, moved, ignore=shutil.ignore_patterns("webdataset"))
    settings = shards.ShardSettings(num_groups=2)
    shards.build_shards(layouts(out), str(tmp_path / "here"), settings)
    shards.build_shards(layouts(moved), str(tmp_path / "there"), settings)
    assert tars(tmp_path / "here") and tars(tmp_path / "here") == tars(tmp_path / "there")
    video = layouts(out)[0]
    doc = sample_json(video, video.clips[0])
    assert doc["meta_url"] == layout.meta_path(video.clips[0].uuid) and doc["clip_url"].endswith(".mp4")


def test_selection_split_and_buckets(out):
    base = layouts(out)
    still = next(c.uuid for v in base for c in v.clips if not c.passed)

    def build(name, **kw):
        return shards.build_shards(base, str(out / "webdataset" / name), shards.ShardSettings(name=name, **kw))

    assert build("f", selection=shards.Selection(include_filtered=True)).index["splits"]["train"]["samples"] == 4
    r = build("a", selection=shards.Selection(min_aesthetic_score=0.0))  # no clip was scored
    assert r.index["splits"]["train"]["samples"] == 0 and r.index["skipped"]["aesthetic_score"] == 3
    r = build("m", selection=shards.Selection(min_motion_global_mean=1.0, include_filtered=True))
    assert r.index["skipped"]["motion"] == 4
    excluded = next(c.uuid for v in base for c in v.clips if c.passed)
    r = build("e", selection=shards.Selection(exclude=frozenset({excluded})))
    assert r.index["skipped"] == {"excluded": 1, "filtered": 1}
    assert still not in str(r.index)

    r = build("s", val_fraction=0.5, bucket_by="resolution")
    names = [s["name"] for s in r.index["shards"]]
    by_video = {}
    for s in r.index["shards"]:
        with tarfile.open(out / "webdataset" / "s" / s["name"]) as tar:
            for m in tar.getmembers():
                if m.name.endswith(".json"):
                    meta = json.loads(tar.extractfile(m).read())
                    by_video.setdefault(meta["source_video"], set()).add(s["split"])
                    assert s["bucket"] == f"{meta['width']}x{meta['height']}"
    assert all(len(splits) == 1 for splits in by_video.values())  # no video in both splits
    for rel in VIDEOS:
        assert shards.split_of(rel, 0.5) == shards.split_of(rel, 0.5)
    assert {n.split("/")[0] for n in names} == {shards.split_of(r, 0.5) for r in ("a.mp4", "sub/b c.mp4")}
    assert sorted({n.split("/")[1] for n in names}) == ["256x256", "320x256"]
    assert shards.bucket_of({"width": 1920, "height": 1080}, shards.ShardSettings(bucket_by="aspect")) == "16x9"
    assert shards.bucket_of({"duration_span": [0, 7.5]}, shards.ShardSettings(bucket_by="length")) == "5-10s"
    with pytest.raises(ValueError, match="bucket_by"):
        shards.ShardSettings(bucket_by="colour")


def test_a_damaged_shard_is_found(out):
    dest = out / "webdataset" / "default"
    result = shards.build_shards(layouts(out), str(dest), shards.ShardSettings(num_groups=1))
    path = dest / result.index["shards"][0]["name"]
    data = bytearray(path.read_bytes())
    data[600] ^= 0xFF
    path.write_bytes(bytes(data))
    assert shards.verify_shards(str(dest), result.index) == [f"{path.relative_to(dest)}: size or hash differs from the index"]


@pytest.mark.slow
def test_energon_opens_the_dataset_and_iterates_every_sample(out):
    """Each split once through energon's validation loader with its default worker config and
    default batching: every selected clip, as the typed ``ClipSample``."""
    from megatron.energon import WorkerConfig, get_loader, get_val_dataset

    from curation_assets.packaging.energon import prepare_energon
    from curation_assets.packaging.energon_sample import ClipSample

    dest = out / "webdataset" / "default"
    result = shards.build_shards(layouts(out), str(dest), shards.ShardSettings(num_groups=4, val_fraction=0.5,
                                                                                 max_shard_samples=1))
    prepared = prepare_energon(str(dest), result.index)
    assert (dest / ".nv-meta" / "dataset.yaml").exists() and (dest / ".nv-meta" / "split.yaml").exists()

    want = selected(out)
    videos = {c.uuid: v for v in layouts(out) for c in v.clips}
    seen = []
    for split in prepared["splits"]:
        loader = get_loader(get_val_dataset(str(dest), split_part=split, batch_size=2,
                                            worker_config=WorkerConfig.default_worker_config()))
        for batch in loader:
            assert isinstance(batch, ClipSample)
            for i, key in enumerate(batch.__key__):
                clip = want[key]
                seen.append(key)
                assert {k: v[i] for k, v in batch.meta.items()} == sample_json(videos[key], clip)
                assert batch.caption[i] == first_caption(clip)
                frames = batch.video[i].get_frames()
                assert frames.video_clips[0].shape[0] == clip.meta["num_frames"]
                assert np.array_equal(batch.embedding[i], pickle.loads(Path(clip.embedding_url).read_bytes()).reshape(-1))
    assert sorted(seen) == sorted(want)


def test_shards_on_s3_are_the_local_bytes(out, s3_bucket, tmp_path):
    local = shards.build_shards(layouts(out), str(tmp_path / "local"), shards.ShardSettings(num_groups=2))
    dest = f"{s3_bucket}/webdataset/default"
    remote = shards.build_shards(layouts(out), dest, shards.ShardSettings(num_groups=2))
    assert remote.index["shards"] == local.index["shards"]
    for s in remote.index["shards"]:
        assert storage.read_bytes(f"{dest}/{s['name']}") == (tmp_path / "local" / s["name"]).read_bytes()
    assert shards.verify_shards(dest, remote.index) == []
    from curation_assets.packaging.energon import EnergonError, prepare_energon

    with pytest.raises(EnergonError, match="local shard folders only"):
        prepare_energon(dest, remote.index)


def test_package_command_end_to_end(out, capsys):
    base = str(out)
    assert package_main(["package", "manifest", "--output-path", base]) == 0
    assert package_main(["package", "dedup", "--output-path", base, "--eps", "0.01"]) == 0
    assert package_main(["package", "shards", "--output-path", base, "--exclude-duplicates", "--num-groups", "2"]) == 0
    text = capsys.readouterr().out
    assert "manifest: 4 clips" in text and "dedup:" in text and "energon:" in text
    index = json.loads((out / "webdataset" / "default" / "index.json").read_text())
    dups = json.loads((out / "semdedup" / "summary.json").read_text())["num_duplicates"]
    assert index["splits"]["train"]["samples"] == 3 - dups and index["skipped"].get("excluded", 0) == dups
    assert package_main(["package", "shards", "--output-path", base, "--val-fraction", "1.5"]) == 2


# ---------------------------------------------------------------------------------------------
# Killed while writing


KILL_SCRIPT = """
import sys
from curation_assets.core.layout_read import read_video_layout
from curation_assets.packaging import shards
out, dest, copies = sys.argv[1], sys.argv[2], int(sys.argv[3])
videos = [read_video_layout(out, rel) for rel in sys.argv[4:]]
print("ready", flush=True)
for i in range(copies):  # the same shards again and again: the kill lands while one is written
    shards.build_shards(videos, dest, shards.ShardSettings(num_groups=3, max_shard_samples=1), force=True)
"""


def test_a_kill_while_writing_leaves_no_incomplete_shard_under_a_real_name(out, tmp_path):
    reference = tmp_path / "reference"
    shards.build_shards(layouts(out), str(reference), shards.ShardSettings(num_groups=3, max_shard_samples=1))
    want = tars(reference)
    dest = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    kills = 0
    for attempt in range(6):
        proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(out), str(dest), "400", *VIDEOS],
                                stdout=subprocess.PIPE, env=env)
        assert proc.stdout.readline().strip() == b"ready"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # kill as soon as a temporary file is open
            if dest.exists() and any(temp_files.is_temp_file_name(p.name) for p in dest.rglob("*")):
                break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
        temps = [p for p in dest.rglob("*") if temp_files.is_temp_file_name(p.name)]
        for name, data in tars(dest).items():
            assert data == want[name], f"{name} is not whole"
        if temps:
            break
    assert temps, "no kill landed while a shard was being written"
    result = shards.build_shards(layouts(out), str(dest), shards.ShardSettings(num_groups=3, max_shard_samples=1))
    assert tars(dest) == want and not [p for p in dest.rglob("*") if temp_files.is_temp_file_name(p.name)]
    assert shards.verify_shards(str(dest), result.index) == []


def test_a_missing_clip_file_skips_that_clip_only(out):
    videos = layouts(out)
    gone = next(c for v in videos if v.rel_path == "a.mp4" for c in v.clips if c.passed)
    Path(gone.clip_url).unlink()
    result = shards.build_shards(videos, str(out / "webdataset" / "default"), shards.ShardSettings(num_groups=1))
    assert result.index["splits"]["train"]["samples"] == 2 and result.index["skipped"]["unreadable"] == 1
    assert len(result.problems) == 1 and gone.uuid in result.problems[0]
