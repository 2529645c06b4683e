"""The whole pipeline with ``input_path`` and ``output_path`` on an S3 server (moto, started by the
``s3_server`` fixture): the same files as on local disk, re-runs that remove stale objects, and the
CLI with ``s3://`` paths."""

from __future__ import annotations

import io
import json
import pickle
import uuid
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from curation_assets.cli import main, run_pipeline
from curation_assets.core.options import PipelineOptions

from .layout_checks import all_files, check_layout
from .model_fixtures import build_cosmos_standin
from .video_factory import make_video

# Relative names under input_path; one nested prefix with spaces, commas, brackets and dots.
VIDEOS = {
    "a.mp4": dict(seconds=4, width=256, height=256, audio=True),
    "nested/sub dir, [x]/clip (1), [b]...mp4": dict(seconds=5, width=320, height=256, audio=False),
}


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("videos")
    for rel, kw in VIDEOS.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        make_video(folder / rel, fps=25, **kw)
    return folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    build_cosmos_standin(root, "224p")
    return root


def upload_tree(s3_server, local: Path, url: str) -> None:
    bucket, _, prefix = url[len("s3://"):].partition("/")
    client = s3_server.client()
    for rel in sorted(all_files(local)):
        client.upload_file(str(local / rel), bucket, f"{prefix}/{rel}" if prefix else rel)


def download_tree(s3_server, url: str, dest: Path) -> set[str]:
    """Every object under ``url`` copied to ``dest``; returns the relative names."""
    bucket, _, prefix = url[len("s3://"):].partition("/")
    prefix = prefix.rstrip("/") + "/"
    client = s3_server.client()
    names = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(prefix):]
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, obj["Key"], str(target))
            names.add(rel)
    return names


def _walk_strings(doc, fn):
    if isinstance(doc, str):
        return fn(doc)
    if isinstance(doc, list):
        return [_walk_strings(x, fn) for x in doc]
    if isinstance(doc, dict):
        return {fn(k): _walk_strings(v, fn) for k, v in doc.items()}
    return doc


def _uuid_mapping(local_out: Path, local_in: str, s3_in: str, rels: list[str]) -> dict[str, str]:
    """Local clip/chunk uuid -> the uuid the same clip/chunk has when read from ``s3_in``.

    Clip ids hash the source video as read (``s3://bucket/key`` on S3) with the span's frames, so
    they differ between the two runs by construction; the mapping pairs them through the spans."""
    mapping: dict[str, str] = {}
    for f in all_files(local_out):
        if f.startswith("metas/v0/"):
            meta = json.loads((local_out / f).read_text())
            source = meta["source_video"]
            assert source.startswith(local_in + "/")
            s3_source = s3_in + "/" + source[len(local_in) + 1:]
            start, end = meta["duration_span"]
            fps = meta["framerate_source"]
            mapping[meta["span_uuid"]] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{s3_source}_{int(start * fps)}_{int(end * fps)}"))
    for rel in rels:
        doc = json.loads((local_out / "processed_videos" / f"{rel}.json").read_text())
        for i in range(doc["num_clip_chunks"]):
            local_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{local_in}/{rel}_{i}")
            mapping[str(local_id)] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{s3_in}/{rel}_{i}"))
    return mapping


def assert_same_output(local_out: Path, local_in: str, local_out_url: str, mirror: Path, s3_in: str, s3_out: str,
                       rels: list[str]) -> None:
    """The S3 run's objects (downloaded to ``mirror``) equal the local run's files, with local paths
    and ids translated to their S3 counterparts."""
    mapping = _uuid_mapping(local_out, local_in, s3_in, rels)

    def translate(s: str) -> str:
        for old, new in mapping.items():
            s = s.replace(old, new)
        # the longer prefix first (the output folder may sit next to the input folder)
        for old, new in sorted(((local_out_url, s3_out), (local_in, s3_in)), key=lambda p: -len(p[0])):
            s = s.replace(old, new)
        return s

    local_files = all_files(local_out)
    s3_files = all_files(mirror)
    assert {translate(f) for f in local_files} == s3_files
    assert any(f.startswith("ce1_embd_parquet/") for f in s3_files) and any(f.startswith("previews/") for f in s3_files)
    for f in sorted(local_files):
        g = translate(f)
        a, b = (local_out / f).read_bytes(), (mirror / g).read_bytes()
        if f.endswith(".json"):
            da, db = _walk_strings(json.loads(a), translate), json.loads(b)
            # the settings hash covers input_path/output_path, which differ by design
            for d in (da, db):
                if "pipeline" in d:
                    d["pipeline"].pop("settings_hash")
            assert da == db, f
            if f.startswith("metas/v0/"):
                assert db["source_video"].startswith(s3_in + "/") and db["clip_location"].startswith(s3_out + "/")
        elif f.endswith(".pickle"):
            np.testing.assert_allclose(pickle.loads(a), pickle.loads(b), rtol=1e-5, atol=1e-6)
        elif f.endswith(".parquet"):
            ta, tb = pq.read_table(io.BytesIO(a)).to_pylist(), pq.read_table(io.BytesIO(b)).to_pylist()
            assert [translate(r["id"]) for r in ta] == [r["id"] for r in tb], f
            np.testing.assert_allclose([r["embedding"] for r in ta], [r["embedding"] for r in tb], rtol=1e-5, atol=1e-6)
        else:  # mp4 and webp: the same encoder on the same frames gives the same bytes
            assert a == b, f


@pytest.mark.slow
def test_s3_pipeline_matches_local_and_reruns_remove_stale_objects(tmp_path, source_dir, model_dir, s3_bucket, s3_server):
    rels = sorted(VIDEOS)
    s3_in, s3_out = f"{s3_bucket}/raw uploads", f"{s3_bucket}/curated"
    upload_tree(s3_server, source_dir, s3_in)
    base = PipelineOptions(input_path=str(source_dir), output_path=str(tmp_path / "local_out"),
                           fixed_stride_split_duration=2.0, fixed_stride_min_clip_length_s=1.0,
                           generate_previews=True, generate_embeddings="on", model_dir=str(model_dir))

    report = io.StringIO()
    assert run_pipeline(base, home=str(tmp_path / "home_local"), stream=report) == 0, report.getvalue()
    on_s3 = base.replace(input_path=s3_in, output_path=s3_out)
    report = io.StringIO()
    assert run_pipeline(on_s3, home=str(tmp_path / "home_s3"), stream=report) == 0, report.getvalue()

    mirror = tmp_path / "mirror"
    download_tree(s3_server, s3_out, mirror)
    summary = check_layout(mirror, None, rels, input_url=s3_in, output_url=s3_out)
    assert summary["a.mp4"]["passed"] == 2 and summary[rels[1]]["passed"] == 3
    assert_same_output(tmp_path / "local_out", str(source_dir), str(tmp_path / "local_out"), mirror, s3_in, s3_out, rels)
    first_names = all_files(mirror)

    # The same run again: byte-identical documents and parquet files, nothing added or removed.
    assert run_pipeline(on_s3, home=str(tmp_path / "home_s3"), stream=io.StringIO()) == 0
    again = tmp_path / "mirror_again"
    download_tree(s3_server, s3_out, again)
    assert all_files(again) == first_names
    for f in first_names:
        if f.endswith((".json", ".parquet")):
            assert (again / f).read_bytes() == (mirror / f).read_bytes(), f

    # Another stride: every object the new run no longer produces is removed, on S3 as on disk.
    stride3 = on_s3.replace(fixed_stride_split_duration=3.0)
    assert run_pipeline(stride3, home=str(tmp_path / "home_s3"), stream=io.StringIO()) == 0
    mirror2 = tmp_path / "mirror2"
    names = download_tree(s3_server, s3_out, mirror2)
    summary = check_layout(mirror2, None, rels, input_url=s3_in, output_url=s3_out)
    assert summary["a.mp4"]["passed"] == 2 and summary[rels[1]]["passed"] == 2  # 3 s + 1 s / 3 s + 2 s
    old_clips = {f for f in first_names if f.startswith("clips/")}
    assert not old_clips & names, "clips of the 2 s stride are left over"
    local3 = base.replace(fixed_stride_split_duration=3.0, output_path=str(tmp_path / "local_out3"))
    assert run_pipeline(local3, home=str(tmp_path / "home_local"), stream=io.StringIO()) == 0
    assert_same_output(tmp_path / "local_out3", str(source_dir), str(tmp_path / "local_out3"), mirror2, s3_in, s3_out,
                       rels)
    # The input objects are untouched.
    assert download_tree(s3_server, s3_in, tmp_path / "inputs_back") == set(rels)


def test_cli_with_s3_paths(tmp_path, source_dir, s3_bucket, s3_server, capsys):
    s3_in, s3_out = f"{s3_bucket}/in", f"{s3_bucket}/out/"
    upload_tree(s3_server, source_dir, s3_in)
    argv = ["run", "--video-dir", s3_in, "--output-path", s3_out, "--fixed-stride-split-duration", "2",
            "--no-generate-embeddings", "--generate-previews", "--dagster-home", str(tmp_path / "home")]
    assert main(argv) == 0
    mirror = tmp_path / "mirror"
    download_tree(s3_server, s3_out, mirror)
    rels = sorted(VIDEOS)
    summary = check_layout(mirror, None, rels, input_url=s3_in, output_url=s3_out.rstrip("/"))
    assert summary["a.mp4"]["passed"] == 2

    # A prefix with no videos, or a bucket that does not exist, is a clear error, not a traceback.
    capsys.readouterr()
    for missing in (f"{s3_bucket}/nothing-here", "s3://no-such-bucket-7f3a/in"):
        assert main(["run", "--video-dir", missing, "--output-path", s3_out, "--dagster-home", str(tmp_path / "home")]) == 2
        err = capsys.readouterr().err
        assert "curation-assets: error:" in err and missing in err and "Traceback" not in err
