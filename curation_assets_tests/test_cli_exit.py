"""The CLI's process ends without the interpreter's teardown (``cli.leave``), but still does what a
normal exit does that matters: non-daemon threads finish, ``atexit`` functions run, buffered output
reaches a pipe, and the status is the one given."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent("""
    import atexit, sys, threading, time
    from pathlib import Path
    from curation_assets.cli import leave

    folder = Path(sys.argv[1])
    atexit.register(lambda: (folder / "atexit").write_text("ran"))

    def late():
        time.sleep(0.3)
        (folder / "thread").write_text("finished")

    threading.Thread(target=late).start()
    print("x" * 1000)  # block-buffered: stdout is a pipe
    print("summary line")
    leave(3)
""")


def test_leave_joins_threads_runs_atexit_and_flushes(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # a user's shell: stdout buffered
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=60,
                          env=env)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.splitlines() == ["x" * 1000, "summary line"]
    assert (tmp_path / "thread").read_text() == "finished"
    assert (tmp_path / "atexit").read_text() == "ran"


def test_the_console_script_ends_through_leave() -> None:
    """``python -m curation_assets.cli`` and the ``curation-assets`` entry point both go through
    ``console_main``: a usage error still exits with 2 and says why."""
    proc = subprocess.run([sys.executable, "-m", "curation_assets.cli", "run", "--video-dir", "/nonexistent-videos",
                           "--output-path", "/tmp/unused-out", "--video-limit", "0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "--video-limit 0" in proc.stderr
    import tomllib

    scripts = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["curation-assets"] == "curation_assets.cli:console_main"
