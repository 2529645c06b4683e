"""SemDeDup (``packaging.dedup.semdedup``) on synthetic embeddings with planted duplicates.

Prints figures; not a test. Embeddings: ``--topics`` random unit centres in 256-d, each point a
centre plus Gaussian noise (cosine about 0.8 between two points of a topic: near but distinct),
and ``--dup-fraction`` of them planted again as a copy plus small noise (cosine 0.97 to 0.995 to
its original). A planted pair is found when one of the two is flagged with the other as its
``max_id``; precision is the share of flagged clips that belong to a planted pair.

The baseline, in the same run, is the exact search SemDeDup approximates: every clip's maximum
cosine similarity to every earlier clip (all pairs, no clustering), on a sample of
``--baseline-size`` points (all pairs of a million would take hours here); SemDeDup runs on the
same sample, giving a time ratio and SemDeDup's recall against the exact answer. Each size runs
in a fresh process so its peak RSS is its own.

    python benchmarks/dedup_benchmark.py [--size 1000000] [--baseline-size 50000] [--n-clusters 1000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from measure import DEFAULT_RESULTS, append_record, cpu_self, git_commit, peak_rss_mb  # noqa: E402

DIM = 256


def make_data(n: int, topics: int, dup_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(embeddings (n, 256) float32, planted (p, 2) [original, copy] row indices)``."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((topics, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    p = int(n * dup_fraction)
    base = n - p
    x = np.empty((n, DIM), np.float32)
    spread = np.float32(np.sqrt(0.25 / DIM))
    for s in range(0, base, 100_000):
        e = min(s + 100_000, base)
        x[s:e] = centres[rng.integers(0, topics, e - s)] + rng.standard_normal((e - s, DIM), np.float32) * spread
    originals = rng.choice(base, p, replace=False)
    noise = np.sqrt(rng.uniform(0.01, 0.06, p) / DIM).astype(np.float32)[:, None]  # cos 0.97 .. 0.995
    x[base:] = x[originals] + rng.standard_normal((p, DIM), np.float32) * noise
    order = rng.permutation(n)  # copies anywhere, not all at the end
    x = x[order]
    where = np.empty(n, np.int64)
    where[order] = np.arange(n)
    planted = np.stack([where[originals], where[base + np.arange(p)]], axis=1)
    return x, planted


def score(ids: list[str], planted: np.ndarray, dup_id: list[str], dup_max: list[str]) -> dict:
    flagged = dict(zip(dup_id, dup_max))
    found = sum(1 for a, b in planted if flagged.get(ids[a]) == ids[b] or flagged.get(ids[b]) == ids[a])
    members = {ids[i] for pair in planted for i in pair}
    correct = sum(1 for i in flagged if i in members)
    return {"recall": found / len(planted) if len(planted) else 1.0,
            "precision": correct / len(flagged) if flagged else 1.0, "flagged": len(flagged)}


def exact(x: np.ndarray, eps: float) -> set[frozenset[int]]:
    """The pairs (row, its most similar earlier row) with cosine at least ``1 - eps``, over all
    pairs of rows: what SemDeDup finds without clustering."""
    import torch

    from curation_assets.packaging.dedup import max_similarity_to_earlier

    t = torch.as_tensor(x / np.linalg.norm(x, axis=1, keepdims=True))
    best, arg = max_similarity_to_earlier(t, 2048)
    rows = np.flatnonzero(best.numpy().astype(np.float64) >= 1 - eps)
    return {frozenset((int(i), int(arg[i]))) for i in rows}


def one(args: argparse.Namespace) -> dict:
    """One size, in this process: what the parent prints and records."""
    from curation_assets.packaging.dedup import DedupSettings, semdedup

    x, planted = make_data(args.one, args.topics, args.dup_fraction, args.seed)
    ids = [f"{i:08d}" for i in range(len(x))]
    settings = DedupSettings(n_clusters=args.n_clusters if args.one >= 100_000 else 0, eps=args.eps,
                             max_iter=args.max_iter, device="cpu")
    rss_data = peak_rss_mb()
    cpu0, t0 = cpu_self(), time.perf_counter()
    result = semdedup(ids, x, settings)
    wall, cpu = time.perf_counter() - t0, cpu_self() - cpu0
    dups = result.duplicates(args.eps)
    out = {"size": args.one, "n_clusters": result.n_clusters, "kmeans_iterations": result.settings["kmeans_iterations"],
           "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "peak_rss_mb": round(peak_rss_mb(), 1),
           "data_rss_mb": round(rss_data, 1), "planted_pairs": int(len(planted)),
           **score(ids, planted, dups.column("id").to_pylist(), dups.column("max_id").to_pylist()),
           "eps_table": result.eps_table().to_pylist()}
    if args.exact:
        t0 = time.perf_counter()
        truth = exact(x, args.eps)
        out["exact_wall_s"] = round(time.perf_counter() - t0, 2)
        found = {frozenset((int(a), int(b))) for a, b in zip(dups.column("id").to_pylist(),
                                                               dups.column("max_id").to_pylist())}
        out["recall_vs_exact"] = len(found & truth) / len(truth) if truth else 1.0
        out["exact_flagged"] = len(truth)
    return out


def run_child(size: int, args: argparse.Namespace, exact_too: bool) -> dict:
    cmd = [sys.executable, __file__, "--one", str(size), "--topics", str(args.topics), "--dup-fraction",
           str(args.dup_fraction), "--n-clusters", str(args.n_clusters), "--eps", str(args.eps), "--max-iter",
           str(args.max_iter), "--seed", str(args.seed)] + (["--exact"] if exact_too else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--baseline-size", type=int, default=50_000)
    parser.add_argument("--topics", type=int, default=2000)
    parser.add_argument("--dup-fraction", type=float, default=0.01)
    parser.add_argument("--n-clusters", type=int, default=1000)
    parser.add_argument("--eps", type=float, default=0.05)
    parser.add_argument("--max-iter", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", default=str(DEFAULT_RESULTS))
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--exact", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args)))
        return
    import torch

    small = run_child(args.baseline_size, args, exact_too=True)
    print(f"{args.baseline_size} embeddings: SemDeDup {small['wall_s']} s ({small['n_clusters']} clusters, "
          f"{small['kmeans_iterations']} k-means iterations), exact all-pairs {small['exact_wall_s']} s: "
          f"ratio {small['wall_s'] / small['exact_wall_s']:.3f}; recall vs exact {small['recall_vs_exact']:.4f}, "
          f"planted recall {small['recall']:.4f}, precision {small['precision']:.4f}")
    big = run_child(args.size, args, exact_too=False)
    print(f"{args.size} embeddings ({big['planted_pairs']} planted pairs): {big['wall_s']} s wall, {big['cpu_s']} s CPU, "
          f"peak RSS {big['peak_rss_mb']} MB (the embeddings alone: {big['data_rss_mb']} MB), "
          f"{big['n_clusters']} clusters, {big['kmeans_iterations']} k-means iterations")
    print(f"  eps={args.eps}: recall {big['recall']:.4f}, precision {big['precision']:.4f} ({big['flagged']} flagged)")
    print("  eps       duplicates  fraction")
    for row in big["eps_table"]:
        print(f"  {row['eps']:<9g} {row['num_duplicates']:>10}  {row['fraction']:.4f}")
    append_record(args.results, {
        "benchmark": "dedup", "commit": git_commit(), "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "threads": torch.get_num_threads(), "eps": args.eps, "topics": args.topics,
        "dup_fraction": args.dup_fraction, "baseline": small, "large": big,
    })


if __name__ == "__main__":
    main()
