"""Runs killed with SIGKILL leave no partial file under a real name, the next run completes them
(removing a killed writer's temporary files, found by name), and that run gives the same output
as an uninterrupted one; a batch killed after some videos were transcoded resumes with the others.

The slow test drives ``python -m curation_assets.cli run`` as a subprocess that kills itself with
SIGKILL at an exact point, put there by a ``sitecustomize`` module the test writes (during start-up,
after the first clip is encoded, while a temporary file of the layout is written but not renamed,
after the first video document, after the first parquet file, before the third video's transcode),
each time on the output the previous killed run left. Every point must fire. The fast tests pin
down the rules for writer-unique temporary files (``storage.cleanup_temp_files``: dead writers'
files go at once, live writers' files stay).
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

from curation_assets.core import storage, temp_files

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
    path = folder / f"{temp_files.TEMP_PREFIX}{host}_{pid}_{uuid.uuid4().hex}{temp_files.TEMP_SUFFIX}"
    path.write_bytes(b"half a file")
    if age_s:
        past = time.time() - age_s
        os.utime(path, (past, past))
    return path


# ---------------------------------------------------------------------------------------------
# The cleanup rules (fast)


def test_temp_names_carry_their_writer():
    name = temp_files.temp_file_name()
    assert temp_files.is_temp_file_name(name) and f"_{os.getpid()}_" in name
    assert not temp_files.temp_file_owner_is_dead(name)  # this process is alive
    host = temp_files._host_tag()
    assert temp_files.temp_file_owner_is_dead(f".tmp-{host}_{_dead_pid()}_{uuid.uuid4().hex}.partial")
    assert not temp_files.temp_file_owner_is_dead(f".tmp-otherhost_{_dead_pid()}_{uuid.uuid4().hex}.partial")
    assert not temp_files.temp_file_owner_is_dead(f".tmp-{uuid.uuid4().hex}.partial")  # unknown owner


def test_cleanup_removes_dead_writers_files_at_once_and_keeps_live_ones(tmp_path):
    host = temp_files._host_tag()
    dead = _temp(tmp_path, host, _dead_pid())
    live = _temp(tmp_path, host, os.getpid())
    foreign_new = _temp(tmp_path, "otherhost", 42)
    foreign_old = _temp(tmp_path, "otherhost", 42, age_s=2 * temp_files.TEMP_MAX_AGE_S)
    legacy_old = tmp_path / ".tmp-0123abcd.partial"
    legacy_old.write_bytes(b"x")
    past = time.time() - 2 * temp_files.TEMP_MAX_AGE_S
    os.utime(legacy_old, (past, past))
    nested = _temp(tmp_path / "deeper", host, _dead_pid())
    removed = storage.cleanup_temp_files(str(tmp_path), min_age_s=temp_files.TEMP_MAX_AGE_S, recursive=False)
    assert removed == 3
    assert not dead.exists() and not foreign_old.exists() and not legacy_old.exists()
    assert live.exists() and foreign_new.exists() and nested.exists()  # not recursive
    assert storage.cleanup_temp_files(str(tmp_path), min_age_s=temp_files.TEMP_MAX_AGE_S) == 1  # recursive
    assert not nested.exists()
    assert storage.cleanup_temp_files(str(tmp_path / "missing"), recursive=False) == 0


def test_a_concurrent_writers_temp_file_survives_another_runs_cleanup(tmp_path, monkeypatch):
    """Run A is between writing its temporary file and renaming it when run B's clip_writer sweeps
    the folder: A's file is kept (A is alive) and A's rename succeeds on the first try."""
    real_replace = os.replace
    swept = []

    def replace_after_sweep(src, dst):
        if not swept:
            swept.append(storage.cleanup_temp_files(str(tmp_path), min_age_s=temp_files.TEMP_MAX_AGE_S,
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
        if rel.startswith("metas/v0/") and not temp_files.is_temp_file_name(rel):
            metas[rel.split("/")[-1][:-5]] = json.loads((out / rel).read_text())
    for rel in sorted(files):
        path = out / rel
        if temp_files.is_temp_file_name(rel):
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



# The kill points, put into the CLI subprocess by a sitecustomize module (CURATION_TEST_KILL_AT).
SITECUSTOMIZE = """
import os, signal

def _die():
    os.kill(os.getpid(), signal.SIGKILL)

point = os.environ.get("CURATION_TEST_KILL_AT", "")
counts = {}

def _nth(name, n):
    counts[name] = counts.get(name, 0) + 1
    return counts[name] == n

if point:
    from curation_assets.core import steps, storage, work, writer

    real_clips, real_spill, real_atomic, real_put = (steps.clips_of_video, work.VideoSpill.clip,
                                                     storage._write_local_atomic, writer._put)

    def clips_of_video(*a, **k):
        if point == "start" or (point == "third video" and _nth("video", 3)):
            _die()
        result = real_clips(*a, **k)
        if point == "count":
            with open(os.environ["CURATION_TEST_COUNT"], "a") as f:
                f.write(f"{a[1]} {'reused' if result[1] else 'transcoded'}\\n")
        return result

    def spill_clip(self, *a, **k):
        out = real_spill(self, *a, **k)
        if point == "first clip":
            _die()
        return out

    def write_local_atomic(path, data, temp_name):
        if point == "temporary file" and temp_name and "/metas/v0/" in path:
            tmp = os.path.join(os.path.dirname(path), temp_name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(bytes(data)[: len(data) // 2])
            _die()
        return real_atomic(path, data, temp_name)

    def put(output_path, rel, data, *checks):
        size = real_put(output_path, rel, data, *checks)
        if (point == "first video document" and rel.startswith("processed_videos/")) or \\
                (point == "first parquet" and rel.endswith(".parquet")):
            _die()
        return size

    steps.clips_of_video, work.VideoSpill.clip = clips_of_video, spill_clip
    storage._write_local_atomic, writer._put = write_local_atomic, put
"""

KILL_POINTS = ["start", "first clip", "temporary file", "first video document", "first parquet", "third video"]


@pytest.mark.slow
def test_sigkill_at_each_point_then_rerun_equals_uninterrupted_run(tmp_path):
    videos = tmp_path / "in"
    for rel, kw in VIDEOS.items():
        (videos / rel).parent.mkdir(parents=True, exist_ok=True)
        make_video(videos / rel, fps=25, **kw)
    models = tmp_path / "models"
    build_cosmos_standin(models, "224p")
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
    out = tmp_path / "out"
    home = tmp_path / "home"
    cmd = [sys.executable, "-m", "curation_assets.cli", "run", "--video-dir", str(videos), "--output-path", str(out),
           "--fixed-stride-split-duration", "2", "--generate-previews", "--generate-embeddings",
           "--model-dir", str(models), "--dagster-home", str(home)]
    pythonpath = os.pathsep.join([str(hooks), str(Path(__file__).resolve().parent.parent),
                                  os.environ.get("PYTHONPATH", "")])
    logs = tmp_path / "logs"
    logs.mkdir()
    counts = tmp_path / "counts.txt"

    def run(name: str, point: str = "") -> int:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": pythonpath, "CURATION_TEST_KILL_AT": point,
               "CURATION_TEST_COUNT": str(counts)}
        p = subprocess.run(cmd, cwd=tmp_path, env=env, stdout=open(logs / f"{name}.out", "wb"),
                           stderr=open(logs / f"{name}.err", "wb"), timeout=600)
        return p.returncode

    def log(name: str) -> str:
        return (logs / f"{name}.out").read_text() + (logs / f"{name}.err").read_text()

    # The uninterrupted run, to compare with; then the same output folder from scratch.
    assert run("reference") == 0, log("reference")
    check_layout(out, videos, sorted(VIDEOS))
    reference = {rel: (out / rel).read_bytes() for rel in all_files(out)}
    shutil.rmtree(out)

    outcomes = []
    for point in KILL_POINTS:
        if point == "third video":  # a fresh output: the batch resumes at video granularity
            shutil.rmtree(out)
        rc = run(point, point)
        assert rc == -signal.SIGKILL, (point, rc, log(point))  # every point fires
        temps = assert_no_partial_file(out)
        outcomes.append((point, len(all_files(out)) if out.exists() else 0, len(temps)))
        if point == "temporary file":
            assert temps, "the kill left a temporary file under its derived name"
    print("kill points (point, files, temporary files):", *outcomes, sep="\n  ")

    assert run("final", "count") == 0, log("final")
    # killed before z.mp4's transcode: the other two were kept and only z.mp4 is transcoded again
    assert sorted(counts.read_text().split("\n")[:-1]) == ["a.mp4 reused", "sub/b c.mp4 reused", "z.mp4 transcoded"]
    assert not assert_no_partial_file(out)
    check_layout(out, videos, sorted(VIDEOS))
    result = {rel: (out / rel).read_bytes() for rel in all_files(out)}
    assert set(result) == set(reference)
    for rel in sorted(reference):
        if rel.endswith((".json", ".parquet", ".mp4", ".webp")):
            assert result[rel] == reference[rel], f"{rel} differs from the uninterrupted run"
