"""A full disk anywhere ends in one line naming what could not be written (issue 18): the storage
write and move paths, the writer (the video fails alone) and ``package shards`` (one line, a
non-zero status). Real small filesystems: a tmpfs mounted for the test (root only; skipped with
the reason where mounting is not permitted)."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from curation_assets.cli import main, run_pipeline
from curation_assets.core import storage, temp_files
from curation_assets.core.options import PipelineOptions
from curation_assets.packaging import shards

from .layout_checks import check_layout
from .run_records import failed_videos
from .video_factory import make_video

from .packaging_fixtures import packaging_inputs, packaging_models, written_layout  # noqa: F401 - fixtures


@contextlib.contextmanager
def small_disk(where: Path, size: str):
    """A tmpfs of ``size`` mounted at ``where`` for the test; skips when it cannot be mounted."""
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (the full-disk tests run as root in CI)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_a_write_or_move_onto_a_full_disk_is_one_line_naming_the_file(tmp_path):
    with small_disk(tmp_path / "small", "64k") as disk:
        target = str(disk / "clips" / "x.mp4")
        with pytest.raises(storage.NoSpaceError, match=r"^No space left on device: could not write '.*/small/clips/x\.mp4'$"):
            storage.write_bytes_atomic(target, os.urandom(200_000))
        src = tmp_path / "spilled.mp4"  # another filesystem: the move copies, as from a work area on another disk
        src.write_bytes(os.urandom(200_000))
        with pytest.raises(storage.NoSpaceError, match=r"^No space left on device: could not write '.*/small/clips/y\.mp4'$"):
            storage.move(str(src), str(disk / "clips" / "y.mp4"))
        assert src.exists()  # the source is kept: nothing was moved
        assert _files(disk) == []  # no temporary file left behind, nothing under a real name
        storage.write_bytes_atomic(str(disk / "small.json"), b"{}")  # what fits is written
        assert _files(disk) == ["small.json"]


@pytest.mark.slow
def test_the_writer_on_a_full_disk_fails_that_video_alone(tmp_path):
    videos = tmp_path / "in"
    videos.mkdir()
    make_video(videos / "a.mp4", seconds=2, fps=25, width=256, height=256)
    make_video(videos / "b.mp4", seconds=8, fps=25, width=640, height=480)
    with small_disk(tmp_path / "small", "160k") as disk:
        out = disk / "out"
        report = io.StringIO()
        options = PipelineOptions(input_path=str(videos), output_path=str(out), work_path=str(tmp_path / "work"),
                                  fixed_stride_split_duration=2.0, fixed_stride_min_clip_length_s=1.0,
                                  generate_embeddings="off", generate_previews=False)
        rc = run_pipeline(options, home=str(tmp_path / "home"), stream=report)
        text = report.getvalue()
        assert rc == 1, text
        failed = failed_videos(tmp_path / "home")
        assert set(failed) == {"b.mp4"}, (failed, text)  # a.mp4 is written whole (check_layout below)
        why = failed["b.mp4"]
        assert re.search(r"^write: NoSpaceError: No space left on device: could not write "
                         rf"'{re.escape(str(out))}/[a-z_/0-9]+/[^']+'", why), why
        assert str(tmp_path / "work") not in why  # the file in the output, not the work area's names
        check_layout(out, videos, ["a.mp4"])
        assert not [f for f in _files(out) if temp_files.is_temp_file_name(os.path.basename(f))]


def test_package_shards_on_a_full_disk_prints_one_line(written_layout, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(written_layout, out)
    with small_disk(tmp_path / "small", "64k") as disk:
        dest = disk / "shards"
        rc = main(["package", "shards", "--output-path", str(out), "--dest", str(dest), "--no-energon"])
        captured = capsys.readouterr()
        lines = [l for l in (captured.out + captured.err).splitlines() if l.strip()]
        assert rc == 1
        assert len(lines) == 1 and re.fullmatch(
            rf"error: No space left on device: could not write '{re.escape(str(dest))}/train/g\d{{4}}-\d{{5}}\.tar'",
            lines[0]), lines
        assert not any(temp_files.is_temp_file_name(os.path.basename(f)) for f in _files(dest))
        for name in _files(dest):  # what was published is whole
            assert name.endswith(".tar"), name
            with tarfile.open(dest / name) as tar:
                assert tar.getmembers()
        assert not (dest / shards.INDEX_FILE).exists()
