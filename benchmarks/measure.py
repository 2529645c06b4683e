"""What every benchmark script measures and records the same way: CPU seconds, peak RSS, the
commit measured, and one JSON line per run appended to the results file."""

from __future__ import annotations

import json
import resource
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_RESULTS = HERE / "results.jsonl"


def cpu_self() -> float:
    """CPU seconds (user + system) of this process, all its threads."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cpu_children() -> float:
    """CPU seconds of this process's finished child processes (e.g. the ffmpeg CLI)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (ru_maxrss is kB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def git_commit() -> str | None:
    """The short commit measured, ``+dirty`` when tracked files differ from it; None outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=HERE,
                               capture_output=True, text=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def append_record(path: str | Path, record: dict) -> None:
    """Append ``record`` as one JSON line to ``path`` and say so."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
    print(f"appended one JSON line to {path}")
