"""Dedup exclusions as Energon ``split.yaml`` ``exclude`` entries (``--dedup-exclude-mode split``):
energon's own loader leaves the duplicates out, and a new threshold rewrites no shard and none of
energon's indexes, only ``split.yaml``."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from curation_assets.cli import main as package_main
from curation_assets.packaging import dedup, energon, shards

from .packaging_fixtures import (  # noqa: F401 - fixtures
    packaging_inputs,
    packaging_models,
    written_layout,
)
from .test_packaging_assets import curated  # noqa: F401 - fixture


@pytest.fixture
def out(written_layout, tmp_path) -> Path:
    copy = tmp_path / "out"
    shutil.copytree(written_layout, copy)
    base = str(copy)
    assert package_main(["package", "manifest", "--output-path", base]) == 0
    assert package_main(["package", "dedup", "--output-path", base, "--n-clusters", "1"]) == 0
    return copy


def _thresholds(out: Path) -> list[float]:
    """Two eps values with different, non-empty duplicate sets: thresholds between the highest
    distinct scores (one cluster: the first clip scores 0, the others their similarity)."""
    scores = sorted({float(s) for s in pq.read_table(out / "semdedup" / "pairwise.parquet")
                     .column("cosine_sim_score").to_pylist()}, reverse=True)
    assert len(scores) >= 3 and 0 < scores[1] < scores[0] <= 1, scores  # the fixture's three embedded clips
    return [1 - (scores[0] + scores[1]) / 2, 1 - scores[1] / 2]


def _shards_run(out: Path, eps: float, mode: str, capsys) -> str:
    rc = package_main(["package", "shards", "--output-path", str(out), "--val-fraction", "0", "--num-groups", "2",
                       "--max-shard-samples", "1", "--exclude-duplicates", "--dedup-exclude-mode", mode,
                       "--dedup-eps", str(eps)])
    text = capsys.readouterr().out
    assert rc == 0, text
    return text


def _energon_keys(dest: Path) -> list[str]:
    """Every key energon's own loader yields from the train split (one pass, no repetition)."""
    from megatron.energon import WorkerConfig, get_loader, get_val_dataset

    loader = get_loader(get_val_dataset(str(dest), split_part="train", batch_size=1,
                                        worker_config=WorkerConfig(rank=0, world_size=1, num_workers=0)))
    return [key for batch in loader for key in batch.__key__]


def _webdataset_keys(dest: Path) -> list[str]:
    import webdataset as wds

    urls = sorted(str(p) for p in (dest / "train").rglob("*.tar"))
    return [s["__key__"] for s in wds.WebDataset(urls, shardshuffle=False)]


def _files(dest: Path) -> dict[str, tuple[int, str]]:
    """(mtime_ns, SHA-256) of every file under ``dest`` except ``split.yaml``."""
    return {str(p.relative_to(dest)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(dest.rglob("*")) if p.is_file() and p.name != "split.yaml"}


@pytest.mark.slow
def test_split_excludes_are_what_energon_leaves_out_and_a_new_threshold_rewrites_only_split_yaml(out, capsys):
    eps1, eps2 = _thresholds(out)
    dups1, dups2 = dedup.load_duplicate_ids(str(out), eps1), dedup.load_duplicate_ids(str(out), eps2)
    assert 0 < len(dups1) < len(dups2)
    dest = Path(shards.default_dest(str(out)))

    text = _shards_run(out, eps1, "split", capsys)
    assert f"split.yaml excludes {len(dups1)} duplicate(s)" in text and ".nv-meta prepared" in text
    every = sorted(_webdataset_keys(dest))  # plain webdataset readers see every clip: the tars are whole
    index = shards.read_index(str(dest))
    assert index is not None and index["skipped"].get("excluded", 0) == 0
    assert len(every) == index["splits"]["train"]["samples"] == 3 and dups2 <= set(every)
    assert sorted(_energon_keys(dest)) == sorted(set(every) - dups1)
    split = yaml.safe_load((dest / ".nv-meta" / "split.yaml").read_text())
    names = {s["name"] for s in index["shards"]}
    assert len(split["exclude"]) == len(dups1)
    for entry in split["exclude"]:  # <shard>.tar/<key>, the shard the clip is in
        shard, _, key = entry.partition(".tar/")
        assert shard + ".tar" in names and key in dups1
    assert energon.energon_problems(str(dest), index) == []

    before = _files(dest)
    text = _shards_run(out, eps2, "split", capsys)
    assert "groups rewritten: 0" in text and "kept (energon indexed these shards)" in text
    assert _files(dest) == before  # no tar, .tar.idx, index.sqlite or index.json rewritten
    assert sorted(_energon_keys(dest)) == sorted(set(every) - dups2)
    assert sorted(_webdataset_keys(dest)) == every
    assert energon.energon_problems(str(dest), shards.read_index(str(dest))) == []

    # the same threshold change in the "tars" mode rewrites the shards (what the split mode avoids)
    text = _shards_run(out, eps1, "tars", capsys)
    assert "groups rewritten: 0" not in text
    assert sorted(_webdataset_keys(dest)) == sorted(set(every) - dups1)
    assert "exclude" not in yaml.safe_load((dest / ".nv-meta" / "split.yaml").read_text())
    assert sorted(_energon_keys(dest)) == sorted(set(every) - dups1)


def test_an_exclude_entry_naming_no_indexed_sample_is_a_problem(out, capsys):
    eps1, _ = _thresholds(out)
    _shards_run(out, eps1, "split", capsys)
    dest = Path(shards.default_dest(str(out)))
    index = shards.read_index(str(dest))
    split_yaml = dest / ".nv-meta" / "split.yaml"
    doc = yaml.safe_load(split_yaml.read_text())
    shard, _, key = doc["exclude"][0].partition(".tar/")
    other = next(s["name"] for s in index["shards"] if s["name"] != shard + ".tar")
    doc["exclude"] = [f"{other}/{key}"]  # the right clip under another shard: energon would not skip it
    split_yaml.write_text(yaml.safe_dump(doc))
    problems = energon.energon_problems(str(dest), index)
    assert len(problems) == 1 and "1 exclude entry names no indexed sample" in problems[0]


def test_split_mode_needs_energon_metadata(out, capsys):
    rc = package_main(["package", "shards", "--output-path", str(out), "--exclude-duplicates",
                       "--dedup-exclude-mode", "split", "--no-energon"])
    assert rc == 2 and "not with --no-energon" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="2"):
        package_main(["package", "shards", "--output-path", str(out), "--dedup-exclude-mode", "files"])


@pytest.mark.slow
def test_the_assets_list_the_duplicates_in_split_yaml_and_keep_them_in_the_tars(curated, tmp_path):
    import tarfile

    import dagster as dg

    from curation_assets.defs.packaging import assets as pkg
    from curation_assets.partitions import VIDEOS_PARTITION_NAME

    from .test_packaging_assets import GOOD, _copy, _defs, _materialised

    out = _copy(curated, tmp_path)
    duplicates = dedup.load_duplicate_ids(str(out), pkg.PackagingSettings().dedup_eps)
    assert 0 < len(duplicates) < 4
    settings = pkg.PackagingSettings(num_groups=2, exclude_duplicates=True, dedup_exclude_mode="split")
    defs = _defs(curated, out, packaging=settings)
    dest = out / "webdataset" / "default"
    assert (dest / energon.META_DIR / energon.PREPARED_FILE).exists()  # packaged already, without exclusions
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(VIDEOS_PARTITION_NAME, list(GOOD))
        result = dg.materialize(defs.assets, selection=["webdataset_shards", "energon_metadata"], instance=instance,
                                resources=defs.resources)
        assert result.success
        shards_md = _materialised(instance, "webdataset_shards", result.run_id)[None]
        energon_md = _materialised(instance, "energon_metadata", result.run_id)[None]
    assert shards_md["excluded_duplicates"] == 0 and shards_md["train_samples"] == 4
    # turning the exclusions on in split mode rewrites no shard and does not prepare energon again
    assert shards_md["groups_rewritten"] == 0 and energon_md["prepared"] is False
    assert energon_md["split_yaml_excludes"] == len(duplicates)
    index = shards.read_index(str(dest))
    assert index is not None
    names = set()
    for shard in index["shards"]:
        with tarfile.open(dest / shard["name"]) as tar:
            names |= {m.name.partition(".")[0] for m in tar}
    assert duplicates <= names  # in the tars; energon skips them
    excluded = yaml.safe_load((dest / ".nv-meta" / "split.yaml").read_text())["exclude"]
    assert sorted(e.partition(".tar/")[2] for e in excluded) == sorted(duplicates)
    assert energon.energon_problems(str(dest), index) == []
