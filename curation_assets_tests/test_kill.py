"""Runs killed with SIGKILL leave no partial file under a real name, their temporary files are
cleaned up by the next run, and that run gives the same output as an uninterrupted one.

The slow test drives ``python -m curation_assets.cli run`` as a subprocess and kills its process
group at several points (during start-up, at the first clip, while a temporary file is visible, at
the first video document, at the first parquet file), each time on the output the previous killed
run left. The fast tests pin down the temporary-file cleanup rules (dead writers' files go at
once, live writers' files stay).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import av
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageSequence

from curation_assets.core import storage

from .layout_checks import PATTERNS, all_files, check_layout
from .model_fixtures import build_cosmos_standin
from .video_factory import make_video

VIDEOS = {
    "a.mp4": dict(seconds=6, width=320, height=256, audio=True),
    "sub/b c.mp4": dict(seconds=4, width=256, height=256, audio=False),
    "z.mp4": dict(seconds=6, width=256, height=256, audio=False),
}


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _temp(folder: Path, host: str, pid: int, age_s: float = 0.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{storage.TEMP_PREFIX}{host}_{pid}_{uuid.uuid4().hex}{storage.TEMP_SUFFIX}"
    path.write_bytes(b"half a file")
    if age_s:
        past = time.time() - age_s
        os.utime(path, (past, past))
    return path


# ---------------------------------------------------------------------------------------------
# The cleanup rules (fast)


def test_temp_names_carry_their_writer():
    name = storage.temp_file_name()
    assert storage.is_temp_file_name(name) and f"_{os.getpid()}_" in name
    assert not storage.temp_file_owner_is_dead(name)  # this process is alive
    host = storage._host_tag()
    assert storage.temp_file_owner_is_dead(f".tmp-{host}_{_dead_pid()}_{uuid.uuid4().hex}.partial")
    assert not storage.temp_file_owner_is_dead(f".tmp-otherhost_{_dead_pid()}_{uuid.uuid4().hex}.partial")
    assert not storage.temp_file_owner_is_dead(f".tmp-{uuid.uuid4().hex}.partial")  # unknown owner


def test_cleanup_removes_dead_writers_files_at_once_and_keeps_live_ones(tmp_path):
    host = storage._host_tag()
    dead = _temp(tmp_path, host, _dead_pid())
    live = _temp(tmp_path, host, os.getpid())
    foreign_new = _temp(tmp_path, "otherhost", 42)
    foreign_old = _temp(tmp_path, "otherhost", 42, age_s=2 * storage.TEMP_MAX_AGE_S)
    legacy_old = tmp_path / ".tmp-0123abcd.partial"
    legacy_old.write_bytes(b"x")
    past = time.time() - 2 * storage.TEMP_MAX_AGE_S
    os.utime(legacy_old, (past, past))
    nested = _temp(tmp_path / "deeper", host, _dead_pid())
    removed = storage.cleanup_temp_files(str(tmp_path), min_age_s=storage.TEMP_MAX_AGE_S, recursive=False)
    assert removed == 3
    assert not dead.exists() and not foreign_old.exists() and not legacy_old.exists()
    assert live.exists() and foreign_new.exists() and nested.exists()  # not recursive
    assert storage.cleanup_temp_files(str(tmp_path), min_age_s=storage.TEMP_MAX_AGE_S) == 1  # recursive
    assert not nested.exists()
    assert storage.cleanup_temp_files(str(tmp_path / "missing"), recursive=False) == 0


def test_a_concurrent_writers_temp_file_survives_another_runs_cleanup(tmp_path, monkeypatch):
    """Run A is between writing its temporary file and renaming it when run B's clip_writer sweeps
    the folder: A's file is kept (A is alive) and A's rename succeeds on the first try."""
    real_replace = os.replace
    swept = []

    def replace_after_sweep(src, dst):
        if not swept:
            swept.append(storage.cleanup_temp_files(str(tmp_path), min_age_s=storage.TEMP_MAX_AGE_S,
                                                    recursive=False))
            assert os.path.exists(src)
        return real_replace(src, dst)

    monkeypatch.setattr(storage.os, "replace", replace_after_sweep)
    storage.write_bytes_atomic(str(tmp_path / "x.json"), b"{}")
    assert swept == [0] and os.listdir(tmp_path) == ["x.json"]


# ---------------------------------------------------------------------------------------------
# The kill test (slow)


def assert_no_partial_file(out: Path) -> list[Path]:
    """Every file under a real name is whole; returns the temporary files found."""
    temps = []
    if not out.exists():
        return temps
    files = all_files(out)
    metas = {}
    for rel in files:
        if rel.startswith("metas/v0/") and not storage.is_temp_file_name(rel):
            metas[rel.split("/")[-1][:-5]] = json.loads((out / rel).read_text())
    for rel in sorted(files):
        path = out / rel
        if storage.is_temp_file_name(rel):
            temps.append(path)
            continue
        assert any(p.match(rel) for p in PATTERNS.values()), f"unexpected file {rel}"
        data = path.read_bytes()
        assert data, f"empty file {rel}"
        if rel.endswith(".json"):
            json.loads(data)
        elif rel.endswith(".parquet"):
            assert pq.read_table(io.BytesIO(data)).column_names == ["id", "embedding"]
        elif rel.endswith(".pickle"):
            assert pickle.loads(data).shape[0] == 1
        elif rel.endswith(".webp"):
            with Image.open(io.BytesIO(data)) as im:
                n = sum(1 for frame in ImageSequence.Iterator(im) if frame.load() is not None)
            assert n >= 1, rel
        elif rel.endswith(".mp4"):
            with av.open(io.BytesIO(data)) as c:
                frames = sum(1 for _ in c.decode(video=0))
            assert frames > 0, rel
            meta = metas.get(path.stem)
            if meta is not None and "num_frames" in meta:
                assert frames == meta["num_frames"] and len(data) == meta["num_bytes"], rel
    return temps


def _snapshot(out: Path) -> dict[str, int]:
    if not out.exists():
        return {}
    return {rel: (out / rel).stat().st_mtime_ns for rel in all_files(out) if (out / rel).exists()}


def _changed(out: Path, before: dict[str, int]) -> set[str]:
    now = {}
    for root, _dirs, names in os.walk(out):
        for name in names:
            p = Path(root) / name
            try:
                now[str(p.relative_to(out))] = p.stat().st_mtime_ns
            except FileNotFoundError:  # a temporary file renamed meanwhile
                now[str(p.relative_to(out))] = -1
    return {rel for rel, m in now.items() if before.get(rel) != m}


# kill point -> predicate over the names changed since the run started (None: a fixed delay)
KILL_POINTS: list[tuple[str, float | None, object]] = [
    ("0.5 s after start", 0.5, None),
    ("first clip written", None, lambda changed: any(r.startswith("clips/") and r.endswith(".mp4") for r in changed)),
    ("temporary file visible", None, lambda changed: any(storage.is_temp_file_name(r) for r in changed)),
    ("first video document", None, lambda changed: any(r.startswith("processed_videos/") and r.endswith(".json")
                                                       and not storage.is_temp_file_name(r) for r in changed)),
    ("first parquet file", None, lambda changed: any(r.endswith(".parquet") for r in changed)),
]


@pytest.mark.slow
def test_sigkill_at_several_points_then_rerun_equals_uninterrupted_run(tmp_path):
    videos = tmp_path / "in"
    for rel, kw in VIDEOS.items():
        (videos / rel).parent.mkdir(parents=True, exist_ok=True)
        make_video(videos / rel, fps=25, **kw)
    models = tmp_path / "models"
    build_cosmos_standin(models, "224p")
    out = tmp_path / "out"
    home = tmp_path / "home"
    cmd = [sys.executable, "-m", "curation_assets.cli", "run", "--video-dir", str(videos), "--output-path", str(out),
           "--fixed-stride-split-duration", "2", "--generate-previews", "--generate-embeddings",
           "--model-dir", str(models), "--dagster-home", str(home)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    logs = tmp_path / "logs"
    logs.mkdir()

    def start(name: str) -> subprocess.Popen:
        return subprocess.Popen(cmd, cwd=tmp_path, env=env, start_new_session=True,
                                stdout=open(logs / f"{name}.out", "wb"), stderr=open(logs / f"{name}.err", "wb"))

    def finish(p: subprocess.Popen, name: str) -> int:
        rc = p.wait(timeout=300)
        assert rc == 0, (logs / f"{name}.out").read_text() + (logs / f"{name}.err").read_text()
        return rc

    # The uninterrupted run, to compare with; then the same output folder from scratch.
    finish(start("reference"), "reference")
    check_layout(out, videos, sorted(VIDEOS))
    reference = {rel: (out / rel).read_bytes() for rel in all_files(out)}
    shutil.rmtree(out)

    outcomes = []
    for i, (label, delay, predicate) in enumerate(KILL_POINTS):
        before = _snapshot(out)
        p = start(f"kill{i}")
        started = time.monotonic()
        fired = False
        while p.poll() is None and time.monotonic() - started < 240:
            if delay is not None:
                fired = time.monotonic() - started >= delay
            elif out.exists():
                fired = predicate(_changed(out, before))
            if fired:
                os.killpg(p.pid, signal.SIGKILL)
                break
            time.sleep(0.002)
        rc = p.wait(timeout=60)
        temps = assert_no_partial_file(out)
        outcomes.append((label, fired, rc, len(all_files(out)) if out.exists() else 0, len(temps)))
    print("kill points (label, killed, rc, files, temporary files):", *outcomes, sep="\n  ")
    assert sum(1 for o in outcomes if o[1]) >= 3, outcomes

    # Leftovers the cleanup must handle, whether or not a kill happened to catch a write:
    # a dead writer of this host (removed at once), a live writer (kept: it may still rename its
    # file), another host's old file (removed by age) and its fresh one (kept).
    host = storage._host_tag()
    preview_dir = next((out / "previews").iterdir(), None) if (out / "previews").exists() else None
    planted_dead = [_temp(out / "clips", host, _dead_pid()), _temp(out / "processed_videos" / "sub", host, _dead_pid())]
    if preview_dir is not None:
        planted_dead.append(_temp(preview_dir, host, _dead_pid()))
    planted_old = _temp(out / "metas" / "v0", "otherhost", 7, age_s=2 * storage.TEMP_MAX_AGE_S)
    planted_live = _temp(out / "ce1_embd", host, os.getpid())
    planted_foreign = _temp(out / "clips", "otherhost", 7)

    finish(start("final"), "final")
    left = assert_no_partial_file(out)
    assert sorted(left) == sorted([planted_live, planted_foreign]), left
    for path in left:
        path.unlink()
    assert not any(p.exists() for p in planted_dead + [planted_old])
    check_layout(out, videos, sorted(VIDEOS))
    result = {rel: (out / rel).read_bytes() for rel in all_files(out)}
    assert set(result) == set(reference)
    for rel in sorted(reference):
        if rel.endswith((".json", ".parquet", ".mp4", ".webp")):
            assert result[rel] == reference[rel], f"{rel} differs from the uninterrupted run"
