"""``core.layout_read``: a video's layout read back from its documents, on disk and on S3, with
no directory listed, and untrusted documents refused instead of turned into paths."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from curation_assets.core import layout, storage
from curation_assets.core.layout_read import (
    filtered_reason,
    load_embedding,
    load_embeddings,
    read_video_layout,
)

from .layout_checks import all_files
from .packaging_fixtures import (  # noqa: F401 - fixtures
    VIDEOS,
    packaging_inputs,
    packaging_models,
    write_layout,
    written_layout,
)


def _urls(video) -> set[str]:
    out = set()
    for clip in video.clips:
        out.add(clip.meta_url)
        for url in (clip.clip_url, clip.embedding_url):
            if url:
                out.add(url)
        out.update(w.preview_url for w in clip.windows if w.preview_url)
    out.update(video.parquet_urls)
    out.add(video.video_url)
    out.update(storage.join(video.output_path, layout.chunk_file(video.rel_path, i)) for i in range(len(video.chunks)))
    return out


def test_layout_names_exactly_the_files_written_without_listing(written_layout, monkeypatch):
    def no_listing(*args, **kwargs):
        raise AssertionError("a directory was listed")

    for name in ("listdir", "scandir", "walk"):
        monkeypatch.setattr(os, name, no_listing)
    videos = [read_video_layout(str(written_layout), rel) for rel in VIDEOS]
    monkeypatch.undo()
    assert all(v.exists and not v.problems for v in videos)
    named = set().union(*(_urls(v) for v in videos))
    on_disk = {str(written_layout / f) for f in all_files(written_layout)}
    assert named == on_disk
    for v in videos:
        for clip in v.clips:
            meta = json.loads(Path(clip.meta_url).read_text())
            assert clip.meta == meta and clip.uuid == meta["span_uuid"]
            assert clip.passed == (f"/{layout.CLIPS}/" in clip.clip_url)
    still = next(v for v in videos if v.rel_path == "still.mp4")
    assert [(c.passed, c.filtered_by) for c in still.clips] == [(False, "motion")]


def test_embeddings_from_parquet_equal_the_pickles(written_layout):
    video = read_video_layout(str(written_layout), "a.mp4")
    from_parquet = load_embeddings(video)
    assert set(from_parquet) == {c.uuid for c in video.clips if c.embedding_url}
    for clip in video.clips:
        if clip.embedding_url:
            reference = pickle.loads(Path(clip.embedding_url).read_bytes())
            assert np.array_equal(load_embedding(clip), reference.reshape(-1))
            assert np.array_equal(from_parquet[clip.uuid], reference.reshape(-1))


def test_a_pickle_that_is_not_an_array_is_refused(written_layout, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(written_layout, out)
    clip = next(c for c in read_video_layout(str(out), "a.mp4").clips if c.embedding_url)
    # what an attacker would put there: a pickle that calls a function when loaded
    Path(clip.embedding_url).write_bytes(pickle.dumps(threading.Thread))
    with pytest.raises(pickle.UnpicklingError, match="only numpy arrays"):
        load_embedding(clip)


def test_missing_video_and_keys_that_leave_the_output(written_layout):
    missing = read_video_layout(str(written_layout), "never/processed.mp4")
    assert not missing.exists and missing.clips == () and missing.problems == ()
    for bad, why in (("../a.mp4", r"has a '\.\.' segment"), ("/etc/passwd", "is absolute"), ("s3://other/a.mp4", "is a URL"),
                     ("a//b.mp4", "has an empty path segment")):
        with pytest.raises(ValueError, match=why):
            read_video_layout(str(written_layout), bad)


def _edit(path: Path, fn) -> None:
    doc = json.loads(path.read_text())
    fn(doc)
    path.write_text(json.dumps(doc))


def test_untrusted_documents_are_reported_not_turned_into_paths(written_layout, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(written_layout, out)
    good = read_video_layout(str(out), "a.mp4")
    first, second = good.clips
    chunk = out / layout.chunk_file("a.mp4", 0)
    # an id that would walk out of metas/v0, and one in upper case (not how the writer spells it)
    _edit(chunk, lambda d: d["clips"].extend(["../../../etc/passwd", first.uuid.upper()]))
    # a window with a negative frame in the second clip's meta
    _edit(Path(second.meta_url), lambda d: d["windows"][0].update(start_frame=-1))
    video = read_video_layout(str(out), "a.mp4")
    assert any("canonical UUIDs" in p for p in video.problems)
    assert video.chunks == ()  # the whole chunk document is refused
    assert video.clips == ()
    assert all("passwd" not in u for u in _urls(video))

    shutil.copy(written_layout / layout.chunk_file("a.mp4", 0), chunk)
    video = read_video_layout(str(out), "a.mp4")
    assert [c.uuid for c in video.clips] == [first.uuid]  # the bad meta's clip is left out
    assert any("window frames -1" in p for p in video.problems)

    _edit(out / layout.video_file("a.mp4"), lambda d: d.update(num_clip_chunks="1"))
    video = read_video_layout(str(out), "a.mp4")
    assert video.exists and video.clips == () and any("num_clip_chunks" in p for p in video.problems)

    (out / layout.video_file("sub/b c.mp4")).write_text("{not json")
    video = read_video_layout(str(out), "sub/b c.mp4")
    assert video.exists and video.clips == () and any("not JSON" in p for p in video.problems)


def test_filtered_reason_follows_the_pipeline_order():
    low = {"motion_score": {"global_mean": 0.0, "per_patch_min_256": 0.0}, "aesthetic_score": 1.0}
    high = {"motion_score": {"global_mean": 1.0, "per_patch_min_256": 1.0}, "aesthetic_score": 1.0}
    settings = {"motion_filter": "enable", "motion_global_mean_threshold": 0.00098,
                "motion_per_patch_min_256_threshold": 0.000001, "aesthetic_threshold": 3.5}
    assert filtered_reason(low, settings, {}) == "motion"  # motion runs first
    assert filtered_reason(high, settings, {}) == "aesthetic"
    assert filtered_reason(low, {**settings, "motion_filter": "score-only"}, {}) == "aesthetic"
    assert filtered_reason(high, {**settings, "aesthetic_threshold": None}, {}) == "unknown"
    # no pipeline record: the chunk's counts decide when only one filter removed clips
    assert filtered_reason(high, {}, {"num_clips_filtered_by_motion": 0, "num_clips_filtered_by_aesthetic": 2}) == "aesthetic"
    assert filtered_reason(high, {}, {"num_clips_filtered_by_motion": 1, "num_clips_filtered_by_aesthetic": 1}) == "unknown"


# ---------------------------------------------------------------------------------------------
# S3, through a moto server that counts the requests it gets


class _Counting:
    def __init__(self, app):
        self.app, self.requests, self.lock = app, [], threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            self.requests.append((environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""),
                                  environ.get("QUERY_STRING", "")))
        return self.app(environ, start_response)

    def listings(self) -> list:
        """S3 listings are GETs of the bucket itself (ListObjects / ListObjectsV2)."""
        return [r for r in self.requests if r[0] == "GET" and r[1].strip("/").count("/") == 0]


@pytest.fixture
def counting_s3(monkeypatch, tmp_path_factory):
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    from .s3_server import FAKE_ACCESS_KEY_ID, FAKE_SECRET_ACCESS_KEY, REGION

    app = _Counting(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_port}"
    for name, value in {"AWS_ACCESS_KEY_ID": FAKE_ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": FAKE_SECRET_ACCESS_KEY,
                        "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path_factory.mktemp("aws-config")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty / "credentials"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name=REGION).create_bucket(Bucket="curated")
    try:
        yield app, "s3://curated/out"
    finally:
        server.shutdown()
        thread.join(5)


def test_s3_layout_is_read_without_listing_and_matches_the_local_one(counting_s3, packaging_inputs,
                                                                     packaging_models, written_layout):
    app, s3_out = counting_s3
    write_layout(packaging_inputs, s3_out, packaging_models)
    app.requests.clear()
    videos = {rel: read_video_layout(s3_out, rel) for rel in VIDEOS}
    assert app.requests and app.listings() == []
    assert all(r[0] == "GET" for r in app.requests)
    assert not read_video_layout(s3_out, "missing.mp4").exists
    assert app.listings() == []
    for rel, video in videos.items():
        local = read_video_layout(str(written_layout), rel)
        assert not video.problems and len(video.clips) == len(local.clips)
        for a, b in zip(video.clips, local.clips):
            assert (a.passed, a.filtered_by, len(a.windows)) == (b.passed, b.filtered_by, len(b.windows))
            assert a.meta["num_bytes"] == b.meta["num_bytes"]
            assert (a.clip_url is None) == (b.clip_url is None)
            assert a.clip_url is None or storage.exists(a.clip_url)
        assert load_embeddings(video).keys() == {c.uuid for c in video.clips if c.embedding_url}
