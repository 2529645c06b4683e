"""Tests for curation_assets.core.storage, on local disk and on an S3 server (moto)."""

from __future__ import annotations

import io
import os
import time
import traceback

import pytest

from curation_assets.core import storage, temp_files
from curation_assets.core.sources import list_videos
from curation_assets.core.storage import (
    StorageError,
    cleanup_temp_files,
    exists,
    get_fs,
    join,
    list_files,
    open_input,
    read_bytes,
    redact,
    relative_to,
    remove_files,
    resolve_under,
    write_bytes_atomic,
    write_text_atomic,
)

WEIRD_NAMES = [
    "a b,[1]....mp4",
    "ünïcødé 视频.MOV",
    "comma,name (2).mkv",
    "brackets[x]{y}.webm",
    "clip ....mp4",
    "a...b...mp4",
]


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path) -> str:
    """A fresh empty folder URL: a local directory or a prefix in a fresh bucket."""
    if request.param == "local":
        return str(tmp_path / "root")
    bucket = request.getfixturevalue("s3_bucket")
    return bucket + "/root"


def _is_s3(url: str) -> bool:
    return url.startswith("s3://")


# --------------------------------------------------------------------------------------------
# URLs
# --------------------------------------------------------------------------------------------


def test_join():
    assert join("s3://b/out/", "clips", "x.mp4") == "s3://b/out/clips/x.mp4"
    assert join("s3://b", "x") == "s3://b/x"
    assert join("s3://b/out", "/clips/", "/x.mp4") == "s3://b/out/clips/x.mp4"
    assert join("/data/out/", "clips") == "/data/out/clips"
    assert join("/", "a") == "/a"
    assert join("file:///data", "a") == "file:///data/a"
    assert join("rel", "a", "", "b") == "rel/a/b"
    assert join("/data") == "/data"


def test_get_fs_local_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fs, path = get_fs("sub/x.mp4")
    assert path == str(tmp_path / "sub" / "x.mp4")
    assert os.path.isabs(path)
    _, path2 = get_fs(f"file://{tmp_path}/y")
    assert path2 == str(tmp_path / "y")


def test_get_fs_s3_endpoint_from_env(s3_bucket, s3_server):
    fs, path = get_fs(s3_bucket + "/a/b.mp4")
    assert path == s3_bucket[len("s3://") :] + "/a/b.mp4"
    assert fs.endpoint_url == s3_server.endpoint_url


# --------------------------------------------------------------------------------------------
# writing and reading
# --------------------------------------------------------------------------------------------


def test_write_read_roundtrip(root):
    url = join(root, "deep", "er", "x.json")
    assert not exists(url)
    write_text_atomic(url, '{"a": "ü"}')
    assert exists(url)
    assert read_bytes(url) == '{"a": "ü"}'.encode()
    write_bytes_atomic(url, b"second")
    assert read_bytes(url) == b"second"
    # no temporary file is left next to it
    assert list_files(root) == [url if _is_s3(url) else get_fs(url)[1]]


def test_local_write_creates_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_bytes_atomic(str(tmp_path / "f.bin"), b"x")
    finally:
        os.umask(old)
    assert (os.stat(tmp_path / "f.bin").st_mode & 0o777) == 0o644


@pytest.mark.parametrize("fail_in", ["replace", "fsync"])
def test_local_atomic_write_failure_leaves_nothing(tmp_path, monkeypatch, fail_in):
    target = tmp_path / "out" / "clip.mp4"
    fresh = tmp_path / "out" / "new.mp4"
    write_bytes_atomic(str(target), b"old content")

    def boom(*a, **k):
        raise OSError("disk on fire")

    with monkeypatch.context() as m:
        m.setattr(storage.os, fail_in, boom)
        with pytest.raises(StorageError, match="disk on fire"):
            write_bytes_atomic(str(target), b"new content that never lands")
        with pytest.raises(StorageError, match="disk on fire"):
            write_bytes_atomic(str(fresh), b"never")

    assert target.read_bytes() == b"old content"
    assert not fresh.exists()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clip.mp4"]


def test_local_write_survives_temp_removed_by_concurrent_cleanup(tmp_path, monkeypatch):
    real_replace = os.replace
    calls = []

    def replace_after_cleanup(src, dst):
        if not calls:
            calls.append(src)
            cleanup_temp_files(str(tmp_path))  # another partition cleans the same folder
        return real_replace(src, dst)

    monkeypatch.setattr(storage.os, "replace", replace_after_cleanup)
    write_bytes_atomic(str(tmp_path / "x.bin"), b"data")
    assert (tmp_path / "x.bin").read_bytes() == b"data"
    assert os.listdir(tmp_path) == ["x.bin"]


def test_s3_write_failure_keeps_old_object(s3_bucket, monkeypatch):
    url = s3_bucket + "/x.json"
    write_bytes_atomic(url, b"old")
    fs, _ = get_fs(url)

    def boom(*a, **k):
        raise ConnectionError("network gone")

    # (monkeypatch.context: undo() would also drop the env vars s3_bucket set)
    with monkeypatch.context() as m:
        m.setattr(fs, "pipe_file", boom)
        with pytest.raises(StorageError, match="network gone"):
            write_bytes_atomic(url, b"new")
    assert read_bytes(url) == b"old"
    assert list_files(s3_bucket) == [url]


def test_missing_file_errors(root):
    with pytest.raises(FileNotFoundError, match=r"read '.*/nope\.json': not found"):
        read_bytes(join(root, "nope.json"))
    with pytest.raises(FileNotFoundError, match=r"open '.*/nope\.mp4': not found"):
        open_input(join(root, "nope.mp4"))


def test_s3_missing_bucket_is_storage_error(s3_bucket):
    with pytest.raises(StorageError, match="The specified bucket does not exist"):
        write_bytes_atomic("s3://no-such-bucket-zz9/x", b"x")


# --------------------------------------------------------------------------------------------
# listing (and cache invalidation)
# --------------------------------------------------------------------------------------------


def _put(url: str, data: bytes = b"v") -> None:
    write_bytes_atomic(url, data)


def test_list_videos(root):
    videos = ["top.mp4", "UPPER.MP4", "a/b/c/nested.mkv", "sub/x.avi"] + [
        f"weird dir, [1]/{n}" for n in WEIRD_NAMES
    ]
    # "...mp4" starts with a dot, so it is a hidden file like ".hidden.mp4"
    others = ["notes.txt", "a/thumb.jpg", ".hidden.mp4", "...mp4", ".cache/y.mp4", "a/.tmp-abc.partial"]
    for rel in videos + others:
        _put(join(root, rel))
    # a sibling folder whose name starts with the input's name is not inside it
    _put(root + "-sibling/z.mp4")
    assert list_videos(root) == sorted(videos)
    assert list_videos(join(root, "sub")) == ["x.avi"]
    assert list_videos(root, extensions=(".mkv",)) == ["a/b/c/nested.mkv", "weird dir, [1]/comma,name (2).mkv"]
    assert list_videos(root, extensions=("MOV",)) == ["weird dir, [1]/ünïcødé 视频.MOV"]


def test_list_videos_prefix_is_component_wise(root):
    _put(join(root, "vid", "a.mp4"))
    _put(join(root, "videos", "b.mp4"))
    assert list_videos(join(root, "vid")) == ["a.mp4"]
    assert list_videos(join(root, "vid") + "/") == ["a.mp4"]


def test_list_videos_missing_input(root):
    with pytest.raises(FileNotFoundError, match=r"/missing':? (does not exist|not found)"):
        list_videos(join(root, "missing"))


def test_listing_sees_new_and_removed_files(root):
    folder = join(root, "clips")
    assert list_files(folder) == []
    _put(join(folder, "a.mp4"))
    first = list_files(folder)
    assert len(first) == 1
    _put(join(folder, "b.mp4"))
    assert len(list_files(folder)) == 2
    assert list_videos(folder) == ["a.mp4", "b.mp4"]
    remove_files([first[0]])
    assert list_videos(folder) == ["b.mp4"]
    assert not exists(first[0])


def test_s3_listing_sees_writes_from_another_client(s3_bucket, s3_server):
    folder = s3_bucket + "/metas"
    _put(folder + "/a.json")
    assert list_files(folder) == [folder + "/a.json"]
    assert exists(folder + "/b.json") is False
    bucket = s3_bucket[len("s3://") :]
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="metas/b.json", Body=b"{}")
    assert list_files(folder) == [folder + "/a.json", folder + "/b.json"]
    assert exists(folder + "/b.json") is True
    client.delete_object(Bucket=bucket, Key="metas/a.json")
    assert list_files(folder) == [folder + "/b.json"]
    assert exists(folder + "/a.json") is False


def test_list_files_missing_is_empty(root):
    assert list_files(join(root, "nothing", "here")) == []


# --------------------------------------------------------------------------------------------
# removing and cleanup
# --------------------------------------------------------------------------------------------


def test_remove_files_literal_names(root):
    # "[1]" is a glob character class: fsspec's rm() would delete "x1.mp4" instead
    keep = join(root, "x1.mp4")
    gone = join(root, "x[1].mp4")
    other = join(root, "sub", "a b,....mp4")
    for u in (keep, gone, other):
        _put(u)
    remove_files([gone, other, join(root, "never-existed.mp4")])
    assert exists(keep)
    assert not exists(gone)
    assert not exists(other)
    remove_files([])
    assert [u.rsplit("/", 1)[-1] for u in list_files(root)] == ["x1.mp4"]


def test_remove_files_prunes_empty_local_dirs(tmp_path):
    out = tmp_path / "out"
    f = out / "previews" / "uuid1" / "0_10.webp"
    write_bytes_atomic(str(f), b"w")
    write_bytes_atomic(str(out / "previews" / "keep.txt"), b"k")
    remove_files([str(f)], prune_empty_dirs_under=str(out))
    assert not (out / "previews" / "uuid1").exists()
    assert (out / "previews" / "keep.txt").exists()


def test_cleanup_temp_files(root):
    temps = [join(root, ".tmp-1234.partial"), join(root, "clips", ".tmp-abcd.partial")]
    keep = [join(root, "clips", "real.mp4"), join(root, ".tmp-not-ours.txt"), join(root, "x.partial")]
    for u in temps + keep:
        _put(u)
    assert cleanup_temp_files(root) == 2
    assert cleanup_temp_files(root) == 0
    remaining = list_files(root)
    assert len(remaining) == 3
    assert not any(temp_files.is_temp_file_name(u) for u in remaining)
    assert cleanup_temp_files(join(root, "missing")) == 0


def test_cleanup_temp_files_min_age(tmp_path):
    old = tmp_path / ".tmp-old.partial"
    new = tmp_path / ".tmp-new.partial"
    old.write_bytes(b"o")
    new.write_bytes(b"n")
    past = time.time() - 3600
    os.utime(old, (past, past))
    assert cleanup_temp_files(str(tmp_path), min_age_s=600) == 1
    assert not old.exists() and new.exists()


# --------------------------------------------------------------------------------------------
# relative_to / resolve_under
# --------------------------------------------------------------------------------------------


def test_relative_to_components(tmp_path, monkeypatch):
    assert relative_to("/data/videos", "/data/videos/sub/x.mp4") == "sub/x.mp4"
    assert relative_to("/data/videos/", "/data/videos/x.mp4") == "x.mp4"
    assert relative_to("/data/./videos", "/data/videos/a/../x.mp4") == "x.mp4"
    assert relative_to("/data/videos", "/data/videos") == ""
    with pytest.raises(ValueError, match="'/data/videos/x.mp4' is not inside '/data/vid'"):
        relative_to("/data/vid", "/data/videos/x.mp4")
    with pytest.raises(ValueError, match="'/data/x.mp4' is not inside '/data/videos'"):
        relative_to("/data/videos", "/data/x.mp4")
    # relative local inputs work (the reference fails on them)
    monkeypatch.chdir(tmp_path)
    assert relative_to("in", str(tmp_path / "in" / "a b.mp4")) == "a b.mp4"
    assert relative_to(f"file://{tmp_path}/in", "in/x.mp4") == "x.mp4"
    # object stores: bucket is a component
    assert relative_to("s3://b/in", "s3://b/in/sub/x.mp4") == "sub/x.mp4"
    assert relative_to("s3://b", "s3://b/x.mp4") == "x.mp4"
    with pytest.raises(ValueError, match="'s3://b/videos/x.mp4' is not inside 's3://b/vid'"):
        relative_to("s3://b/vid", "s3://b/videos/x.mp4")
    with pytest.raises(ValueError, match="'s3://b2/in/x.mp4' is not inside 's3://b/in'"):
        relative_to("s3://b/in", "s3://b2/in/x.mp4")
    with pytest.raises(ValueError, match="'/b/in/x.mp4' is not inside 's3://b/in'"):
        relative_to("s3://b/in", "/b/in/x.mp4")


@pytest.mark.parametrize("base", ["/data/in", "s3://bucket/in", "s3://bucket"])
@pytest.mark.parametrize(
    "bad",
    [
        "../x",
        "a/../../b",
        "a/..",
        "..",
        "./x",
        "/etc/passwd",
        "s3://other-bucket/x",
        "s3://bucket/in/x.mp4",
        "file:///x",
        "http://evil/x",
        "",
        "a//b",
        "a/",
        "a\x00b.mp4",
    ],
)
def test_resolve_under_refuses(base, bad):
    with pytest.raises(ValueError, match="^path key "):  # a message naming the key, not a bare error
        resolve_under(base, bad)


@pytest.mark.parametrize("base", ["/data/in", "/data/in/", "s3://bucket/in", "s3://bucket"])
@pytest.mark.parametrize(
    "good", ["x.mp4", "sub/a b,[1]...mp4", "...mp4", "ünï/视频.mkv", "a..b/c...d.mp4", "weird:name.mp4",
             "tab\there.mp4", "new\nline.mp4", "del\x7f.mp4"]  # names a filesystem allows
)
def test_resolve_under_accepts(base, good):
    out = resolve_under(base, good)
    assert relative_to(base, out) == good
    assert out == join(base, good)


def test_resolve_under_message_is_clear():
    with pytest.raises(ValueError, match=r"'\.\.' segment"):
        resolve_under("/data/in", "a/../../b")
    with pytest.raises(ValueError, match="absolute"):
        resolve_under("/data/in", "/etc/passwd")
    with pytest.raises(ValueError, match="URL"):
        resolve_under("s3://bucket/in", "s3://other-bucket/x")


# --------------------------------------------------------------------------------------------
# open_input with PyAV
# --------------------------------------------------------------------------------------------


def _tiny_mp4(n_frames: int = 12) -> bytes:
    av = pytest.importorskip("av")
    import numpy as np

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        stream = out.add_stream(codec, rate=12)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(n_frames):
            img = np.full((48, 64, 3), (i * 20) % 256, dtype=np.uint8)
            for pkt in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(pkt)
        for pkt in stream.encode():
            out.mux(pkt)
    return buf.getvalue()


def test_open_input_pyav(root):
    av = pytest.importorskip("av")
    data = _tiny_mp4()
    url = join(root, "in dir", "clip [1].mp4")
    write_bytes_atomic(url, data)
    kwargs = {"block_size": 4096} if _is_s3(url) else {}  # many ranged reads on s3
    with open_input(url, **kwargs) as f:
        assert f.seekable()
        with av.open(f) as container:
            frames = list(container.decode(video=0))
    assert len(frames) == 12
    assert (frames[0].width, frames[0].height) == (64, 48)
    with open_input(url) as f:
        assert f.read() == data


# --------------------------------------------------------------------------------------------
# redaction
# --------------------------------------------------------------------------------------------

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def test_redact_env_and_patterns(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "sess-token-value-123")
    text = (
        f"failed with {SECRET} and sess-token-value-123; key=abc123 secret='s3cr3t' "
        "password=hunter22 {'token': 'tok9876'} AKIAIOSFODNN7EXAMPLE "
        "https://h/x?X-Amz-Signature=deadbeef&X-Amz-Credential=AK%2F1 "
        "s3://user:pa55word@bucket/x"
    )
    out = redact(text)
    for s in (SECRET, "sess-token-value-123", "abc123", "s3cr3t", "hunter22", "tok9876",
              "AKIAIOSFODNN7EXAMPLE", "deadbeef", "AK%2F1", "pa55word"):
        assert s not in out, s
    assert "failed with ***" in out
    assert "s3://bucket/x" not in redact("nothing secret")  # unrelated text untouched
    assert redact("s3://bucket/clips/a.mp4") == "s3://bucket/clips/a.mp4"
    # short fake values (the test server's "testing") are not cut out of unrelated text
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    assert redact("/tmp/test_x_testing0/a.mp4") == "/tmp/test_x_testing0/a.mp4"


def test_storage_errors_are_redacted_and_unchained(s3_bucket, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    url = s3_bucket + "/x.json"
    fs, _ = get_fs(url)

    def leaky(*a, **k):
        raise PermissionError(f"denied for secret={SECRET} (raw {SECRET})")

    monkeypatch.setattr(fs, "cat_file", leaky)
    with pytest.raises(StorageError) as ei:
        read_bytes(url)
    err = ei.value
    assert SECRET not in str(err)
    assert err.__cause__ is None and err.__context__ is None
    assert SECRET not in "".join(traceback.format_exception(err))
    assert url in str(err)
