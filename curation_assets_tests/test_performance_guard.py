"""The performance regression guard: the quick race of ``benchmarks/reference_race.py`` (12 s of real
720p footage through the whole CLI and through single-pass ffmpeg, one after the other) and each part
of our run's CPU time as a ratio to ffmpeg's, against the ratios recorded in
``benchmarks/part_ratios.json`` (``reference_race.py --quick --record``). CPU seconds, not wall
seconds: a loaded machine slows both sides' wall clock, not the work each does. The margin is
``reference_race.GUARD_MARGIN`` (30%) plus ``GUARD_SLACK`` (1% of ffmpeg's CPU).

The same race runs ``benchmarks/core_path.py`` (the same work without Dagster) into the same output
path: its files must be the CLI's, byte for byte, or the Dagster layer changed what is written (and
the race's floor under the CLI would be measuring other work)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs Debian's ffmpeg, the bound the ratios are against")
def test_no_part_of_the_cli_run_grew_in_cpu_against_ffmpeg(tmp_path):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import reference_race
    finally:
        sys.path.remove(str(BENCHMARKS))
    recorded = json.loads(reference_race.RATIOS_FILE.read_text())["quick"]
    summary = reference_race.race(rounds=1, quick=True, nemo_python=None, work=tmp_path, log=lambda _: None,
                                  core=True)
    assert summary["ours"]["clips"] == 2, summary["ours"]
    assert summary["core"]["files"] >= 8 and summary["core"]["same_bytes_as_cli"], summary["core"]
    found = reference_race.regressions(summary, recorded)
    measured = {p: round(v["cpu_ratio"], 3) for p, v in summary["parts"].items()}
    assert not found, f"parts grew in CPU against ffmpeg: {found}; measured {measured}, recorded {recorded}"
