"""The whole CLI at an earlier commit against this checkout, alternating on the same footage: what one
change bought, with the baseline measured in the same process.

Prints figures; not a test. ``--before REV`` is checked out into a temporary git worktree; each
round runs the CLI from there and from this checkout (their order alternating), into the same
output path, with the race's settings (``reference_race.CLI_ARGS``: fixed stride 10 s, motion
scores, previews, no embeddings). Each run's wall and CPU seconds (user + system, the process and
its children); the sha256 of every file outside ``_work/`` must be the same for both (a change that
makes other bytes says so and exits 1).

    python benchmarks/cli_ab.py --before 4bacf41 --rounds 5              # 4 s of 320x240 test pattern:
                                                                         # the CLI's fixed cost
    python benchmarks/cli_ab.py --before 4bacf41 --rounds 4 --footage 12  # the race's quick footage
    python benchmarks/cli_ab.py --before 4bacf41 --video my.mp4
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import footage  # noqa: E402
from measure import DEFAULT_RESULTS, append_record, git_commit  # noqa: E402
from reference_race import CLI_ARGS, _child, _our_env, installed_bytecode, output_digest, own_footage  # noqa: E402


def tiny_video(work: Path) -> Path:
    """4 s of ffmpeg's 320x240 test pattern: a run whose work is next to nothing, so what the two
    commits differ by in the CLI's fixed cost (imports, Dagster's instance and run) shows."""
    folder = work / "tiny"
    folder.mkdir()
    video = folder / "pattern.mp4"
    subprocess.run([footage.ffmpeg_path(), "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc=size=320x240:rate=25", "-t", "4", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(video)],
                   check=True)
    return video


def run_cli(checkout: Path, video: Path, work: Path) -> dict[str, Any]:
    """One CLI run from ``checkout`` (its package first on the path; run from ``work`` so the current
    folder does not shadow it)."""
    out, home = work / "out", work / "home"
    for path in (out, home):
        shutil.rmtree(path, ignore_errors=True)
    cmd = [sys.executable, "-m", "curation_assets.cli", "run", "--video-dir", str(video.parent),
           "--output-path", str(out), "--dagster-home", str(home), *CLI_ARGS]
    wall, cpu, _ = _child(cmd, env=_our_env(checkout), cwd=work)
    return {"wall_s": wall, "cpu_s": cpu, "digest": output_digest(out)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the commit to compare this checkout with")
    parser.add_argument("--rounds", type=int, default=5)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--footage", type=float, help="seconds of the race's three-shot 720p footage (12 or 58)")
    source.add_argument("--video", type=Path, help="your own video")
    parser.add_argument("--results", default=str(DEFAULT_RESULTS))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cli_ab_") as tmp:
        work = Path(tmp)
        before = work / "before"
        added = subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(before), args.before],
                               capture_output=True, text=True)
        if added.returncode != 0:
            raise SystemExit(f"--before {args.before}: no worktree of it: {added.stderr.strip()}")
        try:
            for checkout in (before, ROOT):
                installed_bytecode(checkout)
            if args.video is not None:
                video, _ = own_footage(args.video, work)
            elif args.footage is not None:
                video = footage.build_three_shot(args.footage)
            else:
                video = tiny_video(work)
            runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
            for r in range(args.rounds):
                order = ["before", "after"] if r % 2 == 0 else ["after", "before"]
                for who in order:
                    runs[who].append(run_cli(before if who == "before" else ROOT, video, work))
                    last = runs[who][-1]
                    print(f"round {r + 1} {who}: wall {last['wall_s']:.2f} s, CPU {last['cpu_s']:.2f} s")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)], check=False)
    same = all(run["digest"] == runs["before"][0]["digest"] for who in runs for run in runs[who])
    summary = {who: {k: round(statistics.median(r[k] for r in runs[who]), 3) for k in ("wall_s", "cpu_s")}
               for who in runs}
    print(f"\n{video.name}, {args.rounds} rounds, medians: before {args.before} / after {git_commit()}")
    print("| | wall s | CPU s |\n|---|---|---|")
    for who in runs:
        print(f"| {who} | {summary[who]['wall_s']:.2f} | {summary[who]['cpu_s']:.2f} |")
    print(f"| after - before | {summary['after']['wall_s'] - summary['before']['wall_s']:+.2f} | "
          f"{summary['after']['cpu_s'] - summary['before']['cpu_s']:+.2f} |")
    print(f"same bytes: {same} ({len(runs['before'][0]['digest'])} files)")
    append_record(args.results, {"benchmark": "cli_ab", "before": args.before, "commit": git_commit(),
                                 "video": video.name, "rounds": args.rounds, "same_bytes": same, **summary})
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
