#!/usr/bin/env python
"""What a GPU node (many cores + one GPU) does with each step: the figures behind the README's
advice to run CPU steps and the GPU step in separate pools.

Prints figures; not a test. On the machine it runs on:

1. ``encode``: libx264 (PyAV, the encoder the pipeline uses) on 1280x720 25 fps footage made
   here: frames/s with one thread at ``veryfast`` and at libx264's default preset, then with every
   core, i.e. what re-encoding costs a node per clip-second.
2. ``transnetv2``: the product's TransNetV2 splitting on that footage, on the CPU with every core
   (``models.transnetv2``' fused forward, windows in parallel) and, where CUDA is present, on the GPU
   (the package module's own forward); frames/s, times real time, and whether the two agree on
   every threshold decision.
3. ``embed`` (CUDA only): ``benchmarks/gpu_check.py`` (a Cosmos-Embed1-sized stand-in through
   ``CosmosEmbedder``, clips/s at batch 1/8/32), run as a child process.

Appends one JSON line to ``--results`` (default ``benchmarks/results.jsonl``).

    python benchmarks/gpu_node.py [--seconds 60] [--parts encode transnetv2 embed]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import io
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from measure import DEFAULT_RESULTS, append_record, git_commit  # noqa: E402


def make_footage(seconds: float, fps: int = 25, width: int = 1280, height: int = 720) -> bytes:
    """Textured moving footage with a hard cut every 7 s, so TransNetV2 has scenes to find."""
    import av
    import numpy as np

    rng = np.random.default_rng(0)
    textures = [np.kron(rng.integers(0, 256, size=(height // 16 + 2, width // 16 + 2, 3), dtype=np.uint8),
                        np.ones((16, 16, 1), dtype=np.uint8)) for _ in range(4)]
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "20"}
        for i in range(int(seconds * fps)):
            tex = textures[(i // (7 * fps)) % len(textures)]
            dx, dy = (i * 3) % 16, (i * 2) % 16
            img = np.ascontiguousarray(tex[dy:dy + height, dx:dx + width])
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def decoded_frames(data: bytes, limit: int) -> list:
    import av

    frames = []
    with av.open(io.BytesIO(data)) as c:
        for f in c.decode(video=0):
            frames.append(f.reformat(format="yuv420p"))
            if len(frames) >= limit:
                break
    return frames


def encode_rate(frames: list, preset: str | None, threads: int) -> float:
    """libx264 frames/s encoding ``frames`` to memory with ``threads`` threads."""
    import av

    buf = io.BytesIO()
    t = time.perf_counter()
    with av.open(buf, mode="w", format="mp4") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = frames[0].width, frames[0].height, "yuv420p"
        s.thread_count = threads
        if preset:
            s.options = {"preset": preset}
        for i, f in enumerate(frames):
            f.pts = i
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return len(frames) / (time.perf_counter() - t)


def part_encode(data: bytes, record: dict) -> None:
    frames = decoded_frames(data, 250)
    cores = os.cpu_count() or 1
    rows = {}
    for preset in ("veryfast", None):
        label = preset or "default(medium)"
        one = encode_rate(frames, preset, 1)
        many = encode_rate(frames, preset, cores)
        rows[label] = {"fps_1_thread": round(one, 1), f"fps_{cores}_threads": round(many, 1)}
        print(f"  libx264 {label:16s} 720p: {one:6.1f} frames/s on 1 thread, {many:6.1f} on {cores} threads "
              f"({many / 25:.1f} real-time 25 fps streams)", flush=True)
    record["encode"] = rows


def part_transnetv2(data: bytes, seconds: float, record: dict) -> None:
    import numpy as np
    import torch

    from curation_assets.models import scene_detection as scenes
    from curation_assets.models.transnetv2 import load_transnetv2

    frames = list(scenes.iter_small_frames(io.BytesIO(data)))
    n = len(frames)
    out: dict = {"frames": n, "seconds": seconds}
    runs = [("cpu", 4 * (os.cpu_count() or 1))]
    if torch.cuda.is_available():
        runs.append(("cuda", 16))
    probs = {}
    for device, batch in runs:
        model = load_transnetv2(device=device)
        warm = scenes.predict_probabilities_from_frames(iter(frames[:300]), model=model, batch_size=batch)
        del warm
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        p = scenes.predict_probabilities_from_frames(iter(frames), model=model, batch_size=batch)
        if device == "cuda":
            torch.cuda.synchronize()
        wall = time.perf_counter() - t
        probs[device] = p
        out[device] = {"wall_s": round(wall, 3), "frames_per_s": round(n / wall, 1),
                       "x_real_time": round(n / wall / 25, 2), "batch_windows": batch,
                       "threads": torch.get_num_threads(), "fast_forward": model.uses_fast_forward}
        print(f"  TransNetV2 on {device}: {n} frames in {wall:.2f} s = {n / wall:.0f} frames/s = "
              f"{n / wall / 25:.1f}x real time (25 fps)", flush=True)
    if "cuda" in probs:
        a, b = probs["cpu"], probs["cuda"]
        out["cpu_vs_cuda_max_abs_diff"] = float(np.max(np.abs(a - b)))
        out["decisions_equal"] = bool(np.array_equal(a > 0.4, b > 0.4))
        print(f"  CPU fused forward vs the module on CUDA: max |diff| {out['cpu_vs_cuda_max_abs_diff']:.2e}, "
              f"same decisions: {out['decisions_equal']} ({int((a > 0.4).sum())} frames over 0.4)", flush=True)
    record["transnetv2"] = out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the generated 720p footage")
    ap.add_argument("--parts", nargs="+", default=["encode", "transnetv2", "embed"],
                    choices=["encode", "transnetv2", "embed"])
    ap.add_argument("--results", default=str(DEFAULT_RESULTS))
    args = ap.parse_args()

    import torch

    cuda = torch.cuda.is_available()
    record: dict = {"benchmark": "gpu_node", "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    "commit": git_commit(),
                    "cpus": os.cpu_count(), "gpu": torch.cuda.get_device_name() if cuda else None,
                    "torch": torch.__version__}
    print(f"{record['cpus']} CPUs, GPU: {record['gpu']}, torch {torch.__version__}", flush=True)
    t = time.perf_counter()
    data = make_footage(args.seconds)
    print(f"made {args.seconds:g} s of 1280x720 25 fps footage ({len(data) / 1e6:.1f} MB) in "
          f"{time.perf_counter() - t:.1f} s", flush=True)
    if "encode" in args.parts:
        part_encode(data, record)
    if "transnetv2" in args.parts:
        part_transnetv2(data, args.seconds, record)
    if "embed" in args.parts and cuda:
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, str(HERE / "gpu_check.py")], capture_output=True, text=True)
        print(proc.stdout[-4000:], proc.stderr[-3000:] if proc.returncode else "", flush=True)
        record["embed"] = {"rc": proc.returncode, "wall_s": round(time.perf_counter() - t, 1),
                           "report": proc.stdout[-2500:]}
    append_record(args.results, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
