"""A new dedup threshold with the duplicates left out of the tars vs listed in energon's
``split.yaml`` (``package shards --dedup-exclude-mode tars|split``): time and bytes written.

Prints figures; not a test. One real video is curated and cloned into ``--videos`` videos
(``package_plan_benchmark.template`` / ``clone``: real clips, metas and documents, the mp4s hard
links), the manifest written by ``package manifest``; SemDeDup (``dedup.run_semdedup``) runs on
synthetic embeddings given to the manifest's clips (random topic centres, ``--dup-fraction`` of
the clips planted again as a copy plus noise of varying size, so a larger eps flags more). Then,
for each mode, in its own shard folder: ``package shards --exclude-duplicates`` at ``--eps1``
(the first build, energon prepared), then again at ``--eps2``: that second run is timed, and
every file it created or changed under the shard folder counted (size, from mtimes).

    python benchmarks/dedup_exclude_benchmark.py [--videos 300] [--eps1 0.01] [--eps2 0.05]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from measure import DEFAULT_RESULTS, append_record, git_commit  # noqa: E402


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in folder.rglob("*") if p.is_file()}


def embeddings(n: int, dup_fraction: float, seed: int = 0) -> np.ndarray:
    """Points around 64 topic centres in 256-d; a ``dup_fraction`` of them replaced by a copy of
    another point plus noise of a random scale (cosine about 0.93 to 0.9999 to that point)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(64, 256))
    x = centres[rng.integers(0, 64, n)] + rng.normal(scale=1.0, size=(n, 256))
    dups = rng.choice(n, size=int(n * dup_fraction), replace=False)
    originals = rng.choice(np.setdiff1d(np.arange(n), dups), size=len(dups))
    scales = rng.uniform(0.01, 0.3, size=(len(dups), 1))
    x[dups] = x[originals] + rng.normal(size=(len(dups), 256)) * scales
    return x.astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=300)
    parser.add_argument("--dup-fraction", type=float, default=0.1)
    parser.add_argument("--eps1", type=float, default=0.01)
    parser.add_argument("--eps2", type=float, default=0.05)
    parser.add_argument("--num-groups", type=int, default=16)
    parser.add_argument("--results", default=str(DEFAULT_RESULTS))
    args = parser.parse_args()

    import pyarrow as pa
    from package_plan_benchmark import clone, template

    from curation_assets.cli import main as cli_main
    from curation_assets.packaging import dedup, manifest

    root = Path(tempfile.mkdtemp(prefix="dedup-exclude-"))
    try:
        videos, out, rel = template(root)
        clone(videos, out, rel, args.videos - 1)
        with redirect_stdout(io.StringIO()):
            assert cli_main(["package", "manifest", "--output-path", str(out)]) == 0
        table = manifest.read_manifest(str(out), columns=["clip_uuid", "passed"])
        emb = embeddings(table.num_rows, args.dup_fraction)
        table = table.append_column("embedding", pa.array(list(emb), type=pa.list_(pa.float32())))
        dedup.run_semdedup(str(out), dedup.DedupSettings(eps=args.eps1), manifest=table)
        counts = [len(dedup.load_duplicate_ids(str(out), eps)) for eps in (args.eps1, args.eps2)]
        print(f"{args.videos} videos, {table.num_rows} clips; duplicates: {counts[0]} at eps {args.eps1}, "
              f"{counts[1]} at eps {args.eps2}")
        figures: dict = {}
        for mode in dedup.EXCLUDE_MODES:
            dest = out / "webdataset" / mode

            def run(eps: float, mode: str = mode) -> str:
                text = io.StringIO()
                with redirect_stdout(text):
                    rc = cli_main(["package", "shards", "--output-path", str(out), "--name", mode,
                                   "--num-groups", str(args.num_groups), "--exclude-duplicates",
                                   "--dedup-exclude-mode", mode, "--dedup-eps", str(eps)])
                if rc != 0:
                    sys.exit(f"package shards ({mode}, eps {eps}) failed:\n{text.getvalue()}")
                return text.getvalue()

            start = time.perf_counter()
            run(args.eps1)
            first = time.perf_counter() - start
            before = snapshot(dest)
            start = time.perf_counter()
            run(args.eps2)
            wall = time.perf_counter() - start
            after = snapshot(dest)
            changed = {k: v for k, v in after.items() if before.get(k) != v}
            total = sum(size for _, size in after.values())
            figures[mode] = {"first_build_s": round(first, 2), "threshold_change_s": round(wall, 3),
                             "bytes_written": sum(size for _, size in changed.values()),
                             "files_written": len(changed), "folder_bytes": total}
            print(f"{mode:<6} first build {first:7.2f} s; threshold change {wall:7.3f} s, "
                  f"{figures[mode]['bytes_written'] / 1e6:10.3f} MB in {len(changed)} files "
                  f"(folder {total / 1e6:.1f} MB)")
        t, s = figures["tars"], figures["split"]
        ratios = {"time": round(t["threshold_change_s"] / s["threshold_change_s"], 1),
                  "bytes": round(t["bytes_written"] / max(1, s["bytes_written"]), 1)}
        print(f"tars / split for a threshold change: {ratios['time']}x the time, {ratios['bytes']}x the bytes")
        append_record(args.results, {"benchmark": "dedup_exclude", "commit": git_commit(), "videos": args.videos,
                                     "clips": table.num_rows, "duplicates": counts, "eps": [args.eps1, args.eps2],
                                     "cpus": os.cpu_count(), "figures": figures, "ratios": ratios})
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
