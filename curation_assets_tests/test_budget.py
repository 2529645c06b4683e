"""The resource budget per video (issue 18): a pixel bomb (a small file of huge frames) fails alone,
from its header, before a frame is decoded; the videos beside it are written; a batch's memory is
one video's at a time."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import av
import pytest

from curation_assets.core import budget
from curation_assets.core.model import VideoMetadata
from curation_assets.core.options import DEFAULT_MAX_FRAME_PIXELS, PipelineOptions
from curation_assets.models.video import process_video
from curation_assets.models.video import clips_of_video
from curation_assets.core.work import WorkArea

from .layout_checks import check_layout
from .pixel_bomb import make_pixel_bomb
from .video_factory import make_video

REPO = Path(__file__).resolve().parent.parent
GB = 2**30


def _meta(width: int, height: int, frames: int) -> VideoMetadata:
    return VideoMetadata(height=height, width=width, framerate=25.0, num_frames=frames, duration=frames / 25,
                         video_codec="h264", pixel_format="yuv420p", audio_format=None)


def test_the_budget_rule():
    options = PipelineOptions()
    assert DEFAULT_MAX_FRAME_PIXELS == 7680 * 4320
    assert budget.over_budget(_meta(7680, 4320, 25), options) is None  # 8K passes
    assert budget.over_budget(_meta(3840, 2160, 30 * 3600 * 10), options) is None  # 10 hours of 4K at 30 fps
    over = budget.over_budget(_meta(7681, 4320, 25), options)
    assert over and "7681x4320" in over and "max_frame_pixels=33177600" in over
    over = budget.over_budget(_meta(3840, 2160, 30 * 3600 * 40), options)  # 40 hours of 4K
    assert over and "max_video_pixels=25000000000000" in over and "4320000 frames of 3840x2160" in over
    # exactly at a bound passes; 0 turns a bound off
    tight = options.replace(max_frame_pixels=64 * 48, max_video_pixels=64 * 48 * 10)
    assert budget.over_budget(_meta(64, 48, 10), tight) is None
    assert budget.over_budget(_meta(64, 49, 10), tight) and budget.over_budget(_meta(64, 48, 11), tight)
    assert budget.over_budget(_meta(16000, 16000, 10**9), options.replace(max_frame_pixels=0,
                                                                          max_video_pixels=0)) is None


@pytest.mark.parametrize("values, allowed", [
    (dict(max_frame_pixels=-1), "0 to 268435456"),
    (dict(max_frame_pixels=2**28 + 1), "0 to 268435456"),
    (dict(max_video_pixels=10**16 + 1), "0 to 10000000000000000"),
])
def test_budget_settings_are_bounded(values, allowed):
    with pytest.raises(ValueError, match=f"is out of bounds \\(allowed: {allowed}\\)"):
        PipelineOptions(**values)


def test_pixel_counts_may_be_written_as_floats():
    from curation_assets.core.options import env_values

    assert env_values({"CURATION_MAX_VIDEO_PIXELS": "25e12", "CURATION_MAX_FRAME_PIXELS": "3840"}) == {
        "max_video_pixels": 25 * 10**12, "max_frame_pixels": 3840}
    for bad in ("2.5", "1e400", "nan", "lots"):
        with pytest.raises(ValueError, match="not a whole number"):
            env_values({"CURATION_MAX_FRAME_PIXELS": bad})


def test_the_pixel_bomb_is_real(tmp_path):
    """The fixture decodes: a smaller bomb's frames come out whole and grey; the big one's header says
    16000x16000 in a file of a few MB."""
    small = make_pixel_bomb(tmp_path / "small.mkv", side=2048, frames=2)
    with av.open(str(small)) as container:
        frames = [f.to_ndarray(format="gray") for f in container.decode(video=0)]
    assert [f.shape for f in frames] == [(2048, 2048)] * 2 and all((f == 128).all() for f in frames)
    big = make_pixel_bomb(tmp_path / "bomb.mkv")
    assert big.stat().st_size < 16 * 2**20
    with av.open(str(big)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height, stream.frames or 3) == (16000, 16000, 3)


def _budget_error_in_child(bomb: Path, work: Path, splitting: str) -> dict:
    """``process_video`` of the bomb in a fresh process: its result, wall time and peak resident memory."""
    code = textwrap.dedent(f"""
        import json, resource, sys, time
        started = time.perf_counter()
        from curation_assets.core import storage
        from curation_assets.core.options import PipelineOptions
        from curation_assets.models.video import process_video
        from curation_assets.core.work import VideoSpill, WorkArea
        url = {str(bomb)!r}
        options = PipelineOptions(input_path={str(bomb.parent)!r}, output_path={str(work / 'out')!r},
                                  work_path={str(work)!r}, splitting_algorithm={splitting!r},
                                  generate_embeddings="off")
        spill = VideoSpill(WorkArea.for_options(options), url, options.output_path)
        result = process_video(url, "bomb.mkv", lambda: storage.open_input(url), options, spill=spill)
        print(json.dumps({{"errors": result.errors, "clips": len(result.clips),
                          "seconds": time.perf_counter() - started,
                          "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}}))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("splitting", ["fixed_stride", "transnetv2"])
def test_a_pixel_bomb_is_refused_from_its_header_quickly_and_small(tmp_path, splitting):
    (tmp_path / "in").mkdir()
    bomb = make_pixel_bomb(tmp_path / "in" / "bomb.mkv")
    got = _budget_error_in_child(bomb, tmp_path / "work", splitting)
    assert list(got["errors"]) == ["budget"], got
    assert "frames of 16000x16000 (256 Mpx) are over max_frame_pixels=33177600" in got["errors"]["budget"], got
    assert got["clips"] == 0
    assert got["seconds"] < 10, got  # the process's whole life, imports included
    assert got["maxrss"] < GB, got  # decoding one frame alone would take 384 MB, the transcode several GB
    assert not [p for p in (tmp_path / "work").rglob("*") if p.is_file() and p.suffix in (".mp4", ".webp")]


def test_raising_the_budget_processes_the_video_again(tmp_path):
    """The budget shapes the clips step's value: a video refused under a small budget is processed,
    not answered from the work area, once the budget allows it."""
    videos = tmp_path / "in"
    videos.mkdir()
    make_video(videos / "a.mp4", seconds=2, fps=25, width=256, height=256)
    options = PipelineOptions(input_path=str(videos), output_path=str(tmp_path / "out"), generate_embeddings="off",
                              generate_previews=False, fixed_stride_split_duration=2.0)
    area = WorkArea.for_options(options)
    url = str(videos / "a.mp4")
    refused, _ = clips_of_video(url, "a.mp4", options.replace(max_frame_pixels=256 * 255), area)
    assert "256x256" in refused.errors["budget"] and not refused.clips
    result, reused = clips_of_video(url, "a.mp4", options, area)
    assert not reused and not result.errors and len(result.clips) == 1


@pytest.mark.slow
def test_a_batch_holds_one_videos_memory(tmp_path):
    """Videos one after the other in one process: resident memory after each video comes back to
    the first one's (its frames were released), however many came before."""
    videos = tmp_path / "in"
    videos.mkdir()
    make_video(videos / "a.mp4", seconds=4, fps=25, width=1280, height=720, audio=False)
    code = textwrap.dedent(f"""
        import json
        from curation_assets.core import storage
        from curation_assets.core.options import PipelineOptions
        from curation_assets.models.video import process_video
        from curation_assets.core.work import VideoSpill, WorkArea
        def rss():
            with open("/proc/self/status") as f:
                return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS"))
        url = {str(videos / 'a.mp4')!r}
        options = PipelineOptions(input_path={str(videos)!r}, output_path={str(tmp_path / 'out')!r},
                                  generate_embeddings="off", transcode_preset="ultrafast")
        area = WorkArea.for_options(options)
        after = []
        for i in range(5):
            spill = VideoSpill(area, url, options.output_path)
            result = process_video(url, "a.mp4", lambda: storage.open_input(url), options, spill=spill)
            assert not result.errors, result.errors
            after.append(rss())
        print(json.dumps(after))
    """)
    if not Path("/proc/self/status").exists():
        pytest.skip("reads resident memory from /proc (Linux)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    after = json.loads(done.stdout.strip().splitlines()[-1])
    # one 720p frame is 1.4 MB in yuv420p, 2.8 MB in rgb: holding each video's frames would add many
    # per video; what is allowed is the noise of a heap
    assert max(after[1:]) - after[0] < 48 * 2**20, [a // 2**20 for a in after]


@pytest.mark.slow
def test_a_pixel_bomb_beside_good_videos_in_one_cli_run_under_a_memory_limit(tmp_path):
    """The issue's case: a bomb and two good videos in one CLI run (one Dagster run, one batch) of a
    process limited to 4 GB of address space on two cores. The good videos are written, the bomb fails
    with its reason, the run's peak resident memory stays under 1 GB."""
    videos = tmp_path / "in"
    videos.mkdir()
    make_video(videos / "a.mp4", seconds=4, fps=25, width=320, height=256)
    make_pixel_bomb(videos / "bomb.mkv")
    make_video(videos / "c.mp4", seconds=4, fps=25, width=320, height=256)
    out = tmp_path / "out"

    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (4 * GB, 4 * GB))
        cpus = sorted(os.sched_getaffinity(0))[:2]
        os.sched_setaffinity(0, cpus)

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "MALLOC_ARENA_MAX": "2"}  # the address-space limit counts every thread's reserved heap
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "curation_assets.cli", "run", "--video-dir", str(videos),
                             "--output-path", str(out), "--dagster-home", str(tmp_path / "home"),
                             "--no-generate-embeddings"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=env, cwd=tmp_path, preexec_fn=limits)
    text = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    assert proc.returncode == 1, text
    assert usage.ru_maxrss * 1024 < GB, (usage.ru_maxrss, text)
    assert wall < 300, wall
    doc = json.loads((out / "processed_videos" / "bomb.mkv.json").read_text())
    assert doc["errors"] == ["budget"] and doc["num_total_clips"] == 0
    assert "16000x16000" in doc["error_details"]["budget"], doc
    for good in ("a.mp4", "c.mp4"):
        assert json.loads((out / "processed_videos" / f"{good}.json").read_text()).get("errors", []) == [], text
    assert len(list(out.glob("clips/*.mp4"))) == 2  # one clip of each good video
    check_layout(out, videos, ["a.mp4", "bomb.mkv", "c.mp4"])
