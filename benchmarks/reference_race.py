"""The whole CLI against single-pass ffmpeg and NeMo Curator 1.4.0's CPU path, interleaved in one
run on the same file, with our run split into parts; the parts' CPU ratios are the regression guard.

Prints figures; not a test. Footage: ``footage.build_three_shot`` (58 s of 1280x720 25 fps real
footage, three shots, AAC audio; ``--quick``: 12 s of the same). Each round runs, in an order that
rotates from round to round so each sees the same machine:

``ffmpeg``  ``ffmpeg -i src -c:v libx264 -preset medium -crf 23 -c:a copy out.mp4``: one decode, one
            encode, x264's own thread count (Debian's ffmpeg);
``ffmpeg, our x264 functions``  (on a CPU where our clips' libx264 is given other CPU flags than its
            own choice: AVX-512 masked, ``core.x264_cpu``) the same command with
            ``-x264-params asm=<our clips' flags>``: ffmpeg at the instruction set our clips are
            encoded with, so the table tells that choice's cost from the pipeline's own. Not the
            issue's baseline (plain ffmpeg stays the one every ratio divides by); skipped where the
            flags are x264's own;
``nemo``    ``nemo_reference_path.py`` under ``--nemo-python`` (a separate environment with
            ``nemo-curator==1.4.0`` from PyPI, its video extras and opencv-python-headless):
            NeMo's stages for probe, fixed stride, libx264 transcode, motion vectors + filter,
            writer (no previews: its default CPU settings). Skipped, and said so, without it;
``ours``    ``curation-assets run`` (fixed stride 10 s, motion ``score-only``, previews, no
            embeddings) through ``instrumented_cli.py``, which times the pipeline's own functions;
``core``    (``--core``) ``core_path.py``: the same work without Dagster (its steps, the writer, the
            layout checks), into the same output path: its files' sha256 must equal the CLI's.
            The difference to ``ours`` is what Dagster's run costs around the work.

Our parts, in CPU seconds: ``probe``; ``decode`` (the source decoded alone with the transcode's
decoder settings, measured here in the same round); ``encode`` (the ``video_clips`` step less
decode, previews, motion, tap and probe: the clip encoders, muxing and the clip probes);
``motion vectors``; ``previews``; ``model-frame tap``; ``writing``; ``checks`` (the layout checks);
``start-up`` (interpreter, imports, Dagster's instance, runs and event log, the summary: the
CLI's CPU outside the steps above). Each is divided by ffmpeg's CPU in the same round; the table
gives the median over rounds.

    python benchmarks/reference_race.py --rounds 2 --nemo-python /path/to/nemo-venv/bin/python
    python benchmarks/reference_race.py --quick --rounds 3 --record   # what the CI guard compares
    python benchmarks/reference_race.py --rounds 2 --video my_footage.mp4   # your own footage

``--record`` writes the CPU ratios to ``benchmarks/part_ratios.json`` under the mode run (``quick``
or ``full``), with the machine, load and commit; ``curation_assets_tests/test_performance_guard.py``
reruns the quick mode and fails when a part's CPU ratio grew past the margin stated there. Those
ratios divide by ffmpeg at our clips' x264 functions (``GUARD_BASELINE``: the extra ffmpeg run
where they differ from x264's own choice), so they do not move with the CPU's instruction set.
One JSON line per run is appended to ``benchmarks/results.jsonl`` (``--results``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import footage  # noqa: E402
from measure import DEFAULT_RESULTS, append_record, cpu_children, git_commit  # noqa: E402

RATIOS_FILE = HERE / "part_ratios.json"
PARTS = ("probe", "decode", "encode", "motion vectors", "previews", "model-frame tap", "writing", "checks",
         "start-up")
# The guard's margin: a part fails when its CPU ratio exceeds the recorded one by more than 30% plus
# 1% of ffmpeg's CPU (the slack keeps parts near zero, such as the probe, from failing on noise). CPU
# time, not wall time, so a loaded machine does not fail it; an extra decode of every clip in any part
# adds 6% of ffmpeg's CPU and fails it.
GUARD_MARGIN = 0.30
GUARD_SLACK = 0.01
# What the guard's ratios divide by: the same on every CPU, whether or not it has x264 functions
# (AVX-512) that our clips are not encoded with (``_guard_cpu``).
GUARD_BASELINE = "ffmpeg at our clips' x264 functions"
CLI_ARGS = ["--motion-filter", "score-only", "--generate-previews", "--no-generate-embeddings",
            "--splitting-algorithm", "fixed_stride", "--fixed-stride-split-duration", "10"]


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _child(cmd: list[str], env: dict[str, str] | None = None,
           cwd: Path | None = None) -> tuple[float, float, subprocess.CompletedProcess]:
    """Run ``cmd`` to completion: its wall and CPU seconds (it and its children, waited for)."""
    c0, w0 = cpu_children(), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    wall, cpu = time.perf_counter() - w0, cpu_children() - c0
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return wall, cpu, proc


def run_ffmpeg(video: Path, work: Path, x264_params: str | None = None) -> dict[str, Any]:
    """Single-pass ffmpeg; ``x264_params``: its libx264 given these parameters (our clips' CPU flags)."""
    out = work / "ffmpeg.mp4"
    params = ["-x264-params", x264_params] if x264_params else []
    wall, cpu, _ = _child([footage.ffmpeg_path(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(video),
                           "-c:v", "libx264", "-preset", "medium", "-crf", "23", *params, "-c:a", "copy", str(out)])
    out.unlink()
    return {"wall_s": wall, "cpu_s": cpu}


def our_x264_params(video: Path, cli_args: list[str] = CLI_ARGS) -> str | None:
    """The ``x264-params`` our clips of ``video`` get with ``cli_args`` (``core.x264_cpu``: the CPU
    flags libx264 is given, AVX-512 masked on CPUs that have it); None where x264 chooses its own."""
    import av

    from curation_assets.core.encoders import encodable_size, target_pix_fmt
    from curation_assets.core.x264_cpu import x264_options

    with av.open(str(video)) as container:
        cc = container.streams.video[0].codec_context
        # the width the clip encoder gives libx264 (an odd one is made even first: clip_encoder._open)
        width, _ = encodable_size("libx264", target_pix_fmt("libx264", cc.pix_fmt), cc.width, cc.height)
    return x264_options(width, avx512="--transcode-x264-avx512" in cli_args).get("x264-params")


def run_nemo(python: str, video: Path, work: Path) -> dict[str, Any]:
    out = work / "nemo_out"
    shutil.rmtree(out, ignore_errors=True)
    wall, cpu, proc = _child([python, str(HERE / "nemo_reference_path.py"), str(video), str(out)])
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    shutil.rmtree(out, ignore_errors=True)
    return {"wall_s": wall, "cpu_s": cpu, "parts": report["parts"], "clips": report["clips"],
            "settings": report["settings"]}


def decode_cpu(video: Path) -> float:
    """CPU seconds of decoding ``video`` alone, as the transcode's single pass decodes it."""
    import av

    from curation_assets.core.cpus import usable_cores
    from curation_assets.core.decode_pass import decoder_threads

    start = time.process_time()
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = decoder_threads(usable_cores())  # as core.decode_pass sets it
        for _ in container.decode(stream):
            pass
    return time.process_time() - start


def _our_env(root: Path = ROOT) -> dict[str, str]:
    """The environment our runs get: the package of ``root`` (this checkout) first on the path."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}


def run_ours(video: Path, work: Path, cli_args: list[str] = CLI_ARGS) -> dict[str, Any]:
    out, home, parts_file = work / "ours_out", work / "ours_home", work / "parts.json"
    for path in (out, home):
        shutil.rmtree(path, ignore_errors=True)
    wall, cpu, proc = _child([sys.executable, str(HERE / "instrumented_cli.py"), str(parts_file), "run",
                              "--video-dir", str(video.parent), "--output-path", str(out), "--dagster-home", str(home),
                              *cli_args], env=_our_env())
    measured = json.loads(parts_file.read_text())
    clips = len(list((out / "clips").glob("*.mp4"))) + len(list((out / "filtered_clips").glob("*.mp4")))
    digest = output_digest(out)
    for path in (out, home):
        shutil.rmtree(path, ignore_errors=True)
    return {"wall_s": wall, "cpu_s": cpu, "measured": measured, "clips": clips, "digest": digest,
            "heavy_modules": measured.get("heavy_modules", [])}


def run_core(video: Path, work: Path, cli_args: list[str] = CLI_ARGS) -> dict[str, Any]:
    """``core_path.py``: the same work without Dagster, into the path the CLI writes (the same bytes)."""
    out = work / "ours_out"
    shutil.rmtree(out, ignore_errors=True)
    wall, cpu, _ = _child([sys.executable, str(HERE / "core_path.py"), "run", "--video-dir", str(video.parent),
                           "--output-path", str(out), *cli_args], env=_our_env())
    digest = output_digest(out)
    shutil.rmtree(out, ignore_errors=True)
    return {"wall_s": wall, "cpu_s": cpu, "digest": digest}


def output_digest(out: Path) -> dict[str, str]:
    """sha256 of every file a run wrote outside its work area, by path under ``out``."""
    import hashlib

    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file() and "_work" not in p.relative_to(out).parts}


def our_parts(ours: dict[str, Any], decode: float) -> dict[str, float]:
    """Our CPU seconds per part (see the module docstring)."""
    m = ours["measured"]["cpu_s"]
    video_clips = m.get("video_clips", 0.0)
    threads = sum(m.get(k, 0.0) for k in ("probe", "previews", "motion", "tap"))
    steps = video_clips + m.get("writing", 0.0) + m.get("checks", 0.0)
    return {
        "probe": m.get("probe", 0.0),
        "decode": decode,
        "encode": max(0.0, video_clips - threads - decode),
        "motion vectors": m.get("motion", 0.0),
        "previews": m.get("previews", 0.0),
        "model-frame tap": m.get("tap", 0.0),
        "writing": m.get("writing", 0.0),
        "checks": m.get("checks", 0.0),
        "start-up": max(0.0, ours["cpu_s"] - steps),
    }


def own_footage(path: Path, work: Path) -> tuple[Path, float]:
    """``path`` alone in a folder of its own (the CLI runs over a folder), and its length in seconds."""
    import av

    folder = work / "source"
    folder.mkdir()
    video = folder / path.name
    try:
        os.link(path, video)
    except OSError:  # another filesystem
        shutil.copyfile(path, video)
    with av.open(str(video)) as container:
        if container.duration is None:
            raise SystemExit(f"--video {path}: no duration in its container")
        return video, container.duration / 1_000_000


def installed_bytecode(root: Path = ROOT) -> None:
    """The package of ``root`` (this checkout) compiled to bytecode, as ``pip install`` leaves them (and as any run
    after the first finds them): a checkout run under ``PYTHONDONTWRITEBYTECODE`` would otherwise
    compile about 110 modules from source on every run (0.25 s of start-up that no user's install
    pays). NeMo's environment is a pip install: its modules already have theirs."""
    import compileall

    compileall.compile_dir(str(root / "curation_assets"), quiet=1)


def race(rounds: int, quick: bool, nemo_python: str | None, work: Path, log=print,
         footage_file: Path | None = None, core: bool = False, cli_args: list[str] = CLI_ARGS,
         same_functions: bool = False) -> dict[str, Any]:
    """``same_functions``: also time ffmpeg with our clips' x264 CPU flags, where they are not x264's own."""
    installed_bytecode()
    if footage_file is not None:
        video, video_s = own_footage(footage_file, work)
    else:
        video_s = 12.0 if quick else 58.0
        video = footage.build_three_shot(video_s)
    ours_params = our_x264_params(video, cli_args) if same_functions else None
    if same_functions:
        log(f"our clips' libx264 parameters here: {ours_params or 'none (x264 chooses its own CPU functions)'}")
    rows = []
    for r in range(rounds):
        order = ["ffmpeg", "nemo", "ours", *(["core"] if core else []), *(["ffmpeg_same"] if ours_params else [])]
        order = order[r % len(order):] + order[:r % len(order)]
        row: dict[str, Any] = {"load_before": _load()}
        for who in order:
            if who == "ffmpeg":
                row["ffmpeg"] = run_ffmpeg(video, work)
            elif who == "ffmpeg_same":
                row["ffmpeg_same"] = run_ffmpeg(video, work, ours_params)
            elif who == "nemo" and nemo_python:
                row["nemo"] = run_nemo(nemo_python, video, work)
            elif who == "ours":
                row["ours"] = run_ours(video, work, cli_args)
                row["decode_cpu_s"] = decode_cpu(video)
            elif who == "core":
                row["core"] = run_core(video, work, cli_args)
            if who in row:
                log(f"round {r + 1} {who}: wall {row[who]['wall_s']:.1f} s, CPU {row[who]['cpu_s']:.1f} s "
                    f"(load {_load()})")
        row["parts_cpu_s"] = our_parts(row["ours"], row["decode_cpu_s"])
        rows.append(row)
    summary = summarize(rows, video, quick, video_s)
    if ours_params:
        summary["ffmpeg_same"]["x264_params"] = ours_params
    return summary


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _against_ffmpeg(rows: list[dict[str, Any]], who: str) -> dict[str, float]:
    """``who``'s median wall and CPU seconds, and its median ratios to ffmpeg's in the same round."""
    return {"wall_s": _median([r[who]["wall_s"] for r in rows]), "cpu_s": _median([r[who]["cpu_s"] for r in rows]),
            "wall_ratio": _median([r[who]["wall_s"] / r["ffmpeg"]["wall_s"] for r in rows]),
            "cpu_ratio": _median([r[who]["cpu_s"] / r["ffmpeg"]["cpu_s"] for r in rows])}


def _guard_cpu(row: dict[str, Any]) -> float:
    """The guard's baseline in a round: ffmpeg's CPU at our clips' x264 functions (the extra ffmpeg
    run where they differ from x264's own choice, plain ffmpeg where they do not), so a part's ratio
    does not move with whether the CPU has functions our clips are not encoded with."""
    return row["ffmpeg_same"]["cpu_s"] if "ffmpeg_same" in row else row["ffmpeg"]["cpu_s"]


def summarize(rows: list[dict[str, Any]], video: Path, quick: bool, video_s: float) -> dict[str, Any]:
    ff_cpu = [r["ffmpeg"]["cpu_s"] for r in rows]
    summary: dict[str, Any] = {
        "mode": "quick" if quick else "full",
        "video": video.name, "video_s": round(video_s, 3), "rounds": len(rows),
        "ffmpeg": {"wall_s": _median([r["ffmpeg"]["wall_s"] for r in rows]), "cpu_s": _median(ff_cpu)},
        "ours": {"wall_s": _median([r["ours"]["wall_s"] for r in rows]),
                 "cpu_s": _median([r["ours"]["cpu_s"] for r in rows]),
                 "wall_ratio": _median([r["ours"]["wall_s"] / r["ffmpeg"]["wall_s"] for r in rows]),
                 "cpu_ratio": _median([r["ours"]["cpu_s"] / r["ffmpeg"]["cpu_s"] for r in rows]),
                 "clips": rows[0]["ours"]["clips"], "heavy_modules": rows[0]["ours"]["heavy_modules"]},
        "parts": {p: {"cpu_s": _median([r["parts_cpu_s"][p] for r in rows]),
                      "cpu_ratio": _median([r["parts_cpu_s"][p] / r["ffmpeg"]["cpu_s"] for r in rows]),
                      "guard_ratio": _median([r["parts_cpu_s"][p] / _guard_cpu(r) for r in rows])}
                  for p in PARTS},
        "whole_cli_guard_ratio": _median([r["ours"]["cpu_s"] / _guard_cpu(r) for r in rows]),
        "loads": [r["load_before"] for r in rows],
        "per_round": [{"ffmpeg": r["ffmpeg"], "ours_wall_s": r["ours"]["wall_s"], "ours_cpu_s": r["ours"]["cpu_s"],
                       "parts_cpu_s": r["parts_cpu_s"],
                       **({"nemo_wall_s": r["nemo"]["wall_s"], "nemo_cpu_s": r["nemo"]["cpu_s"]} if "nemo" in r else {})}
                      for r in rows],
    }
    if all("core" in r for r in rows):
        summary["core"] = {
            **_against_ffmpeg(rows, "core"),
            "same_bytes_as_cli": all(r["core"]["digest"] == r["ours"]["digest"] for r in rows),
            "files": len(rows[0]["core"]["digest"]),
        }
        for r, p in zip(rows, summary["per_round"], strict=True):
            p.update(core_wall_s=r["core"]["wall_s"], core_cpu_s=r["core"]["cpu_s"])
    if rows and all("ffmpeg_same" in r for r in rows):
        same = "ffmpeg_same"
        summary[same] = {
            **_against_ffmpeg(rows, same),
            # ours against ffmpeg at our clips' instruction set: the pipeline's own cost, that choice aside
            "ours_over_wall": _median([r["ours"]["wall_s"] / r[same]["wall_s"] for r in rows]),
            "ours_over_cpu": _median([r["ours"]["cpu_s"] / r[same]["cpu_s"] for r in rows]),
            **({"core_over_wall": _median([r["core"]["wall_s"] / r[same]["wall_s"] for r in rows]),
                "core_over_cpu": _median([r["core"]["cpu_s"] / r[same]["cpu_s"] for r in rows])}
               if all("core" in r for r in rows) else {}),
        }
        for r, p in zip(rows, summary["per_round"], strict=True):
            p.update(ffmpeg_same_wall_s=r[same]["wall_s"], ffmpeg_same_cpu_s=r[same]["cpu_s"])
    if all("nemo" in r for r in rows):
        summary["nemo"] = {
            **_against_ffmpeg(rows, "nemo"),
            "ours_over_nemo_wall": _median([r["ours"]["wall_s"] / r["nemo"]["wall_s"] for r in rows]),
            "ours_over_nemo_cpu": _median([r["ours"]["cpu_s"] / r["nemo"]["cpu_s"] for r in rows]),
            "parts": {p: _median([r["nemo"]["parts"][p]["cpu_s"] / r["ffmpeg"]["cpu_s"] for r in rows])
                      for p in rows[0]["nemo"]["parts"]},
            "clips": rows[0]["nemo"]["clips"], "settings": rows[0]["nemo"]["settings"],
        }
    return summary


def table(s: dict[str, Any]) -> str:
    """The summary as the markdown table of docs/performance.md."""
    lines = ["| | wall s | CPU s | wall / ffmpeg | CPU / ffmpeg |", "|---|---|---|---|---|",
             f"| single-pass ffmpeg (libx264 medium, crf 23) | {s['ffmpeg']['wall_s']:.1f} | {s['ffmpeg']['cpu_s']:.1f} "
             "| 1.00 | 1.00 |"]
    if "nemo" in s:
        n = s["nemo"]
        lines.append(f"| NeMo Curator 1.4.0 CPU path (no previews) | {n['wall_s']:.1f} | {n['cpu_s']:.1f} | "
                     f"{n['wall_ratio']:.2f} | {n['cpu_ratio']:.2f} |")
    o = s["ours"]
    lines.append(f"| **ours, whole CLI** | {o['wall_s']:.1f} | {o['cpu_s']:.1f} | **{o['wall_ratio']:.2f}** | "
                 f"**{o['cpu_ratio']:.2f}** |")
    if "core" in s:
        c = s["core"]
        lines.append(f"| ours without Dagster (`core_path.py`{'' if c['same_bytes_as_cli'] else ', OTHER BYTES'}) | "
                     f"{c['wall_s']:.1f} | {c['cpu_s']:.1f} | {c['wall_ratio']:.2f} | {c['cpu_ratio']:.2f} |")
    for p in PARTS:
        lines.append(f"| of which {p} | | {s['parts'][p]['cpu_s']:.2f} | | {s['parts'][p]['cpu_ratio']:.3f} |")
    if "nemo" in s:
        n = s["nemo"]
        lines.append(f"| ours / NeMo | | | **{n['ours_over_nemo_wall']:.2f}** | {n['ours_over_nemo_cpu']:.2f} |")
    if "ffmpeg_same" in s:
        f = s["ffmpeg_same"]
        lines.append(f"| single-pass ffmpeg with our clips' x264 functions (`{f['x264_params']}`) | "
                     f"{f['wall_s']:.1f} | {f['cpu_s']:.1f} | {f['wall_ratio']:.2f} | {f['cpu_ratio']:.2f} |")
        lines.append(f"| ours, whole CLI / that ffmpeg | | | {f['ours_over_wall']:.2f} | {f['ours_over_cpu']:.2f} |")
        if "core_over_wall" in f:
            lines.append(f"| ours without Dagster / that ffmpeg | | | {f['core_over_wall']:.2f} | "
                         f"{f['core_over_cpu']:.2f} |")
    return "\n".join(lines)


def record_ratios(summary: dict[str, Any], path: Path = RATIOS_FILE) -> None:
    data = json.loads(path.read_text()) if path.exists() else {}
    data[summary["mode"]] = {
        "recorded": {"date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                     "commit": git_commit(), "cpus": os.cpu_count(), "loads": summary["loads"],
                     "rounds": summary["rounds"], "video_s": summary["video_s"]},
        "baseline": GUARD_BASELINE,
        "cpu_ratios": {p: round(summary["parts"][p]["guard_ratio"], 4) for p in PARTS},
        "whole_cli_cpu_ratio": round(summary["whole_cli_guard_ratio"], 4),
    }
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    print(f"wrote the {summary['mode']} CPU ratios to {path}")


def regressions(summary: dict[str, Any], recorded: dict[str, Any], margin: float = GUARD_MARGIN,
                slack: float = GUARD_SLACK) -> list[str]:
    """The parts whose CPU ratio grew past ``recorded * (1 + margin) + slack``, each with the figures."""
    found = []
    if recorded.get("baseline") != GUARD_BASELINE:
        return [f"the recorded ratios are against {recorded.get('baseline', 'plain ffmpeg')!r}, not "
                f"{GUARD_BASELINE!r}: record them again (reference_race.py --quick --rounds 3 --record)"]
    for part, before in recorded["cpu_ratios"].items():
        now = summary["parts"][part]["guard_ratio"]
        limit = before * (1 + margin) + slack
        if now > limit:
            found.append(f"{part}: CPU {now:.3f} x ffmpeg, recorded {before:.3f} (limit {limit:.3f})")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="12 s of footage instead of 58 s")
    parser.add_argument("--nemo-python", default=os.environ.get("NEMO_CURATOR_PYTHON"),
                        help="the interpreter of an environment with nemo-curator==1.4.0 "
                             "(default: $NEMO_CURATOR_PYTHON; without it NeMo's path is not run)")
    parser.add_argument("--video", type=Path, help="race on this file instead of the built footage (your own; "
                                                   "with the same CLI settings: fixed stride 10 s)")
    parser.add_argument("--core", action="store_true",
                        help="also run core_path.py: the same work without Dagster (the floor under the CLI)")
    parser.add_argument("--x264-avx512", action="store_true",
                        help="our runs with --transcode-x264-avx512: libx264's AVX-512 functions where they are "
                             "exact (faster on AVX-512 CPUs; other clip bytes than the default's)")
    parser.add_argument("--no-same-functions", dest="same_functions", action="store_false",
                        help="do not also time ffmpeg with our clips' x264 CPU flags (run by default on CPUs where "
                             "they differ from x264's own choice: AVX-512 masked)")
    parser.add_argument("--record", action="store_true", help=f"write the CPU ratios to {RATIOS_FILE.name}")
    parser.add_argument("--results", default=str(DEFAULT_RESULTS))
    args = parser.parse_args(argv)
    if args.record and args.x264_avx512:
        parser.error("--record writes the guard's ratios, those of the default settings: not with --x264-avx512")
    if args.record and not args.same_functions:
        parser.error("--record writes ratios against ffmpeg at our clips' x264 functions: not with "
                     "--no-same-functions")
    cli_args = [*CLI_ARGS, "--transcode-x264-avx512"] if args.x264_avx512 else CLI_ARGS
    if args.nemo_python and not Path(args.nemo_python).exists():
        parser.error(f"--nemo-python {args.nemo_python}: no such interpreter")
    if args.video is not None:
        if args.quick or args.record:
            parser.error("--video races on your own file: --quick and --record belong to the built footage "
                         "(the guard's recorded ratios)")
        if not args.video.is_file():
            parser.error(f"--video {args.video}: no such file")
    if not args.nemo_python:
        print("NeMo Curator's path is not run: give --nemo-python (or NEMO_CURATOR_PYTHON), the interpreter of an "
              "environment with nemo-curator==1.4.0, av==17.1.0 and opencv-python-headless", flush=True)
    with tempfile.TemporaryDirectory(prefix="reference_race_") as tmp:
        summary = race(args.rounds, args.quick, args.nemo_python, Path(tmp), log=lambda m: print(m, flush=True),
                       footage_file=args.video, core=args.core, cli_args=cli_args, same_functions=args.same_functions)
    summary.update(cli_args=cli_args, commit=git_commit(), cpus=os.cpu_count(), load_after=_load(),
                   date=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    print()
    print(f"{summary['video']} ({summary['video_s']:g} s), {summary['rounds']} rounds, medians; commit "
          f"{summary['commit']}, {summary['cpus']} CPUs, load before each round {summary['loads']}"
          f"{'; ours with --transcode-x264-avx512' if args.x264_avx512 else ''}")
    print(table(summary))
    if summary["ours"]["heavy_modules"]:
        print(f"heavy modules the CLI run imported: {', '.join(summary['ours']['heavy_modules'])}")
    if args.record:
        record_ratios(summary)
    append_record(args.results, {"benchmark": "reference_race", **summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
