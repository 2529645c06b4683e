"""Megatron-Energon as a training engineer meets it: the docs' loader code as written, energon's
default worker config and default batching, and energon's CLI, on shards of real clips that mix
clips with and without errors, motion scores, captions and embeddings."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from curation_assets.core import filters, storage
from curation_assets.core.layout_read import read_video_layout
from curation_assets.models import stages
from curation_assets.models.embeddings import CosmosEmbedder
from curation_assets.models.video import process_video
from curation_assets.packaging import shards
from curation_assets.packaging.energon import dataset_yaml, energon_problems, prepare_energon, small_split_notes
from curation_assets.packaging.sample import SAMPLE_KEYS, sample_json, sample_json_bytes, schema_problems

from .packaging_fixtures import (  # noqa: F401 - fixtures
    VIDEOS,
    _captions,
    make_inputs,
    options_for,
    packaging_models,
    process,
    write_result,
)

ENERGON = str(Path(sys.executable).with_name("energon"))
DOCS = Path(__file__).resolve().parents[1] / "docs" / "training-packages.md"
DOCS_DEST = "/data/curated/webdataset/default"
#: The fixture's videos: a.mp4 (2 clips, captions and embeddings, one clip's caption failed: an
#: error, no caption), still.mp4 (filtered by motion), tiny.mp4 (too small to score motion: an
#: error), "sub/b c.mp4" and long.mp4 (no captions, no embeddings).
MIXED = {**VIDEOS, "tiny.mp4": dict(seconds=2, width=64, height=48, audio=False),
         "long.mp4": dict(seconds=6, width=256, height=192, audio=False)}


@pytest.fixture(scope="module")
def mixed_output(tmp_path_factory, packaging_models) -> Path:
    root = tmp_path_factory.mktemp("energon-mixed")
    inputs = make_inputs(root / "in", MIXED)
    out = str(root / "out")
    full = options_for(inputs, out, packaging_models)
    embedder = CosmosEmbedder(model_dir=str(packaging_models), device="cpu")
    url = str(inputs / "a.mp4")
    result = process_video(url, "a.mp4", lambda: storage.open_input(url), full)
    captions = _captions(result, "v1")
    failed = str(next(c.uuid for c in result.clips if c.passed))
    del captions.values[failed]
    captions.errors[failed] = (stages.ERROR_CAPTION, "window 0_49: the caption endpoint gave no text")
    filters.annotate_and_filter(result, full, embeddings=stages.embed({"a.mp4": result}, embedder)["a.mp4"],
                                captions=captions)
    write_result(result, full)
    for rel in ("still.mp4", "tiny.mp4"):
        write_result(process(inputs, rel, full, embedder), full)
    bare = options_for(inputs, out, packaging_models, generate_captions=False, enhance_captions=False,
                       generate_embeddings="off")
    for rel in ("sub/b c.mp4", "long.mp4"):
        write_result(process(inputs, rel, bare, None), bare)
    return Path(out)


def _layouts(out: Path) -> list:
    return [read_video_layout(str(out), rel) for rel in MIXED]


def _package(out: Path, dest: Path, **settings) -> dict:
    """Shards of every clip (filtered ones too) and energon's metadata; returns the index."""
    settings.setdefault("selection", shards.Selection(include_filtered=True))
    result = shards.build_shards(_layouts(out), str(dest), shards.ShardSettings(num_groups=2, **settings))
    prepare_energon(str(dest), result.index)
    return result.index


@pytest.fixture(scope="module")
def mixed_dest(mixed_output, tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("energon-shards") / "default"
    index = _package(mixed_output, dest)
    assert index["splits"]["train"]["samples"] == 8
    return dest


def _expected(out: Path) -> dict[str, dict]:
    return {c.uuid: dict(sample=sample_json(v, c), clip=c) for v in _layouts(out) for c in v.clips}


def test_the_fixture_mixes_every_kind_of_clip(mixed_output):
    docs = [e["sample"] for e in _expected(mixed_output).values()]
    assert len(docs) == 8 and all(schema_problems(d) == [] for d in docs)
    for key in ("errors",):
        assert any(d[key] for d in docs) and any(not d[key] for d in docs)
    for key in ("caption", "embedding_url", "filtered_by"):
        assert any(d[key] is None for d in docs) and any(d[key] is not None for d in docs)
    assert {e["key"] for d in docs for e in d["errors"]} == {stages.ERROR_CAPTION, "motion_decode"}
    assert any(d["errors"] and d["passed"] for d in docs)  # a passed clip whose caption failed


def test_every_sample_json_has_the_same_keys_and_types(mixed_dest, mixed_output):
    import webdataset as wds

    want = _expected(mixed_output)
    seen = {}
    for sample in wds.WebDataset(sorted(str(p) for p in mixed_dest.rglob("*.tar")), shardshuffle=False,
                                 empty_check=False):
        doc = json.loads(sample["json"])
        assert list(doc) == list(SAMPLE_KEYS) and schema_problems(doc) == []
        assert doc == want[sample["__key__"]]["sample"]
        assert ("txt" in sample) == (doc["caption"] is not None)
        assert ("npy" in sample) == (doc["embedding_url"] is not None)
        seen[sample["__key__"]] = doc
    assert sorted(seen) == sorted(want)
    types = {k: {type(d[k]).__name__ for d in seen.values() if d[k] is not None} for k in SAMPLE_KEYS}
    assert all(len(t) <= 1 for t in types.values()), types  # e.g. framerate is a float in every sample


def _batches(dest: Path, batch_size: int, worker_config, count: int) -> list:
    from megatron.energon import get_loader, get_train_dataset

    loader = get_loader(get_train_dataset(str(dest), batch_size=batch_size, shuffle_buffer_size=100,
                                          max_samples_per_sequence=100, worker_config=worker_config))
    return [batch for _, batch in zip(range(count), loader, strict=False)]


@pytest.mark.slow
def test_energon_defaults_batch_clips_with_and_without_errors_captions_and_embeddings(mixed_dest, mixed_output):
    """Energon's default worker config and default batching. Energon logs a batch that its
    batching fails on and skips it, so the loaders here re-raise instead (nothing else changed),
    and the batches must include ones that mix the kinds of clips."""
    from megatron.energon import WorkerConfig
    from megatron.energon.errors import reraise_exception

    want = _expected(mixed_output)
    mixed = set()
    for worker_config in (WorkerConfig.default_worker_config(), WorkerConfig(rank=0, world_size=1, num_workers=0)):
        worker_config = dataclasses.replace(worker_config, global_error_handler=reraise_exception)
        batches = _batches(mixed_dest, 8, worker_config, 12)
        assert len(batches) == 12
        for batch in batches:
            assert len(batch.__key__) == len(batch.video) == len(batch.caption) == len(batch.embedding) == 8
            assert list(batch.meta) == list(SAMPLE_KEYS)
            for i, key in enumerate(batch.__key__):
                expected, clip = want[key]["sample"], want[key]["clip"]
                assert {k: v[i] for k, v in batch.meta.items()} == expected
                assert batch.caption[i] == expected["caption"]
                if clip.embedding_url is None:
                    assert batch.embedding[i] is None
                else:
                    assert np.array_equal(batch.embedding[i],
                                          pickle.loads(Path(clip.embedding_url).read_bytes()).reshape(-1))
            for key in ("errors", "caption", "embedding_url"):
                if len({bool(v) for v in batch.meta[key]}) == 2:
                    mixed.add(key)
        frames = batches[0].video[0].get_frames()
        assert frames.video_clips[0].shape[0] == batches[0].meta["num_frames"][0]
    assert mixed == {"errors", "caption", "embedding_url"}


@pytest.mark.slow
def test_a_train_split_smaller_than_the_workers_says_what_to_change(mixed_output, tmp_path):
    from megatron.energon import WorkerConfig, get_loader, get_val_dataset

    from curation_assets.packaging.energon_sample import SplitTooSmallError

    dest = tmp_path / "tiny"
    index = _package(mixed_output, dest, selection=shards.Selection(require_embedding=True))  # a.mp4's 2 clips
    assert index["splits"]["train"]["samples"] == 2
    assert small_split_notes(index) == ["train has 2 sample(s): energon's default WorkerConfig (4 workers) cannot "
                                        "train on it; load it with WorkerConfig(rank=0, world_size=1, num_workers=2) "
                                        "or fewer, or package more clips"]
    with pytest.raises(SplitTooSmallError, match=r"split 'train' has 2 sample\(s\) for 4 loader workers .*"
                                                 r"use at most 2 worker\(s\) per rank"):
        _batches(dest, 8, WorkerConfig.default_worker_config(), 1)
    with pytest.raises(SplitTooSmallError, match=r"has 2 sample\(s\) for 4 loader workers \(2 per rank x 2 rank.*"
                                                 r"use at most 1 worker\(s\) per rank"):
        _batches(dest, 8, WorkerConfig(rank=0, world_size=2, num_workers=2), 1)
    # what the message says works: two workers, or the main process
    for workers in (2, 0):
        batches = _batches(dest, 2, WorkerConfig(rank=0, world_size=1, num_workers=workers), 6)
        assert len(batches) == 6 and all(len(b.__key__) == 2 for b in batches)
    # a validation loader goes through the split once, with energon's default workers
    loader = get_loader(get_val_dataset(str(dest), split_part="train", batch_size=8,
                                        worker_config=WorkerConfig.default_worker_config()))
    assert sorted(k for b in loader for k in b.__key__) == sorted(
        u for u, e in _expected(mixed_output).items() if e["sample"]["embedding_url"])


def _energon(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(Path(__file__).resolve().parents[1]),
                                                                  os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run([ENERGON, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL)


@pytest.mark.slow
def test_energon_info_lint_and_preview_succeed_from_another_folder(mixed_dest, tmp_path):
    assert energon_problems(str(mixed_dest), json.loads((mixed_dest / "index.json").read_text())) == []
    info = _energon("info", str(mixed_dest), cwd=tmp_path)
    assert info.returncode == 0, info.stderr
    assert "(8 samples" in info.stdout and "curation_assets.packaging.energon_sample.ClipSample" in info.stdout
    assert re.search(r"`train`: 100%, 8 samples in \d+ shards", info.stdout)
    lint = _energon("lint", str(mixed_dest), cwd=tmp_path)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "Skipping empty split part val" in lint.stdout and "failed" not in lint.stdout + lint.stderr
    preview = _energon("preview", str(mixed_dest), cwd=tmp_path)
    assert preview.returncode == 0, preview.stdout + preview.stderr
    for field in ("video", "meta", "caption", "embedding"):
        assert f" - {field} (" in preview.stdout


def _docs_energon_blocks() -> list[str]:
    """The ```python blocks of the docs' "Loading with Megatron-Energon" section."""
    text = DOCS.read_text()
    section = text[text.index("#### Loading with Megatron-Energon"):]
    section = section[:section.index("\n###")]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@pytest.mark.slow
def test_the_docs_energon_code_runs_as_written(mixed_output, tmp_path):
    """Each block, with only its dataset path replaced, in a fresh interpreter in another folder:
    the first on a dataset mixing every kind of clip, the second on a 2-sample one."""
    blocks = _docs_energon_blocks()
    assert len(blocks) == 2 and all(DOCS_DEST in b for b in blocks)
    assert "WorkerConfig.default_worker_config()" in blocks[0] and "batch_size=8" in blocks[0]
    assert yaml_block_is_the_written_one()
    big = tmp_path / "big"
    _package(mixed_output, big)
    small = tmp_path / "small"
    _package(mixed_output, small, selection=shards.Selection(require_embedding=True))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for block, dest, lines in ((blocks[0], big, 10), (blocks[1], small, 1)):
        script = tmp_path / "block.py"
        script.write_text(block.replace(DOCS_DEST, str(dest)))
        run = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        assert len(run.stdout.strip().splitlines()) == lines, run.stdout
        assert "Traceback" not in run.stderr and "Except" not in run.stdout + run.stderr, run.stderr[-3000:]


def yaml_block_is_the_written_one() -> bool:
    import yaml

    text = DOCS.read_text()
    section = text[text.index("#### Loading with Megatron-Energon"):]
    (block,) = re.findall(r"```yaml\n(.*?)```", section[:section.index("\n###")], flags=re.S)
    return yaml.safe_load(block) == dataset_yaml()


def test_the_sample_json_fixes_each_keys_type(mixed_output, tmp_path):
    """A meta whose frame rate is an int (25) and whose aesthetic score is NaN still gives a JSON
    float and a null: a batch of such samples holds one type per key, and the JSON is strict."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(mixed_output, out)
    video = read_video_layout(str(out), "a.mp4")
    clip = next(c for c in video.clips if c.passed)
    meta_path = Path(clip.meta_url)
    meta = json.loads(meta_path.read_text())
    meta.update(framerate=25, aesthetic_score=float("nan"))
    meta_path.write_text(json.dumps(meta))
    video = read_video_layout(str(out), "a.mp4")
    assert not video.problems
    clip = next(c for c in video.clips if c.uuid == clip.uuid)
    assert clip.meta["framerate"] == 25 and isinstance(clip.meta["framerate"], int)
    doc = sample_json(video, clip)
    assert isinstance(doc["framerate"], float) and doc["framerate"] == 25.0
    assert doc["aesthetic_score"] is None and isinstance(doc["num_bytes"], int)
    assert schema_problems(doc) == [] and schema_problems({**doc, "framerate": 25}) == [
        "framerate: int where the schema has double"]
    assert schema_problems({k: v for k, v in doc.items() if k != "errors"})[0].startswith(
        "keys differ from the schema (missing ['errors']")
    json.loads(sample_json_bytes(doc), parse_constant=lambda c: pytest.fail(f"{c} in the sample JSON"))
