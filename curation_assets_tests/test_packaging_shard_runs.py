"""``package shards`` run twice at once (real processes, different settings) leaves an index that
lists exactly the shards on disk with their digests; a plain re-run with the same settings checks
the shards it keeps against the index and rebuilds a deleted or altered one."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from curation_assets.cli import build_parser
from curation_assets.cli import main as package_main
from curation_assets.packaging import shards
from curation_assets.packaging.cli import section_from_args

from .packaging_fixtures import packaging_inputs, packaging_models, written_layout  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parents[1]
# imports first, then waits for a common start time, so both runs really overlap
AT_ONCE = """
import sys, time
from curation_assets.cli import main
from curation_assets.packaging import energon, shards  # noqa: F401 - imported before the start
start = float(sys.argv[1])
time.sleep(max(0.0, start - time.time()))
sys.exit(main(sys.argv[2:]))
"""


@pytest.fixture
def out(written_layout, tmp_path) -> Path:
    copy = tmp_path / "out"
    shutil.copytree(written_layout, copy)
    return copy


def _package(*argv: str) -> tuple[int, str]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = package_main(["package", *argv])
    return rc, buf.getvalue()


def on_disk(dest: Path) -> dict[str, bytes]:
    return {p.relative_to(dest).as_posix(): p.read_bytes() for p in sorted(dest.rglob("*.tar"))}


def assert_index_is_the_disk(dest: Path) -> dict:
    index = json.loads((dest / shards.INDEX_FILE).read_text())
    files = on_disk(dest)
    assert sorted(s["name"] for s in index["shards"]) == sorted(files)
    for s in index["shards"]:
        data = files[s["name"]]
        assert (len(data), hashlib.sha256(data).hexdigest()) == (s["bytes"], s["sha256"]), s["name"]
    listed = {name for g in index["groups"].values() for name in g["shards"]}
    assert listed == set(files)
    assert shards.verify_shards(str(dest), index) == []
    return index


@pytest.mark.slow
def test_two_runs_with_different_settings_at_once_leave_a_consistent_index(out):
    dest = out / "webdataset" / "default"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    runs = (["--num-groups", "5", "--max-shard-samples", "1"], ["--num-groups", "2", "--val-fraction", "0.5"])
    for round_ in range(2):
        start = time.time() + 4.0
        procs = [subprocess.Popen([sys.executable, "-c", AT_ONCE, str(start), "package", "shards", "--output-path",
                                   str(out), "--energon-workers", "1", *extra],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for extra in runs]
        outputs = [p.communicate(timeout=300)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outputs
        assert sum("another package run is writing" in o for o in outputs) == 1, outputs  # they did overlap
        index = assert_index_is_the_disk(dest)
        hashes = {section_from_args(build_parser().parse_args(["package", "shards", "--output-path", str(out),
                                                                *extra])).shard_settings().settings_hash()
                  for extra in runs}
        assert index["settings_hash"] in hashes
        assert sorted(p.name for p in (dest / ".nv-meta").iterdir())  # the last run's energon metadata
        idx = {p.relative_to(dest).as_posix()[: -len(".idx")] for p in dest.rglob("*.tar.idx")}
        assert idx <= set(on_disk(dest)), round_
        assert not (dest / shards.LOCK_FILE).exists()
        runs = runs[::-1]


def test_a_plain_rerun_rebuilds_a_deleted_and_an_altered_shard(out):
    dest = out / "webdataset" / "default"
    args = ("shards", "--output-path", str(out), "--num-groups", "3", "--max-shard-samples", "1", "--no-energon")
    rc, text = _package(*args)
    assert rc == 0, text
    first = on_disk(dest)
    index = assert_index_is_the_disk(dest)
    assert len(first) >= 3
    names = sorted(first)
    deleted, altered, truncated = names[0], names[1], names[2]
    groups = {name: s["group"] for s in index["shards"] for name in [s["name"]]}
    untouched = {n: (dest / n).stat().st_mtime_ns for n in names
                 if groups[n] not in {groups[deleted], groups[altered], groups[truncated]}}
    (dest / deleted).unlink()
    data = bytearray(first[altered])
    data[len(data) // 2] ^= 0xFF  # same size, one byte changed
    (dest / altered).write_bytes(bytes(data))
    (dest / truncated).write_bytes(first[truncated][:-512])

    rc, text = _package(*args)
    assert rc == 0, text
    assert f"{deleted}: missing; its group is rebuilt" in text
    assert f"{altered}: its SHA-256 differs from the index; its group is rebuilt" in text
    assert f"{truncated}: {len(first[truncated]) - 512} bytes, the index says {len(first[truncated])}" in text
    assert on_disk(dest) == first  # the same bytes as the first build
    assert_index_is_the_disk(dest)
    assert all((dest / n).stat().st_mtime_ns == t for n, t in untouched.items())

    rc, text = _package(*args)  # nothing wrong now: nothing rebuilt
    assert rc == 0 and "groups rewritten: 0" in text and "rebuilt" not in text


PROBE = """
import sys
from curation_assets.packaging import shards
from curation_assets.core import storage
try:
    with shards.shard_lock(sys.argv[1], timeout_s=0.3):
        print("got it")
except storage.StorageError as exc:
    print(exc)
"""


def test_the_lock_is_reentrant_in_a_thread_and_refuses_another_process(tmp_path):
    dest = str(tmp_path / "d")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with shards.shard_lock(dest), shards.shard_lock(dest):  # re-entrant: a caller holds it around a build
        done = subprocess.run([sys.executable, "-c", PROBE, dest], env=env, capture_output=True, text=True,
                              timeout=120)
        assert "another package run has been writing" in done.stdout, done.stdout + done.stderr
    assert not (tmp_path / "d" / shards.LOCK_FILE).exists()  # nothing left behind
    done = subprocess.run([sys.executable, "-c", PROBE, dest], env=env, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "got it", done.stdout + done.stderr
