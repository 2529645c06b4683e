"""The upload watcher (core.uploads) against a real folder and the S3 server (moto, server mode).

Each scenario runs on both: a video arriving in pieces, hundreds of videos with one timestamp
behind a tick cap, a replaced and a deleted video, corrupt cursors, odd names. Then what only
one side has: symbolic links, FIFOs, unreadable folders (local); listing ranges and the page
budget (S3); and the state stores that keep the cursor small.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from curation_assets.core import storage, temp_files
from curation_assets.core.keys import rel_path_from_key
from curation_assets.core.upload_scan import plan_ranges, scan_object_store
from curation_assets.core.upload_state import (
    INLINE_STATE_MAX_BYTES,
    FolderStateStore,
    KeyValueStateStore,
    decode_state,
    encode_state,
)
from curation_assets.core.uploads import WatchSettings, WatchTick, watch_tick

from .video_factory import make_video

# only the "unchanged since the previous tick" rule, unless a test says otherwise
STABLE_ONLY = WatchSettings(settle_age_s=1e9)


class LocalInput:
    """Videos in a real folder."""

    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)

    def put(self, rel: str, data: bytes, mtime: float | None = None) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if mtime is not None:
            os.utime(path, (mtime, mtime))

    def append(self, rel: str, data: bytes) -> None:
        with open(self.root / rel, "ab") as f:
            f.write(data)

    def remove(self, rel: str) -> None:
        (self.root / rel).unlink()

    def put_many(self, items: dict[str, bytes], mtime: float | None = None) -> None:
        for rel, data in items.items():
            self.put(rel, data, mtime)


class S3Input:
    """Objects under a prefix on the S3 server; a "piece" is a new, longer version of the object."""

    kind = "s3"

    def __init__(self, server, bucket_url: str) -> None:
        self.client = server.client()
        self.bucket = bucket_url[len("s3://"):]
        self.url = f"{bucket_url}/incoming"
        self._content: dict[str, bytes] = {}

    def put(self, rel: str, data: bytes, mtime: float | None = None) -> None:
        self._content[rel] = data
        self.client.put_object(Bucket=self.bucket, Key=f"incoming/{rel}", Body=data)

    def append(self, rel: str, data: bytes) -> None:
        self.put(rel, self._content[rel] + data)

    def put_many(self, items: dict[str, bytes]) -> None:
        put_objects(self.client, self.bucket, {f"incoming/{k}": v for k, v in items.items()})
        self._content.update(items)

    def remove(self, rel: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=f"incoming/{rel}")


def put_objects(client, bucket: str, items: dict[str, bytes]) -> None:
    """Many puts at once (the server answers requests on threads)."""
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda kv: client.put_object(Bucket=bucket, Key=kv[0], Body=kv[1]), items.items()))


@pytest.fixture(params=["local", "s3"])
def source(request, tmp_path):
    if request.param == "local":
        root = tmp_path / "in"
        root.mkdir()
        return LocalInput(root)
    return S3Input(request.getfixturevalue("s3_server"), request.getfixturevalue("s3_bucket"))


def ticks(url: str, settings: WatchSettings, n: int, cursor: str | None = None, **kw) -> list[WatchTick]:
    out = []
    for _ in range(n):
        t = watch_tick(url, cursor, settings, **kw)
        cursor = t.cursor
        out.append(t)
    return out


def keys(tick: WatchTick) -> list[str]:
    return [u.key for u in tick.requested]


# --------------------------------------------------------------------------------------------
# both backends
# --------------------------------------------------------------------------------------------


def test_a_video_arriving_in_pieces_is_requested_once_when_it_stops_changing(source, tmp_path):
    video = make_video(tmp_path / "src.mp4", seconds=2, width=160, height=128).read_bytes()
    pieces = [video[i : i + len(video) // 4 + 1] for i in range(0, len(video), len(video) // 4 + 1)]
    assert len(pieces) >= 4
    source.put("cam/a.mp4", pieces[0])
    t = watch_tick(source.url, None, STABLE_ONLY)
    assert t.requested == [] and t.settling == ["cam/a.mp4"]
    for piece in pieces[1:]:
        source.append("cam/a.mp4", piece)
        t = watch_tick(source.url, t.cursor, STABLE_ONLY)
        assert t.requested == [] and t.settling == ["cam/a.mp4"], "requested while it was still growing"
    t = watch_tick(source.url, t.cursor, STABLE_ONLY)
    assert keys(t) == ["cam/a.mp4"] and t.settling == []
    (up,) = t.requested
    assert up.size == len(video) and not up.replaced
    assert (up.etag is not None) == (source.kind == "s3")
    after = ticks(source.url, STABLE_ONLY, 3, t.cursor)
    assert all(x.requested == [] for x in after)
    assert after[-1].cursor == t.cursor, "an idle tick changed the cursor"


def test_hundreds_with_one_timestamp_behind_a_small_cap_are_all_requested_once(source):
    stamp = time.time()  # S3 gives the same second to objects put within it
    names = [f"batch/v{i:03d}.mp4" for i in range(300)]
    source.put_many({n: n.encode() for n in names}, **({"mtime": stamp} if source.kind == "local" else {}))
    settings = WatchSettings(max_per_tick=70, settle_age_s=60)  # all old enough: no settling tick
    seen: list[str] = []
    cursor = None
    total = len(names)
    later = stamp + 7200
    for expected in (70, 70, 70, 70, 21):
        t = watch_tick(source.url, cursor, settings, now=later)
        cursor = t.cursor
        assert len(t.requested) == expected
        assert t.carried == total - len(seen) - expected
        seen += keys(t)
        if len(seen) == 140:  # a late arrival with the very same timestamp
            source.put("batch/late.mp4", b"late", mtime=stamp)
            total += 1
    t = watch_tick(source.url, cursor, settings, now=later)
    assert t.requested == [] and t.carried == 0
    assert sorted(seen) == sorted(names + ["batch/late.mp4"])
    assert len(seen) == len(set(seen)), "a video was requested twice"


def test_a_replaced_video_is_requested_again_and_a_deleted_one_is_reported_once(source):
    source.put("a.mp4", b"first")
    source.put("b.mp4", b"bee")
    t = ticks(source.url, STABLE_ONLY, 2)[-1]
    assert sorted(keys(t)) == ["a.mp4", "b.mp4"]
    first_ids = {u.key: u.content_id for u in t.requested}
    time.sleep(0.01)
    source.put("a.mp4", b"other")  # same size, new content (local: new mtime; S3: new ETag)
    source.remove("b.mp4")
    t = watch_tick(source.url, t.cursor, STABLE_ONLY)
    assert t.deleted == ["b.mp4"] and t.deleted_keys == ["b.mp4"]
    assert t.requested == [] and t.settling == ["a.mp4"]
    t = watch_tick(source.url, t.cursor, STABLE_ONLY)
    assert keys(t) == ["a.mp4"] and t.requested[0].replaced and t.new == []
    assert t.requested[0].content_id != first_ids["a.mp4"]  # a run_key built from it differs
    assert t.deleted == [], "a deletion was reported twice"
    t = watch_tick(source.url, t.cursor, STABLE_ONLY)
    assert t.requested == [] and t.deleted == []
    # a video that vanishes before it was ever requested is no deleted video
    source.put("c.mp4", b"cee")
    t = watch_tick(source.url, t.cursor, STABLE_ONLY)
    assert t.settling == ["c.mp4"]
    source.remove("c.mp4")
    t = watch_tick(source.url, t.cursor, STABLE_ONLY)
    assert t.deleted == [] and t.requested == []


@pytest.mark.parametrize(
    "bad",
    ["", "123", "caw1;garbage", "caw1;c=zz;n=1;i=AAAA;p=", "caw1;c=x", "\x00\xff", "caw1;" + "x" * 5000],
)
def test_a_corrupt_cursor_starts_over_without_requesting_known_videos_again(source, bad):
    for n in ("a.mp4", "b.mp4", "new.mp4"):
        source.put(n, n.encode(), mtime=time.time() - 7200)
    settings = WatchSettings(settle_age_s=60)
    later = time.time() + 7200  # S3 objects cannot be given an old LastModified
    t = watch_tick(source.url, bad, settings, known_keys=lambda: ["a.mp4", "b.mp4", "gone.mp4"], now=later)
    assert t.reset
    assert keys(t) == ["new.mp4"] and t.adopted == 2
    assert watch_tick(source.url, t.cursor, settings, now=later).requested == []
    # without the known partitions a fresh start requests everything again, after settling
    t = watch_tick(source.url, bad, STABLE_ONLY)
    assert t.reset and t.requested == [] and len(t.settling) == 3


def test_a_valid_cursor_cut_short_or_altered_starts_over(source):
    source.put("a.mp4", b"a")
    good = ticks(source.url, STABLE_ONLY, 2)[-1].cursor
    for bad in (good[: len(good) // 2], good.replace("n=1", "n=2"), good[:-3] + "!!!", good.replace(";i=", ";i=A")):
        t = watch_tick(source.url, bad, STABLE_ONLY)
        assert t.reset, bad
        assert t.requested == []  # nothing requested twice: without the table it settles first


def test_odd_names_are_requested_with_keys_that_lead_back_to_them(source):
    odd = [
        "with space.mp4",
        "100% done.mp4",
        "ünïcødé 视频.MOV",
        "comma, [brackets].mkv",
        "dots...in name.webm",
        "nested dir/x%2F.avi",
        "tab\there.mp4",
    ]
    for n in odd + ["notes.txt", ".hidden.mp4", "dir/.partial.mp4"]:
        source.put(n, b"v")
    t = ticks(source.url, STABLE_ONLY, 2)[-1]
    got = {u.rel_path: u.key for u in t.requested}
    assert sorted(got) == sorted(odd)
    for rel, key in got.items():
        assert rel_path_from_key(key) == rel
        assert storage.resolve_under(source.url, rel_path_from_key(key)) == storage.join(source.url, *rel.split("/"))
    assert not t.skipped  # hidden and non-video names are passed over without a note


def test_the_output_folder_inside_the_input_is_not_watched(source):
    source.put("a.mp4", b"a")
    source.put("out/clips/c1.mp4", b"clip")
    t = ticks(source.url, STABLE_ONLY, 2, exclude=[storage.join(source.url, "out")])[-1]
    assert keys(t) == ["a.mp4"]
    with pytest.raises(ValueError, match="output folder is the input"):
        watch_tick(source.url, None, STABLE_ONLY, exclude=[source.url])


def test_an_input_that_suddenly_lists_nothing_is_not_taken_for_deletions(source):
    source.put("a.mp4", b"a")
    t = ticks(source.url, STABLE_ONLY, 2)[-1]
    source.remove("a.mp4")
    t = watch_tick(source.url, t.cursor, STABLE_ONLY)
    assert t.deleted == [] and t.warnings and "lists no videos" in t.warnings[0]
    source.put("b.mp4", b"b")  # once something is there again the deletion is real
    t = watch_tick(source.url, t.cursor, STABLE_ONLY)
    assert t.deleted == ["a.mp4"]


def test_old_files_qualify_at_first_sight_new_ones_settle(source):
    now = time.time()
    source.put("old.mp4", b"o", mtime=now - 3600)
    source.put("fresh.mp4", b"f")
    t = watch_tick(source.url, None, WatchSettings(settle_age_s=600), now=now + (0 if source.kind == "local" else 1))
    if source.kind == "local":
        assert keys(t) == ["old.mp4"] and t.settling == ["fresh.mp4"]
    else:  # S3 sets LastModified itself: both are fresh
        assert t.requested == [] and sorted(t.settling) == ["fresh.mp4", "old.mp4"]
    t = watch_tick(source.url, None, WatchSettings(settle_age_s=600), now=now + 7200)
    assert sorted(keys(t)) == ["fresh.mp4", "old.mp4"]


def test_a_changed_extension_list_starts_over_instead_of_reporting_deletions(source):
    source.put("a.mp4", b"a")
    source.put("b.avi", b"b")
    t = ticks(source.url, STABLE_ONLY, 2)[-1]
    narrower = WatchSettings(settle_age_s=1e9, extensions=[".mp4"])
    t = watch_tick(source.url, t.cursor, narrower, known_keys=lambda: ["a.mp4", "b.avi"])
    assert t.reset and "extension" in t.reset
    assert t.deleted == [] and t.requested == [] and t.adopted == 1


def test_settings_that_would_do_nothing_are_refused():
    for bad in (dict(extensions=[]), dict(extensions=["mp4/x"]), dict(max_per_tick=0), dict(settle_age_s=-1),
                dict(list_pages_per_tick=0), dict(list_concurrency=0), dict(list_page_size=1001),
                dict(settle_age_s=float("nan"))):
        (name,) = bad
        with pytest.raises(ValueError, match="video extension" if name == "extensions" else f"{name} must be"):
            WatchSettings(**bad)
    assert WatchSettings(extensions="MP4, mov").extensions == (".mov", ".mp4")
    with pytest.raises(ValueError, match="object stores"):
        watch_tick("/tmp", None, WatchSettings(list_pages_per_tick=3))


# --------------------------------------------------------------------------------------------
# local folders
# --------------------------------------------------------------------------------------------


def test_links_fifos_and_temp_files(tmp_path):
    root = tmp_path / "in"
    (root / "real").mkdir(parents=True)
    (root / "real" / "a.mp4").write_bytes(b"a")
    (root / ".annex").mkdir()
    (root / ".annex" / "obj1").write_bytes(b"annexed")
    (root / "annexed.mp4").symlink_to(root / ".annex" / "obj1")  # git-annex style: followed
    (root / "alias.mp4").symlink_to(root / "real" / "a.mp4")  # the same video under a second name
    outside = tmp_path / "secret.mp4"
    outside.write_bytes(b"s")
    (root / "leak.mp4").symlink_to(outside)
    (root / "linkdir").symlink_to(tmp_path)  # a folder outside the input
    (root / "loop").symlink_to(root)  # a cycle
    (root / ".hidden").mkdir()
    (root / ".hidden" / "h.mp4").write_bytes(b"h")
    (root / "via").symlink_to(root / ".hidden")  # a hidden folder through a visible link: followed
    os.mkfifo(root / "pipe.mp4")
    (root / temp_files.temp_file_name()).write_bytes(b"t")
    (root / ".a.mp4.Xy12Zq").write_bytes(b"rsync in progress")
    t = ticks(str(root), STABLE_ONLY, 2)[-1]
    assert sorted(keys(t)) == ["annexed.mp4", "real/a.mp4", "via/h.mp4"]
    reasons = dict(t.skipped)
    assert reasons["leak.mp4"] == reasons["linkdir"] == "symbolic link to outside the input"
    assert "real/a.mp4" in reasons["alias.mp4"]
    assert reasons["pipe.mp4"] == "not a regular file"
    # the annexed object changes: that is a replaced video
    (root / ".annex" / "obj1").write_bytes(b"annexed again")
    t = ticks(str(root), STABLE_ONLY, 2, t.cursor)[-1]
    assert keys(t) == ["annexed.mp4"] and t.requested[0].replaced


def test_missing_input_folder_raises_and_keeps_nothing(tmp_path):
    with pytest.raises(storage.StorageNotFoundError, match="does not exist"):
        watch_tick(str(tmp_path / "nope"), None, STABLE_ONLY)


_UNREADABLE_SCRIPT = r"""
import json, sys
from curation_assets.core.uploads import WatchSettings, watch_tick
t = watch_tick(sys.argv[1], sys.argv[2], WatchSettings(settle_age_s=1e9))
print(json.dumps({"deleted": t.deleted, "unreadable": t.unreadable, "requested": [u.key for u in t.requested],
                  "skipped": t.skipped, "cursor": t.cursor}))
"""


def _tick_as_unprivileged(root: Path, cursor: str) -> dict:
    """Run a tick in a process that file permissions apply to: root ignores them, so as root
    the process gives up the two capabilities that let it read any folder."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    cmd = [sys.executable, "-c", _UNREADABLE_SCRIPT, str(root), cursor]
    if os.geteuid() == 0:
        caps = "-dac_override,-dac_read_search"
        cmd = ["setpriv", "--bounding-set", caps, "--inh-caps", caps, *cmd]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def test_an_unreadable_folder_hides_nothing_and_deletes_nothing(tmp_path):
    root = tmp_path / "in"
    (root / "locked").mkdir(parents=True)
    (root / "locked" / "x.mp4").write_bytes(b"x")
    (root / "open.mp4").write_bytes(b"o")
    t = ticks(str(root), STABLE_ONLY, 2)[-1]
    assert sorted(keys(t)) == ["locked/x.mp4", "open.mp4"]
    os.chmod(root / "locked", 0o000)
    try:
        got = _tick_as_unprivileged(root, t.cursor)
    finally:
        os.chmod(root / "locked", 0o755)
    assert got["unreadable"] == ["locked"] and got["deleted"] == [] and got["requested"] == []
    # and once it is readable again nothing is requested a second time
    assert watch_tick(str(root), got["cursor"], STABLE_ONLY).requested == []


# --------------------------------------------------------------------------------------------
# S3: ranges, page budget
# --------------------------------------------------------------------------------------------


def _full_listing(client, bucket: str, prefix: str) -> dict[str, str]:
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            out[o["Key"][len(prefix):]] = o["ETag"].strip('"')
    return out


def test_listing_by_ranges_is_exactly_a_full_listing(s3_server, s3_bucket):
    client = s3_server.client()
    bucket = s3_bucket[len("s3://"):]
    names = [f"d{i % 7}/v{i:04d}.mp4" for i in range(0, 400, 2)]
    put_objects(client, bucket, {f"in/{n}": n.encode() for n in names})
    known = sorted(names)
    assert len(plan_ranges(known, 15)) == 14
    # new keys before the first, right after every bound, in the middle of ranges, after the last
    bounds = [hi for _lo, hi, _n in plan_ranges(known, 15) if hi]
    added = ["a-first.mp4", "zz-last.mp4"] + [b + "x.mp4" for b in bounds] + [f"d3/v{i:04d}.mp4" for i in range(1, 400, 40)]
    put_objects(client, bucket, {f"in/{n}": b"new" for n in added})
    client.delete_object(Bucket=bucket, Key=f"in/{known[100]}")
    scan = scan_object_store(f"{s3_bucket}/in", (".mp4",), known=known, page_size=15, concurrency=4)
    expected = _full_listing(client, bucket, "in/")
    assert {k: v.etag for k, v in scan.files.items()} == expected
    assert scan.covered == [(None, None)]
    # about one request per known range, plus the ranges that grew
    assert scan.requests <= 2 * len(plan_ranges(known, 15))


def test_a_page_budget_sees_everything_over_a_sweep_and_only_judges_what_it_listed(s3_server, s3_bucket):
    client = s3_server.client()
    bucket = s3_bucket[len("s3://"):]
    url = f"{s3_bucket}/in"
    put_objects(client, bucket, {f"in/v{i:03d}.mp4": b"x" for i in range(100)})
    full = WatchSettings(settle_age_s=0, list_page_size=10)
    t = watch_tick(url, None, full)
    assert len(t.requested) == 100
    budget = WatchSettings(settle_age_s=0, list_page_size=10, list_pages_per_tick=3)
    client.delete_object(Bucket=bucket, Key="in/v095.mp4")  # near the end: listed late in the sweep
    client.put_object(Bucket=bucket, Key="in/v000a.mp4", Body=b"x")  # at the start
    cursor = t.cursor
    found: list[str] = []
    deleted_at = None
    for tick_no in range(1, 9):
        t = watch_tick(url, cursor, budget)
        cursor = t.cursor
        assert t.list_requests <= 3
        found += keys(t)
        if t.deleted:
            assert t.deleted == ["v095.mp4"] and deleted_at is None
            deleted_at = tick_no
    assert found == ["v000a.mp4"]
    assert deleted_at == 4  # pages 1-3, 4-6, 7-9, then the one holding v095
    assert watch_tick(url, cursor, full).requested == []


# --------------------------------------------------------------------------------------------
# state stores: the cursor stays small
# --------------------------------------------------------------------------------------------


def test_a_large_table_goes_to_the_store_and_the_cursor_stays_small(tmp_path):
    import dagster as dg

    root = tmp_path / "in"
    for i in range(3000):
        d = root / f"day{i // 500}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"camera_{i:05d}.mp4").write_bytes(b"x")
    uncapped = WatchSettings(settle_age_s=1e9, max_per_tick=5000)
    with dg.instance_for_test() as instance:
        kv = KeyValueStateStore(instance.daemon_cursor_storage.get_cursor_values,
                                instance.daemon_cursor_storage.set_cursor_values)
        for store in (FolderStateStore(str(tmp_path / "state")), kv):
            inline = watch_tick(str(root), None, STABLE_ONLY)
            assert len(inline.cursor) > INLINE_STATE_MAX_BYTES  # without a store it all rides along
            t1 = watch_tick(str(root), None, STABLE_ONLY, store=store, store_key="s1")
            assert len(t1.cursor) < 200 and ";s=0;" in t1.cursor
            t2 = watch_tick(str(root), t1.cursor, uncapped, store=store, store_key="s1")
            assert len(t2.requested) == 3000 and ";s=1;" in t2.cursor
            # the daemon loses tick 2 (its cursor is never committed): tick 2 again from t1
            again = watch_tick(str(root), t1.cursor, uncapped, store=store, store_key="s1")
            assert len(again.requested) == 3000 and again.reset is None
            t3 = watch_tick(str(root), t2.cursor, STABLE_ONLY, store=store, store_key="s1")
            assert t3.requested == [] and t3.cursor == t2.cursor and t3.reset is None
            # a slot overwritten behind the cursor's back is noticed, never trusted
            rows = decode_state(store.load("s1.1"))
            rows["../../evil.mp4"] = rows.pop("day0/camera_00000.mp4")  # same count, one name changed
            store.save("s1.1", encode_state(rows))
            t4 = watch_tick(str(root), t2.cursor, STABLE_ONLY, store=store, store_key="s1",
                            known_keys=lambda: [u.key for u in t2.requested])
            assert t4.reset == "cursor: state slot 1 does not match the cursor (overwritten or corrupt)"
            assert t4.requested == [] and t4.deleted == [] and t4.adopted == 3000


def test_state_blob_round_trip_and_refusals():
    rows = {"a.mp4": (b"12345678", 0), "b/ü.mp4": (b"abcdefgh", 1), "c d.mp4": (b"ABCDEFGH", 2)}
    assert decode_state(encode_state(rows)) == rows
    assert decode_state(encode_state({})) == {}
    blob = encode_state(rows)
    for bad, why in ((b"", "unknown format"), (b"XXXX" + blob[4:], "unknown format"), (blob[:-5], "not compressed data"),
                     (blob[:4] + b"notzlib", "not compressed data")):
        with pytest.raises(ValueError, match=f"state blob: {why}"):
            decode_state(bad)


def test_listing_timestamps_read_like_botocore_reads_them(s3_server, s3_bucket):
    from botocore.utils import parse_timestamp

    from curation_assets.core.upload_scan import _iso_timestamp

    for text in ("2026-12-01T10:12:39.000Z", "2026-12-01T10:12:39Z", "2026-12-01T10:12:39.123456+02:00",
                 "Tue, 01 Dec 2026 10:12:39 GMT", "1796119453"):
        assert _iso_timestamp(text) == parse_timestamp(text), text
    client = s3_server.client()
    bucket = s3_bucket[len("s3://"):]
    client.put_object(Bucket=bucket, Key="in/a.mp4", Body=b"a")
    scan = scan_object_store(f"{s3_bucket}/in", (".mp4",))
    head = client.head_object(Bucket=bucket, Key="in/a.mp4")
    listed = client.list_objects_v2(Bucket=bucket, Prefix="in/")["Contents"][0]["LastModified"]
    assert scan.files["a.mp4"].mtime_ns == int(listed.timestamp() * 1e9)
    assert abs(scan.files["a.mp4"].mtime_ns / 1e9 - head["LastModified"].timestamp()) < 1


def test_a_state_store_that_cannot_be_read_fails_the_tick_instead_of_starting_over(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    for i in range(800):
        (root / f"video_{i:04d}.mp4").write_bytes(b"x")
    store = FolderStateStore(str(tmp_path / "state"))
    t = ticks(str(root), WatchSettings(settle_age_s=1e9, max_per_tick=1000), 2, store=store, store_key="s")[-1]
    assert len(t.requested) == 800 and ";s=1;" in t.cursor
    slot = tmp_path / "state" / "s.1"
    slot.unlink()
    slot.mkdir()  # reading it now fails (not "missing": a passing outage looks like this)
    with pytest.raises(storage.StorageError, match="failed: IsADirectoryError"):
        watch_tick(str(root), t.cursor, STABLE_ONLY, store=store, store_key="s")
    slot.rmdir()  # gone for good: that is a fresh start, with the known partitions adopted
    t2 = watch_tick(str(root), t.cursor, STABLE_ONLY, store=store, store_key="s",
                    known_keys=lambda: [u.key for u in t.requested])
    assert t2.reset and "missing" in t2.reset and t2.adopted == 800 and t2.requested == []
