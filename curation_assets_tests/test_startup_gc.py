"""The console script pauses the garbage collector through its start-up and freezes what the
start-up left once the instance is open (``cli.startup_gc``): no full collection walks Dagster's
modules while they load, the collector runs again for the runs, and nothing else is frozen: the
other commands get it back before their work, and a Python caller's process keeps it as it was."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import textwrap
from pathlib import Path

from curation_assets.cli import startup_gc

from .video_factory import make_video

# the console script, with its resume and its exit reporting the collector's state
SCRIPT = textwrap.dedent("""
    import gc, json, sys
    import curation_assets.cli as cli
    from curation_assets.cli import startup_gc

    seen = {"full_before": gc.get_stats()[2]["collections"]}
    resume = startup_gc.resume

    def watched_resume():
        if "at_resume" not in seen:
            seen["at_resume"] = {"enabled": gc.isenabled(), "full": gc.get_stats()[2]["collections"]}
        resume()

    startup_gc.resume = watched_resume

    from curation_assets import curate
    write_one = curate.write_one

    def watched_write_one(*args, **kwargs):  # the clip_writer step, inside the Dagster run
        seen["enabled_in_run"] = gc.isenabled()
        return write_one(*args, **kwargs)

    curate.write_one = watched_write_one

    def report(status):
        seen.update(status=status, enabled=gc.isenabled(), frozen=gc.get_freeze_count())
        print("GC " + json.dumps(seen))
        sys.stdout.flush()
        raise SystemExit(0)

    cli.leave = report
    sys.argv = ["curation-assets", *sys.argv[1:]]
    cli.console_main()
""")


def _console(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("GC ")]
    assert lines, proc.stdout + proc.stderr
    return json.loads(lines[-1][3:])


def test_a_cli_run_loads_dagster_without_full_collections_then_collects_again(tmp_path: Path) -> None:
    videos = tmp_path / "in"
    videos.mkdir()
    make_video(videos / "v.mp4", seconds=2, fps=25, width=160, height=96)
    seen = _console(["run", "--video-dir", str(videos), "--output-path", str(tmp_path / "out"),
                     "--dagster-home", str(tmp_path / "home"), "--no-generate-embeddings",
                     "--fixed-stride-split-duration", "1",
                     "--fixed-stride-min-clip-length-s", "0.5"])
    assert seen["status"] == 0
    assert seen["at_resume"]["enabled"] is False  # paused through the imports, definitions and instance
    assert seen["at_resume"]["full"] == seen["full_before"]  # so no full pass walked them
    assert seen["enabled_in_run"] is True  # the runs had the collector back
    assert seen["frozen"] > 50_000  # Dagster's modules, out of every later pass


def test_the_other_commands_have_the_collector_for_their_work(tmp_path: Path) -> None:
    seen = _console(["diff", str(tmp_path / "a"), str(tmp_path / "b")])
    assert seen["enabled"] is True


def test_a_python_callers_collector_is_not_the_clis_to_freeze() -> None:
    frozen = gc.get_freeze_count()
    startup_gc.resume()  # the runner's call, in a process whose console script did not pause
    assert gc.isenabled() and gc.get_freeze_count() == frozen
    gc.disable()  # a caller that turned it off itself keeps it off
    try:
        startup_gc.pause()
        startup_gc.resume()
        assert not gc.isenabled() and gc.get_freeze_count() == frozen
    finally:
        gc.enable()

