#!/usr/bin/env python
"""Model frames from the decode pass (``model_frames=source``) against decoding each clip (``clip``).

Prints figures; not a test. On the 720p benchmark footage (``benchmarks/footage.py``; by default 2
videos of 30 s, a reduced set), for each mode in the same run:

1. ``core.pipeline.process_video`` with every model step on (embeddings, aesthetic threshold,
   captions) and the clips spilled to a work folder as the Dagster path does: its wall and CPU
   seconds (in ``source`` mode that includes the frame tap).
2. the model steps as the assets run them (``models.stages``: aesthetic scores, embeddings,
   captions) on stand-in checkpoints built locally (a Cosmos-Embed1 stand-in at 224² with a
   ViT of patch 14, 384 wide, 6 blocks, random weights, so that pixel differences reach its
   output; a tiny CLIP and the LAION MLP; ``curation_assets_tests/model_fixtures.py``) and a chat-completions
   server in a child process (its CPU is not ours). CPU seconds per clip of each step, with the
   models' own work timed apart: ``get_video_embeddings``, ``AestheticScorer.score_frames`` and
   the caption HTTP round trip. torch runs on one thread so a forward's CPU is its thread's.
3. what the models get, source against clip: the frame indices (must be identical), the PSNR of
   each model's input (the processor's output for Cosmos-Embed1, the cropped 224² frames for
   CLIP, the JPEG images for captions), and what that does to the stand-ins' outputs (embedding
   cosine and largest difference, aesthetic score difference).

    python benchmarks/model_frames.py                      # 2 x 30 s of 720p
    python benchmarks/model_frames.py --videos 5 --seconds 60

Results: one JSON line appended to ``benchmarks/results.jsonl`` (``--results``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import io
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import footage  # noqa: E402
from measure import DEFAULT_RESULTS, append_record, cpu_self, git_commit, peak_rss_mb  # noqa: E402

SERVER = """
import sys
from curation_assets_tests.model_fixtures import ChatServer, chat_answer
server = ChatServer(lambda s, rec: (200, chat_answer("a caption")))
server.__enter__()
print(server.base_url, flush=True)
sys.stdin.read()
"""


class Timed:
    """Thread CPU and wall seconds spent inside wrapped callables, summed."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = defaultdict(float)
        self.wall: dict[str, float] = defaultdict(float)
        self.lock = threading.Lock()

    def wrap(self, obj: Any, name: str, label: str) -> None:
        fn = getattr(obj, name)

        def timed(*args, **kwargs):
            w, c = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                with self.lock:
                    self.cpu[label] += time.thread_time() - c
                    self.wall[label] += time.perf_counter() - w

        setattr(obj, name, timed)


def psnr(a, b, peak: float) -> float:
    import numpy as np

    mse = float(np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(peak**2 / mse))


def run_mode(mode: str, videos: list[Path], work: Path, model_dir: Path, base_url: str) -> dict[str, Any]:
    from curation_assets.core.cpus import usable_cores
    from curation_assets.core.options import PipelineOptions
    from curation_assets.models.video import process_video
    from curation_assets.models import AestheticScorer, CaptionClient, CosmosEmbedder, stages

    options = PipelineOptions(input_path=str(videos[0].parent), output_path=str(work / "out"), model_dir=str(model_dir),
                              generate_embeddings="on", aesthetic_threshold=-1e9, generate_captions=True,
                              model_frames=mode)
    w0, c0 = time.perf_counter(), cpu_self()
    results = {}
    for video in videos:
        results[video.name] = process_video(str(video), video.name, lambda v=video: open(v, "rb"), options,
                                            spill_dir=str(work / f"spill_{mode}" / video.name))
    process = {"wall_s": time.perf_counter() - w0, "cpu_s": cpu_self() - c0}
    clips = [c for r in results.values() for c in r.clips if c.encoded]

    workers = usable_cores()
    scorer = AestheticScorer(model_dir=model_dir, decode_workers=workers)
    embedder = CosmosEmbedder(model_dir=model_dir, decode_workers=workers, batch_size=16)
    client = CaptionClient(base_url, "vlm", decode_workers=workers, timeout_s=30)
    model, _ = embedder.load()
    scorer.load()
    timed = Timed()
    timed.wrap(model, "get_video_embeddings", "embed")
    timed.wrap(scorer, "score_frames", "aesthetic")
    timed.wrap(client, "_post", "caption")
    steps: dict[str, Any] = {}
    out: dict[str, Any] = {}
    for label, call in (("aesthetic", lambda: stages.score_aesthetics(results, scorer)),
                        ("embed", lambda: stages.embed(results, embedder)),
                        ("caption", lambda: stages.caption(results, client, enhance=False))):
        w, c = time.perf_counter(), cpu_self()
        out[label] = call()
        wall, cpu = time.perf_counter() - w, cpu_self() - c
        errors = sum(len(a.errors) for a in out[label].values())
        steps[label] = {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "model_cpu_s": round(timed.cpu[label], 3),
                        "model_wall_s": round(timed.wall[label], 3), "clips": len(clips), "errors": errors,
                        "cpu_per_clip_s": round(cpu / len(clips), 4),
                        "cpu_per_clip_without_model_s": round((cpu - timed.cpu[label]) / len(clips), 4)}
    return {"options": mode, "process": process, "steps": steps, "results": results, "annotations": out,
            "embedder": embedder, "scorer": scorer, "client": client}


def compare(source: dict[str, Any], clip: dict[str, Any]) -> dict[str, Any]:
    """Indices, input PSNRs and output differences, clip by clip (the same spans in both modes)."""
    import numpy as np

    from curation_assets.core.model import as_bytes
    from curation_assets.core.options import PipelineOptions
    from curation_assets.core.windows import compute_windows
    from curation_assets.models import frames as F
    from curation_assets.models.aesthetics import _processor_geometry, preprocess_frames
    from curation_assets.models.frame_store import StoredFrames
    from curation_assets.models.tap import frame_request

    embedder, scorer = source["embedder"], source["scorer"]
    _, processor = embedder.load()
    _, clip_processor, _ = scorer.load()
    geometry = _processor_geometry(clip_processor)
    mean = np.asarray(geometry[2]).reshape(1, 3, 1, 1)
    std = np.asarray(geometry[3]).reshape(1, 3, 1, 1)
    request = frame_request(PipelineOptions(generate_embeddings="on", aesthetic_threshold=0.0, generate_captions=True))
    same_indices = True
    psnrs: dict[str, list[float]] = defaultdict(list)
    cosines, max_abs, score_diffs = [], [], []
    for key, res in source["results"].items():
        for c_src, c_ref in zip(res.clips, clip["results"][key].clips):
            assert c_src.uuid == c_ref.uuid
            data = as_bytes(c_src.encoded)
            stored = StoredFrames.load(c_src.model_frames)
            ts = F.frame_timestamps(data)
            windows = compute_windows(len(ts))
            try:
                emb_idx = F.embedding_indices(ts, request.embedding.num_frames)
            except F.TooFewFrames:
                emb_idx = []
            same_indices &= stored.meta["embedding"]["indices"] == emb_idx
            same_indices &= stored.meta["aesthetic"]["indices"] == F.window_indices(ts, [(0, None)], 1.0)[0].tolist()
            same_indices &= stored.meta["caption"]["indices"] == [w.tolist() for w in F.window_indices(ts, windows, 2.0)]
            # Cosmos-Embed1's input: the processor's output in each mode
            if emb_idx:
                frames, _ = stored.embedding(request.embedding)
                src_in = processor(videos=frames[None].transpose(0, 1, 4, 2, 3), return_tensors="pt")["videos"]
                ref_frames = np.stack(F.frames_for_embedding(data, request.embedding.num_frames))
                ref_in = processor(videos=ref_frames[None].transpose(0, 1, 4, 2, 3), return_tensors="pt")["videos"]
                psnrs["embedding_input"].append(psnr(src_in.numpy(), ref_in.numpy(), 1.0))
            # CLIP's input, before normalisation
            src_px = preprocess_frames(stored.aesthetic(request.aesthetic), *geometry).numpy() * std + mean
            ref_px = preprocess_frames(np.stack(F.decode_frames(data, 1.0)), *geometry).numpy() * std + mean
            psnrs["aesthetic_input"].append(psnr(src_px, ref_px, 1.0))
            # the caption images
            from PIL import Image

            from curation_assets.models.captions import encode_jpeg

            for kept, ref in zip(stored.caption_images(request.caption, windows), F.decode_windows(data, windows, 2.0)):
                for jpeg, frame in zip(kept, ref):
                    a = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
                    b = np.asarray(Image.open(io.BytesIO(encode_jpeg(frame))).convert("RGB"))
                    psnrs["caption_images"].append(psnr(a, b, 255.0))
            uid = str(c_src.uuid)
            v_src = source["annotations"]["embed"][key].values.get(uid)
            v_ref = clip["annotations"]["embed"][key].values.get(uid)
            if v_src is not None and v_ref is not None:
                cosines.append(float(np.dot(v_src, v_ref) / np.linalg.norm(v_src) / np.linalg.norm(v_ref)))
                max_abs.append(float(np.max(np.abs(v_src - v_ref))))
            s_src = source["annotations"]["aesthetic"][key].values.get(uid)
            s_ref = clip["annotations"]["aesthetic"][key].values.get(uid)
            if s_src is not None and s_ref is not None:
                score_diffs.append(abs(s_src - s_ref))

    def stats(values: list[float]) -> dict[str, float]:
        finite = [v for v in values if np.isfinite(v)]
        return {"min": round(min(values), 2), "median": round(float(np.median(finite)), 2) if finite else float("inf"),
                "n": len(values)}

    return {"indices_identical": bool(same_indices), "psnr_db": {k: stats(v) for k, v in psnrs.items()},
            "embedding_cosine_min": round(min(cosines), 6) if cosines else None,
            "embedding_max_abs_diff": round(max(max_abs), 6) if max_abs else None,
            "aesthetic_score_abs_diff_max": round(max(score_diffs), 6) if score_diffs else None,
            "clips_compared": len(cosines)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__)
    ap.add_argument("--videos", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--cache", default=str(footage.DEFAULT_CACHE))
    ap.add_argument("--results", default=str(DEFAULT_RESULTS))
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)  # a forward's CPU is then its own thread's (timed apart)
    from curation_assets_tests.model_fixtures import (
        CosmosStandinSize,
        build_clip_standin,
        build_cosmos_standin,
        write_mlp,
    )

    videos = footage.build_720p(args.videos, args.seconds, Path(args.cache))
    work = Path(tempfile.mkdtemp(prefix="model_frames_"))
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              cwd=str(HERE.parent), env={**os.environ, "PYTHONPATH": str(HERE.parent)})
    try:
        base_url = server.stdout.readline().strip()
        model_dir = work / "models"
        build_cosmos_standin(model_dir, "224p", CosmosStandinSize(
            patch_size=14, vision_width=384, vision_layers=6, vision_heads=6, vision_mlp_dim=1536, qformer_width=256,
            qformer_layers=2, qformer_heads=4, qformer_mlp_dim=1024, num_query_tokens=16))
        build_clip_standin(model_dir)
        write_mlp(model_dir)
        record: dict[str, Any] = {
            "benchmark": "model_frames", "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "commit": git_commit(), "cpus": os.cpu_count(), "machine": os.uname().nodename,
            "load_at_start": list(os.getloadavg()),
            "footage": {"videos": [v.name for v in videos], "seconds_each": args.seconds},
        }
        print(f"{len(videos)} videos of {args.seconds:g} s at 720p; {os.cpu_count()} CPUs, load {record['load_at_start']}",
              flush=True)
        modes = {}
        for mode in ("clip", "source"):
            modes[mode] = run_mode(mode, videos, work / mode, model_dir, base_url)
            m = modes[mode]
            print(f"\n== model_frames={mode} ==")
            print(f"  process_video (transcode{' + frame tap' if mode == 'source' else ''}): "
                  f"wall {m['process']['wall_s']:.1f} s, CPU {m['process']['cpu_s']:.1f} s")
            for label, st in m["steps"].items():
                print(f"  {label:9s} {st['clips']} clips: wall {st['wall_s']:6.2f} s, CPU {st['cpu_s']:6.2f} s = "
                      f"{st['cpu_per_clip_s'] * 1000:7.1f} ms per clip, of which the model {st['model_cpu_s']:.2f} s; "
                      f"without it {st['cpu_per_clip_without_model_s'] * 1000:7.1f} ms per clip"
                      + (f"  ({st['errors']} clip errors)" if st["errors"] else ""), flush=True)
        diff = compare(modes["source"], modes["clip"])
        src, ref = modes["source"], modes["clip"]
        record["modes"] = {k: {"process": v["process"], "steps": v["steps"]} for k, v in modes.items()}
        record["comparison"] = diff
        record["tap_process_cpu_ratio"] = round(src["process"]["cpu_s"] / ref["process"]["cpu_s"], 3)
        record["steps_cpu_ratio_without_model"] = {
            k: round(src["steps"][k]["cpu_per_clip_without_model_s"] / max(1e-9, ref["steps"][k]["cpu_per_clip_without_model_s"]), 4)
            for k in src["steps"]}
        print("\n== source against clip ==")
        print(f"  frame indices identical: {diff['indices_identical']}")
        for k, v in diff["psnr_db"].items():
            print(f"  PSNR {k:16s} min {v['min']:.2f} dB, median {v['median']:.2f} dB over {v['n']}")
        print(f"  embeddings: cosine >= {diff['embedding_cosine_min']}, largest difference {diff['embedding_max_abs_diff']} "
              f"({diff['clips_compared']} clips); aesthetic scores differ by at most {diff['aesthetic_score_abs_diff_max']}")
        print(f"  process_video CPU source / clip: x{record['tap_process_cpu_ratio']}")
        print("  model steps' CPU per clip without the model, source / clip: " +
              ", ".join(f"{k} x{v}" for k, v in record["steps_cpu_ratio_without_model"].items()))
        record["peak_rss_mb"] = round(peak_rss_mb(), 1)
        append_record(args.results, record)
    finally:
        server.stdin.close()
        server.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
