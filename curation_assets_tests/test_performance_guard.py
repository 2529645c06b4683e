"""The performance regression guard: the quick race of ``benchmarks/reference_race.py`` (12 s of real
720p footage through the whole CLI and through single-pass ffmpeg, one after the other) and each part
of our run's CPU time as a ratio to ffmpeg's (at our clips' x264 functions: on a CPU with AVX-512,
which our clips are encoded without, ffmpeg is run a second time with the same functions), against
the ratios recorded in
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
                                  core=True, same_functions=True)
    assert summary["ours"]["clips"] == 2, summary["ours"]
    assert summary["core"]["files"] >= 8 and summary["core"]["same_bytes_as_cli"], summary["core"]
    found = reference_race.regressions(summary, recorded)
    measured = {p: round(v["guard_ratio"], 3) for p, v in summary["parts"].items()}
    assert not found, f"parts grew in CPU against ffmpeg: {found}; measured {measured}, recorded {recorded}"


def test_the_guard_compares_like_with_like():
    """A part fails past ``recorded * (1 + GUARD_MARGIN) + GUARD_SLACK`` of the guard's baseline, and
    ratios recorded against another baseline (plain ffmpeg, before the guard divided by ffmpeg at
    our clips' x264 functions) are refused rather than compared."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import reference_race
    finally:
        sys.path.remove(str(BENCHMARKS))
    recorded = {"baseline": reference_race.GUARD_BASELINE, "cpu_ratios": {"encode": 0.9, "checks": 0.0}}
    limit = 0.9 * (1 + reference_race.GUARD_MARGIN) + reference_race.GUARD_SLACK

    def summary(encode: float, checks: float = 0.0) -> dict:
        return {"parts": {"encode": {"guard_ratio": encode, "cpu_ratio": 0.0},
                          "checks": {"guard_ratio": checks, "cpu_ratio": 0.0}}}

    assert reference_race.regressions(summary(limit - 0.001, reference_race.GUARD_SLACK), recorded) == []
    found = reference_race.regressions(summary(limit + 0.001), recorded)
    assert len(found) == 1 and found[0].startswith("encode:"), found
    near_zero = reference_race.regressions(summary(0.5, reference_race.GUARD_SLACK + 0.001), recorded)
    assert len(near_zero) == 1 and near_zero[0].startswith("checks:"), near_zero
    old = reference_race.regressions(summary(0.5), {"cpu_ratios": recorded["cpu_ratios"]})
    assert len(old) == 1 and "record them again" in old[0], old
