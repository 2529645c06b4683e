"""Preflight refuses the impossible before any video is decoded (issue 18): an output or work path
that is a file (or, on S3, an object where the prefix should be), a work area inside the layout's
folders, a video limit that is not a count, any numeric setting out of its bounds. Each refusal is
one line on the CLI, exit status 2, no traceback, nothing processed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from curation_assets import preflight
from curation_assets.cli import main
from curation_assets.core import storage
from curation_assets.core.options import PipelineOptions, base_type, setting_fields

from .video_factory import make_video

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def videos(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    make_video(folder / "a.mp4", seconds=2, fps=25, width=256, height=256)
    return folder


def _refused(tmp_path: Path, videos: Path, capsys, *flags: str, output: str | None = None) -> str:
    """Run the CLI with ``flags``: it exits 2 with one line on stderr and processes nothing."""
    out = output or str(tmp_path / "out")
    home = tmp_path / "home"
    rc = main(["run", "--video-dir", str(videos), "--output-path", out, "--dagster-home", str(home), *flags])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert rc == 2, captured
    assert len(lines) == 1 and lines[0].startswith("curation-assets: error: "), lines
    assert "Traceback" not in captured.err + captured.out
    assert not home.exists()  # refused before the instance was made: no run, no retry
    assert not (Path(out) / "processed_videos").exists() if storage.is_local(out) else True
    assert sorted(p.name for p in videos.iterdir()) == ["a.mp4"]
    return lines[0]


def test_an_output_path_that_is_a_file(tmp_path, videos, capsys):
    (tmp_path / "notes.txt").write_text("not a folder")
    line = _refused(tmp_path, videos, capsys, output=str(tmp_path / "notes.txt"))
    assert f"output_path='{tmp_path / 'notes.txt'}' is a file, not a folder" in line
    line = _refused(tmp_path, videos, capsys, output=str(tmp_path / "notes.txt" / "curated"))
    assert f"is under '{tmp_path / 'notes.txt'}', a file, not a folder" in line
    assert (tmp_path / "notes.txt").read_text() == "not a folder"


def test_a_work_path_that_is_a_file(tmp_path, videos, capsys):
    (tmp_path / "work").write_text("")
    line = _refused(tmp_path, videos, capsys, "--work-path", str(tmp_path / "work"))
    assert "work_path=" in line and "is a file, not a folder" in line


@pytest.mark.parametrize("inside", ["clips/x", "metas/v0", "processed_videos", "webdataset/default", "semdedup",
                                    "manifest"])
def test_a_work_path_inside_the_layouts_folders(tmp_path, videos, capsys, inside):
    out = tmp_path / "out"
    line = _refused(tmp_path, videos, capsys, "--work-path", str(out / inside))
    folder = inside.split("/")[0] if not inside.startswith("metas") else "metas/v0"
    assert f"is inside the output's {folder}/, which the writer and the packagers own" in line, line


def test_a_work_path_holding_the_output(tmp_path, videos, capsys):
    out = tmp_path / "outer" / "out"
    for work in (out, tmp_path / "outer"):
        line = _refused(tmp_path, videos, capsys, "--work-path", str(work), output=str(out))
        assert "holds output_path=" in line and "a folder of its own" in line


def test_work_paths_beside_the_layout_are_fine(tmp_path):
    out = str(tmp_path / "out")
    for work in ("", str(tmp_path / "out" / "_work"), str(tmp_path / "out" / "cache" / "work"), str(tmp_path / "w")):
        options = PipelineOptions(input_path=str(tmp_path / "in"), output_path=out, work_path=work)
        assert preflight.work_problems(options) == [], work
    options = PipelineOptions(input_path=str(tmp_path / "in"), output_path=out, work_path=str(tmp_path / "out" / "clipsx"))
    assert preflight.work_problems(options) == []  # a sibling named like a layout folder: compared by components


@pytest.mark.parametrize("limit", ["-1", "0", "-5"])
def test_a_video_limit_that_is_not_a_count(tmp_path, videos, capsys, limit):
    line = _refused(tmp_path, videos, capsys, "--video-limit", limit)
    assert f"--video-limit {limit}: a count of videos, at least 1 (leave it out to process every video)" in line


@pytest.mark.parametrize("flag, value, allowed", [
    ("--max-workers", "0", "1 to 256"),
    ("--max-workers", "257", "1 to 256"),
    ("--clip-re-chunk-size", "0", "1 to 1000000"),
    ("--limit-clips", "-1", "0 to 1000000"),
    ("--fixed-stride-split-duration", "0", "above 0, at most 86400"),
    ("--fixed-stride-split-duration", "1e6", "above 0, at most 86400"),
    ("--transcode-encoder-threads", "100000", "0 to 1024"),
    ("--preview-target-height", "1", "2 to 4320"),
    ("--transnetv2-threshold", "1.5", "above 0, at most 1"),
    ("--motion-global-mean-threshold", "-0.1", "0 to 1000"),
    ("--max-frame-pixels", "-1", "0 to 268435456"),
    ("--max-video-pixels", "100000000000000000", "0 to 10000000000000000"),
])
def test_a_setting_out_of_bounds_names_the_allowed_range(tmp_path, videos, capsys, flag, value, allowed):
    line = _refused(tmp_path, videos, capsys, flag, value)
    name = flag[2:].replace("-", "_")
    assert f"{name}=" in line and f"is out of bounds (allowed: {allowed})" in line, line


def test_every_numeric_setting_has_both_bounds():
    """A typo (an extra digit, a minus sign) is refused, not run: every int and float setting has a
    lower and an upper bound, but the aesthetic threshold (a model's score on its own scale: any
    finite number, the tests use +-1e9 to pass or filter every clip)."""
    for name, kind, _default, meta in setting_fields():
        scalar, _ = base_type(kind)
        if scalar not in (int, float) or name == "aesthetic_threshold":
            continue
        assert meta.ge is not None or meta.gt is not None, name
        assert meta.le is not None, name
    assert set(PipelineOptions.field_names()) >= {"max_frame_pixels", "max_video_pixels"}


def test_the_refusal_is_one_line_from_the_console_script(tmp_path, videos):
    """The installed entry point as a user runs it: one line on stderr, status 2, nothing else."""
    (tmp_path / "notes.txt").write_text("x")
    done = subprocess.run([sys.executable, "-m", "curation_assets.cli", "run", "--video-dir", str(videos),
                           "--output-path", str(tmp_path / "notes.txt"), "--dagster-home", str(tmp_path / "home")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 2, done
    assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1, done
    assert "is a file, not a folder" in done.stderr


def test_an_s3_output_that_is_an_object(tmp_path, videos, capsys, s3_bucket):
    storage.write_bytes_atomic(f"{s3_bucket}/curated", b"an object, not a prefix")
    line = _refused(tmp_path, videos, capsys, output=f"{s3_bucket}/curated")
    assert f"output_path='{s3_bucket}/curated' is an object (23 bytes), not a prefix" in line
    options = PipelineOptions(input_path=str(videos), output_path=f"{s3_bucket}/curated/more")
    assert preflight.problems(options) == []  # a prefix under it: no HEAD finds an object of that name
