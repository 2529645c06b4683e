#!/usr/bin/env python
"""GPU check for the Cosmos-Embed1 embedding path at production size.

Where a CUDA device is present this script:

1. builds, locally, a Cosmos-Embed1 stand-in the size of the real 224p checkpoint (the real
   weights cannot be downloaded here): an EVA ViT-g/14-like vision tower (1408 wide, 39 blocks,
   16 heads, MLP 6144, patch 14, 224 px -> 257 tokens per frame) and a BERT-base-like Q-Former
   (768 wide, 12 layers, cross-attention every 2nd layer, 32 queries), embedding 256, about
   1.1 B parameters, random bf16 weights, with the same remote-code layout as the test stand-in
   (``curation_assets_tests/model_fixtures.py``);
2. loads it through the production path (``CosmosEmbedder`` -> ``AutoModel``/``AutoProcessor``
   with remote code, bf16 on the GPU);
3. runs each source (a textured, moving H.264 video of one clip's length) through the pipeline's
   CPU step, ``core.pipeline.process_video`` with ``model_frames=source``: one transcode pass
   whose frame tap stores each clip's 8 Cosmos-Embed1 frames at 224² beside the clip;
4. for batch sizes 1, 8 and 32 measures, in the same run: ``tap step``, the pipeline's embedding
   step (``models.stages.embed``, what the ``clip_embeddings`` asset calls) on those stored
   frames, end to end (read, processor, pinned batches stacked by the loader thread, bf16 on the
   GPU, vectors back); ``clip decode``, the same model fed by decoding each clip
   (``model_frames=clip``); ``model only``, prepared inputs already in host memory; and prints
   clips/s, the GPU busy fraction, the peak GPU memory, and whether the tap step reaches 90% of
   model only with the GPU at least 80% busy.

GPU busy is reported two ways: ``events`` = time between CUDA events recorded around every
``get_video_embeddings`` call, summed, over wall time (an upper bound: it includes launch gaps
inside a call); ``util`` = the mean of the driver's utilisation samples every 100 ms (NVML via
``torch.cuda.utilization`` or ``nvidia-smi``), when available.

Runs in about 2 minutes on one H100. Without a CUDA device it says so and exits 0 (``--smoke``
runs a tiny CPU version of the same code, to check the script itself).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def encode_clip(seconds: float, fps: int, width: int, height: int, seed: int) -> bytes:
    """A textured, moving H.264 clip (so decoding costs what real footage roughly costs)."""
    import io

    import av
    import numpy as np

    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, size=(height // 8 + 2, width // 8 + 2, 3), dtype=np.uint8)
    texture = np.kron(texture, np.ones((8, 8, 1), dtype=np.uint8))
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([(xx * 255 // width), (yy * 255 // height), ((xx + yy) * 127 // (width + height))], -1).astype(
        np.uint8
    )
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "23", "preset": "ultrafast"}
        for i in range(int(seconds * fps)):
            dx, dy = (i * 3 + seed * 11) % 8, (i * 2) % 8
            img = (base // 2 + texture[dy : dy + height, dx : dx + width] // 2).astype(np.uint8)
            s = height // 6
            x0 = (i * 7 + seed * 50) % (width - s)
            img[height // 3 : height // 3 + s, x0 : x0 + s] = 255 - img[height // 3 : height // 3 + s, x0 : x0 + s]
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


class UtilSampler:
    """Mean GPU utilisation (%) over a run, sampled every 100 ms; None when no source works."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._proc: subprocess.Popen | None = None
        self.source = None
        import torch

        try:
            torch.cuda.utilization()
            self.source = "nvml"
        except Exception:  # noqa: BLE001 - pynvml missing
            if shutil.which("nvidia-smi"):
                self.source = "nvidia-smi"

    def __enter__(self) -> UtilSampler:
        import torch

        self.samples = []
        self._stop.clear()
        if self.source == "nvml":

            def loop() -> None:
                while not self._stop.wait(0.1):
                    self.samples.append(float(torch.cuda.utilization()))

            self._thread = threading.Thread(target=loop, daemon=True)
            self._thread.start()
        elif self.source == "nvidia-smi":
            idx = torch.cuda.current_device()
            self._proc = subprocess.Popen(
                [
                    "nvidia-smi",
                    f"--id={idx}",
                    "--query-gpu=utilization.gpu",
                    "--format=csv,noheader,nounits",
                    "-lms",
                    "100",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )

            def read() -> None:
                assert self._proc and self._proc.stdout
                for line in self._proc.stdout:
                    try:
                        self.samples.append(float(line.strip()))
                    except ValueError:
                        pass

            self._thread = threading.Thread(target=read, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=5)
        if self._thread is not None:
            self._thread.join(timeout=2)

    @property
    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) / 100.0 if self.samples else None


class EventTimer:
    """Wraps ``model.get_video_embeddings`` to record CUDA events around each call."""

    def __init__(self, model, cuda: bool) -> None:
        self.model, self.cuda = model, cuda
        self.pairs: list = []
        self.cpu_s = 0.0
        original = model.get_video_embeddings

        def timed(*args, **kwargs):
            import torch

            t = time.perf_counter()
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                out = original(*args, **kwargs)
                end.record()
                self.pairs.append((start, end))
            else:
                out = original(*args, **kwargs)
            self.cpu_s += time.perf_counter() - t
            return out

        self.original = original
        model.get_video_embeddings = timed

    def reset(self) -> None:
        self.pairs.clear()
        self.cpu_s = 0.0

    def busy_s(self) -> float:
        import torch

        if not self.cuda:
            return self.cpu_s
        torch.cuda.synchronize()
        return sum(s.elapsed_time(e) for s, e in self.pairs) / 1000.0

    def restore(self) -> None:
        self.model.get_video_embeddings = self.original


def tapped_videos(sources: list[bytes], work: Path, seconds: float) -> list:
    """Each source through ``core.pipeline.process_video`` as the ``video_clips`` asset runs it (clips
    spilled to a work folder), with the frame tap keeping the Cosmos-Embed1 frames."""
    from curation_assets.core.options import PipelineOptions
    from curation_assets.models.video import process_video

    options = PipelineOptions(fixed_stride_split_duration=seconds, fixed_stride_min_clip_length_s=0.0,
                              generate_embeddings="on", model_frames="source", generate_previews=False,
                              motion_filter="disable", transcode_preset="veryfast")
    out = []
    for i, data in enumerate(sources):
        path = work / f"source_{i}.mp4"
        path.write_bytes(data)
        result = process_video(str(path), path.name, lambda p=path: open(p, "rb"), options,
                               spill_dir=str(work / "spill" / str(i)))
        result.clips = result.clips[:1]
        assert result.clips and result.clips[0].model_frames, f"{path.name}: {result.errors}"
        out.append(result)
    return out


def fmt(x: float | None, spec: str = ".2f") -> str:
    return "n/a" if x is None else format(x, spec)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch-sizes", default="1,8,32")
    ap.add_argument("--clips", type=int, default=64, help="clips per measurement")
    ap.add_argument("--unique-clips", type=int, default=8, help="distinct encoded clips (reused round-robin)")
    ap.add_argument("--seconds", type=float, default=10.0, help="clip length (the reference's default split)")
    ap.add_argument("--size", default="1280x720", help="clip resolution WxH")
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--decode-workers", type=int, default=min(16, os.cpu_count() or 1))
    ap.add_argument("--smoke", action="store_true", help="tiny model, CPU allowed: checks the script itself")
    args = ap.parse_args()

    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not args.smoke:
        print("gpu_check: no CUDA device available (torch.cuda.is_available() is False); nothing measured.")
        return 0

    import transformers

    from curation_assets.models import CosmosEmbedder, clear_model_cache, stages
    from curation_assets_tests.model_fixtures import REAL_224P_SIZE, CosmosStandinSize, build_cosmos_standin

    device = "cuda" if cuda else "cpu"
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    width, height = (int(v) for v in args.size.lower().split("x"))
    if args.smoke:
        size = CosmosStandinSize()
        args.clips, args.unique_clips, args.seconds, width, height = (
            min(args.clips, 6),
            min(args.unique_clips, 3),
            2.0,
            160,
            96,
        )
        batch_sizes = [b for b in batch_sizes if b <= 4] or [1, 2]
    else:
        size = CosmosStandinSize(**{**REAL_224P_SIZE.__dict__, "extra": {"vocab_size": 30523}})

    print(
        f"device: {torch.cuda.get_device_name() if cuda else 'cpu'}; torch {torch.__version__}; "
        f"transformers {transformers.__version__}; CPU cores {os.cpu_count()}; decode workers {args.decode_workers}"
    )
    t_all = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    try:
        t = time.perf_counter()
        build_cosmos_standin(
            work, "224p", size, device=device, dtype=torch.bfloat16 if cuda else torch.float32, max_shard_size="5GB"
        )
        if cuda:
            torch.cuda.empty_cache()
        print(
            f"built stand-in in {time.perf_counter() - t:.1f}s: vision {size.vision_width}x{size.vision_layers} "
            f"(heads {size.vision_heads}, mlp {size.vision_mlp_dim}, patch {size.patch_size}), Q-Former "
            f"{size.qformer_width}x{size.qformer_layers}, {size.num_query_tokens} queries, embed {size.embed_dim}"
        )

        t = time.perf_counter()
        with ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1))) as pool:
            unique = list(
                pool.map(lambda s: encode_clip(args.seconds, args.fps, width, height, s), range(args.unique_clips))
            )
        clips = [unique[i % len(unique)] for i in range(args.clips)]
        print(
            f"encoded {len(unique)} sources ({args.seconds:g}s {width}x{height} @{args.fps}, "
            f"{sum(map(len, unique)) / len(unique) / 1e6:.1f} MB each) in {time.perf_counter() - t:.1f}s"
        )

        # The pipeline's CPU step on each source: one clip per source (a fixed stride of the source's
        # length), transcoded with the frame tap keeping the embedding frames (model_frames=source).
        t = time.perf_counter()
        videos = tapped_videos(unique, work, args.seconds)
        results = {f"v{i}": videos[i % len(videos)] for i in range(args.clips)}  # args.clips clips in all
        print(f"transcoded with the frame tap in {time.perf_counter() - t:.1f}s (x264 veryfast; not measured): "
              f"{sum(len(v.clips) for v in videos)} clips, stored frames "
              f"{sum(len(c.model_frames) for v in videos for c in v.clips) / len(videos) / 1e6:.2f} MB per clip")

        t = time.perf_counter()
        embedder = CosmosEmbedder(
            "cosmos-embed1-224p", model_dir=work, device=device, batch_size=1, decode_workers=args.decode_workers
        )
        model, _ = embedder.load()
        if cuda:
            torch.cuda.synchronize()
        n_params = sum(p.numel() for p in model.parameters())
        weights_gib = torch.cuda.memory_allocated() / 2**30 if cuda else 0.0
        print(
            f"loaded through CosmosEmbedder in {time.perf_counter() - t:.1f}s: {n_params / 1e9:.3f} B parameters, "
            f"{embedder.dtype}, {weights_gib:.2f} GiB on the GPU"
        )

        timer = EventTimer(model, cuda)
        sampler = UtilSampler() if cuda else None
        rows = []

        def measure(path: str, bs: int, run, count: int) -> None:
            run()  # warm-up (kernels, allocator)
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            timer.reset()
            t = time.perf_counter()
            if sampler:
                with sampler:
                    run()
                    torch.cuda.synchronize()
            else:
                run()
            wall = time.perf_counter() - t
            peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
            rows.append((path, bs, count / wall, timer.busy_s() / wall, sampler.mean if sampler else None, peak))

        for bs in batch_sizes:
            emb = CosmosEmbedder(
                "cosmos-embed1-224p", model_dir=work, device=device, batch_size=bs, decode_workers=args.decode_workers
            )

            # The pipeline's embedding step (models.stages.embed, as the clip_embeddings asset runs it)
            # on the frames the tap stored: the loader reads them, stacks pinned batches, the GPU runs.
            def step():
                out = stages.embed(results, emb)
                assert all(len(a.values) == 1 and not a.errors for a in out.values()), "every clip embedded"

            measure("tap step", bs, step, args.clips)

            # The same model fed by decoding each clip (model_frames=clip, the reference's path).
            def decode():
                vectors = emb.embed_clips(clips)
                assert all(v is not None and v.shape == (size.embed_dim,) for v in vectors)

            measure("clip decode", bs, decode, len(clips))

        # Model alone: prepared inputs already in host memory, so the GPU side's ceiling shows.
        prepared = torch.cat([embedder.prepare(c) for c in unique])
        for bs in batch_sizes:
            idx = [i % prepared.shape[0] for i in range(max(args.clips, bs))]
            batches = [prepared[idx[i : i + bs]] for i in range(0, len(idx), bs)]

            def model_only():
                for b in batches:
                    embedder._forward(model, b)

            measure("model only", bs, model_only, len(idx))
        timer.restore()

        print()
        print(f"{'path':<11} {'batch':>5} {'clips/s':>9} {'busy(events)':>13} {'busy(util)':>11} {'peak GiB':>9}")
        for path, bs, rate, busy, util, peak in rows:
            print(f"{path:<11} {bs:>5} {rate:>9.1f} {busy:>13.0%} {fmt(util, '.0%'):>11} {fmt(peak):>9}")
        best = {path: max((r for r in rows if r[0] == path), key=lambda r: r[2]) for path in ("tap step", "model only")}
        tap_row, model_row = best["tap step"], best["model only"]
        ratio = tap_row[2] / model_row[2]
        busy = tap_row[4] if tap_row[4] is not None else tap_row[3]
        print(f"tap step at its best batch ({tap_row[1]}): {tap_row[2]:.1f} clips/s = {ratio:.0%} of model only "
              f"({model_row[2]:.1f} clips/s, batch {model_row[1]}; goal >= 90%), GPU {fmt(busy, '.0%')} busy "
              f"(goal >= 80%): {'met' if ratio >= 0.9 and (busy or 0) >= 0.8 else 'NOT met'}"
              + ("" if cuda else " [CPU smoke run: checks the script, not a GPU figure]"))
        if sampler:
            print(f"(util source: {sampler.source or 'none'})")
        print(f"total {time.perf_counter() - t_all:.0f}s")
        clear_model_cache()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
