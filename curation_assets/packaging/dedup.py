"""Semantic dedup of clips from their embeddings: SemDeDup as NeMo Curator runs it.

NeMo Curator's ``SemanticDeduplicationWorkflow`` (``stages/deduplication/semantic``): k-means on
the L2-normalised embeddings; per clip its centroid's cosine distance ``1 - x . c/|c|``; within
each cluster the clips ranked (``which_to_keep="hard"``, its default: by that distance
descending, then id descending, so outliers come first and are kept; ``"easy"``: ascending;
``"random"``); each clip's ``cosine_sim_score`` is its maximum cosine similarity to the clips
ranked before it (0 for the first, as NeMo's upper-triangular mask gives) and ``max_id`` that
clip; a clip is a duplicate when ``cosine_sim_score >= 1 - eps``. The pairwise step works on
column batches (``pairwise_batch_size``) so a cluster never needs its full similarity matrix.

torch on the CPU, or on CUDA when available (``device="auto"``).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..core import storage
from ..core.devices import checked_device

DEDUP_DIR = "semdedup"
WHICH_TO_KEEP = ("hard", "easy", "random")
#: Where ``package shards --exclude-duplicates`` leaves the duplicates out: "tars" writes shards
#: without them (a new eps rewrites the shards), "split" lists them as ``exclude`` entries of
#: Energon's ``split.yaml`` (``packaging/energon.py``), so a new eps rewrites only that file.
EXCLUDE_MODES = ("tars", "split")
DEFAULT_EPS_GRID = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)

PAIRWISE_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("max_id", pa.string()),
    ("cosine_sim_score", pa.float32()),
    ("centroid", pa.int32()),
    ("cosine_dist_to_cent", pa.float32()),
])
DUPLICATES_SCHEMA = pa.schema([("id", pa.string()), ("max_id", pa.string()), ("cosine_sim_score", pa.float32())])
EPS_TABLE_SCHEMA = pa.schema([("eps", pa.float64()), ("threshold", pa.float64()), ("num_duplicates", pa.int64()),
                              ("fraction", pa.float64()), ("num_kept", pa.int64())])


@dataclass(frozen=True)
class DedupSettings:
    """``n_clusters`` 0 picks ``round(sqrt(n))`` (NeMo asks for it; it recommends >= 1000 at scale)."""

    n_clusters: int = 0
    max_iter: int = 300
    tol: float = 1e-4
    random_state: int = 42
    which_to_keep: str = "hard"
    pairwise_batch_size: int = 1024
    eps: float = 0.01
    device: str = "auto"
    kmeans_batch_size: int = 65536
    fit_fraction: float | None = None  # NeMo's fit_data_fraction: fit the centroids on this share

    def __post_init__(self) -> None:
        problems = []
        if self.n_clusters < 0:
            problems.append(f"n_clusters={self.n_clusters} (0 for automatic, or a count)")
        if self.max_iter < 1:
            problems.append(f"max_iter={self.max_iter} (at least 1)")
        if self.which_to_keep not in WHICH_TO_KEEP:
            problems.append(f"which_to_keep={self.which_to_keep!r} (one of {', '.join(WHICH_TO_KEEP)})")
        if self.pairwise_batch_size < 1 or self.kmeans_batch_size < 1:
            problems.append("batch sizes must be at least 1")
        if not 0.0 < self.eps < 1.0:
            problems.append(f"eps={self.eps} (0 < eps < 1)")
        if self.fit_fraction is not None and not 0.0 < self.fit_fraction <= 1.0:
            problems.append(f"fit_fraction={self.fit_fraction} (0 < f <= 1)")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            problems.append(f"device={self.device!r} (auto, cpu, cuda or cuda:N)")
        if problems:
            raise ValueError("invalid dedup settings: " + "; ".join(problems))


# ---------------------------------------------------------------------------------------------
# k-means


def _nearest(x, centroids, batch: int):
    """Index of each row's nearest centroid (squared L2) and that squared distance."""
    import torch

    c_sq = (centroids * centroids).sum(1)
    labels = torch.empty(x.shape[0], dtype=torch.int64, device=x.device)
    dists = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    for s in range(0, x.shape[0], batch):
        xb = x[s:s + batch]
        # |x - c|^2 = |x|^2 - 2 x.c + |c|^2, the last two in one fused multiply-add
        d = torch.addmm(c_sq[None, :], xb, centroids.T, beta=1.0, alpha=-2.0)
        best, idx = d.min(1)
        labels[s:s + batch] = idx
        dists[s:s + batch] = (best + (xb * xb).sum(1)).clamp_min_(0)
    return labels, dists


def _kmeans_pp(x, k: int, gen, batch: int, sample: int):
    """k-means++ seeding on a random sample of the rows (at most ``sample``)."""
    import torch

    n = x.shape[0]
    pool = x if n <= sample else x[torch.randperm(n, generator=gen, device="cpu")[:sample].to(x.device)]
    m = pool.shape[0]
    pool_sq = (pool * pool).sum(1)
    centroids = torch.empty((k, x.shape[1]), dtype=x.dtype, device=x.device)

    def sq_dist_to(i: int):
        return (pool_sq - 2.0 * (pool @ pool[i]) + pool_sq[i]).clamp_min_(0)

    first = int(torch.randint(m, (1,), generator=gen).item())
    centroids[0] = pool[first]
    closest = sq_dist_to(first)
    for i in range(1, k):
        probs = closest.double().cpu()
        total = float(probs.sum())
        pick = int(torch.multinomial(probs / total, 1, generator=gen).item()) if total > 0 else int(
            torch.randint(m, (1,), generator=gen).item())
        centroids[i] = pool[pick]
        closest = torch.minimum(closest, sq_dist_to(pick))
    return centroids


def kmeans(x, k: int, *, max_iter: int = 300, tol: float = 1e-4, seed: int = 42, batch: int = 65536):
    """Lloyd's k-means on the rows of ``x`` (a torch tensor): ``(centroids, labels, iterations)``.

    Seeded with k-means++ on a sample; stops when the inertia improves by less than ``tol``
    (relative) or after ``max_iter`` iterations. An emptied cluster keeps its centroid.
    """
    import torch

    gen = torch.Generator(device="cpu").manual_seed(seed)
    centroids = _kmeans_pp(x, k, gen, batch, sample=max(50 * k, 10_000))
    previous = math.inf
    iterations = 0
    for iterations in range(1, max_iter + 1):  # noqa: B007 - read after the loop (how many ran)
        labels, dists = _nearest(x, centroids, batch)
        inertia = float(dists.double().sum())
        sums = torch.zeros_like(centroids).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=k).to(x.dtype)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
        if previous < math.inf and previous - inertia <= tol * previous:
            break
        previous = inertia
    labels, _ = _nearest(x, centroids, batch)
    return centroids, labels, iterations


# ---------------------------------------------------------------------------------------------
# Ranking and the pairwise step


def rank_cluster(ids: np.ndarray, dist: np.ndarray, which_to_keep: str, seed: int) -> np.ndarray:
    """Positions of one cluster's members in NeMo's order (the first ranked is always kept)."""
    if which_to_keep == "random":
        return np.random.default_rng(seed).permutation(len(ids))
    # "hard": distance descending then id descending; "easy": both ascending (NeMo sorts by
    # [cosine_dist_to_cent, id] with the same direction for both)
    order = np.lexsort((ids, dist))
    return order[::-1] if which_to_keep == "hard" else order


def max_similarity_to_earlier(x, batch_size: int):
    """For each row i of the (ranked, normalised) ``x``: max over j < i of ``x_i . x_j``, clamped
    at 0 (NeMo's upper-triangular mask zeroes the rest), and that j (i itself when none is > 0)."""
    import torch

    n = x.shape[0]
    best = torch.zeros(n, dtype=torch.float32, device=x.device)
    arg = torch.arange(n, device=x.device)
    for s in range(0, n, batch_size):
        e = min(s + batch_size, n)
        sim = x[:e] @ x[s:e].T  # rows 0..e-1 against columns s..e-1
        sim.triu_(1 - s)  # keeps row j < column s + c: the items ranked before (NeMo's mask)
        value, index = sim.max(0)
        best[s:e] = value.clamp_min(0).float()
        arg[s:e] = torch.where(value > 0, index, arg[s:e])
    return best, arg


@dataclass
class DedupResult:
    pairwise: pa.Table  # every clip: id, max_id, cosine_sim_score, centroid, cosine_dist_to_cent
    n_clusters: int
    device: str
    settings: dict[str, Any]

    def duplicates(self, eps: float) -> pa.Table:
        """NeMo's duplicates at ``eps``: the clips with ``cosine_sim_score >= 1 - eps``, by id."""
        mask = pc.greater_equal(pc.cast(self.pairwise.column("cosine_sim_score"), pa.float64()), 1.0 - eps)
        dup = self.pairwise.filter(mask).select(DUPLICATES_SCHEMA.names)
        return dup.sort_by("id")

    def eps_table(self, grid: Sequence[float] = DEFAULT_EPS_GRID) -> pa.Table:
        """Duplicates per eps, to choose eps from the distribution (as NeMo's docs advise)."""
        scores = self.pairwise.column("cosine_sim_score").to_numpy().astype(np.float64)
        n = len(scores)
        rows = []
        for eps in sorted(grid):
            k = int((scores >= 1.0 - eps).sum())
            rows.append({"eps": float(eps), "threshold": 1.0 - eps, "num_duplicates": k,
                         "fraction": k / n if n else 0.0, "num_kept": n - k})
        return pa.Table.from_pylist(rows, schema=EPS_TABLE_SCHEMA)


def semdedup(ids: Sequence[str], embeddings: np.ndarray, settings: DedupSettings = DedupSettings()) -> DedupResult:
    """SemDeDup over ``embeddings`` (n, d) whose rows belong to ``ids`` (unique)."""
    import torch

    ids_arr = np.asarray(list(ids), dtype=object)
    n = len(ids_arr)
    if embeddings.ndim != 2 or embeddings.shape[0] != n:
        raise ValueError(f"embeddings of shape {embeddings.shape} for {n} ids")
    if len(set(ids_arr.tolist())) != n:
        raise ValueError("ids are not unique")
    device = str(checked_device(settings.device))
    record: dict[str, Any] = {**asdict(settings), "device": device}
    if n == 0:
        return DedupResult(PAIRWISE_SCHEMA.empty_table(), 0, device, record)
    x = torch.as_tensor(np.ascontiguousarray(embeddings, dtype=np.float32)).to(device)
    norms = x.norm(dim=1, keepdim=True)
    if bool((norms == 0).any()):
        raise ValueError("an embedding is all zeros")
    x = x / norms
    k = settings.n_clusters or max(1, round(math.sqrt(n)))
    k = min(k, n)
    fit = x
    if settings.fit_fraction is not None and settings.fit_fraction < 1.0:
        gen = torch.Generator(device="cpu").manual_seed(settings.random_state)
        take = max(k, int(n * settings.fit_fraction))
        fit = x[torch.randperm(n, generator=gen)[:take].to(x.device)]
    centroids, labels, iterations = kmeans(fit, k, max_iter=settings.max_iter, tol=settings.tol,
                                           seed=settings.random_state, batch=settings.kmeans_batch_size)
    if fit is not x:
        labels, _ = _nearest(x, centroids, settings.kmeans_batch_size)
    unit_c = centroids / centroids.norm(dim=1, keepdim=True).clamp_min(1e-12)
    dist = (1.0 - (x * unit_c[labels]).sum(1)).float()

    labels_np = labels.cpu().numpy()
    dist_np = dist.cpu().numpy()
    order = np.argsort(labels_np, kind="stable")
    bounds = np.searchsorted(labels_np[order], np.arange(k + 1))
    out_id, out_max, out_score, out_cent, out_dist = [], [], [], [], []
    for c in range(k):
        members = order[bounds[c]:bounds[c + 1]]
        if len(members) == 0:
            continue
        ranked = members[rank_cluster(ids_arr[members].astype(str), dist_np[members], settings.which_to_keep,
                                      settings.random_state + c)]
        score, arg = max_similarity_to_earlier(x[torch.as_tensor(ranked, device=x.device)],
                                               settings.pairwise_batch_size)
        arg_np = arg.cpu().numpy()
        out_id.append(ids_arr[ranked])
        out_max.append(ids_arr[ranked[arg_np]])
        out_score.append(score.cpu().numpy())
        out_cent.append(np.full(len(ranked), c, dtype=np.int32))
        out_dist.append(dist_np[ranked])
    record["kmeans_iterations"] = iterations
    table = pa.Table.from_arrays(
        [pa.array(np.concatenate(out_id).tolist(), pa.string()),
         pa.array(np.concatenate(out_max).tolist(), pa.string()),
         pa.array(np.concatenate(out_score), pa.float32()), pa.array(np.concatenate(out_cent), pa.int32()),
         pa.array(np.concatenate(out_dist), pa.float32())],
        schema=PAIRWISE_SCHEMA,
    )
    return DedupResult(table, k, device, record)


# ---------------------------------------------------------------------------------------------
# On the output


def dedup_dir(output_path: str) -> str:
    return storage.join(output_path, DEDUP_DIR)


def _parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


class NoEmbeddingsError(ValueError):
    """Dedup was asked for where no clip has an embedding: a result of "0 of 0 duplicates" would
    read as "no duplicates", so it is refused, naming what is missing."""


def missing_embeddings_message(num_clips: int, num_passed: int) -> str:
    """Why there is nothing to dedup, naming what is missing."""
    if num_clips == 0:
        return ("no clips in the manifest: nothing to deduplicate (write the manifest first: "
                "`curation-assets package manifest`)")
    return (f"no embeddings: none of the {num_passed} passed clip(s) of the manifest ({num_clips} clips in all) "
            f"has a ce1_embd/ embedding, so SemDeDup has nothing to compare (the curation ran with "
            f"generate_embeddings=off, or its embedding model was absent); curate with generate_embeddings=on, "
            f"then write the manifest again")


def run_semdedup(output_path: str, settings: DedupSettings = DedupSettings(),
                 grid: Sequence[float] = DEFAULT_EPS_GRID, manifest: pa.Table | None = None) -> dict[str, Any]:
    """SemDeDup over the manifest's embeddings (passed clips that have one); writes, whole, under
    ``<output>/semdedup/``: ``pairwise.parquet`` (every clip's ``max_id`` and ``cosine_sim_score``),
    ``duplicates.parquet`` (at ``settings.eps``), ``eps_table.parquet`` and ``summary.json``.

    ``manifest``: the rows to use (with ``clip_uuid``, ``embedding``, ``passed``); default: the
    whole manifest folder. Raises :class:`NoEmbeddingsError` when no passed clip has an embedding;
    ``num_without_embedding`` in the summary counts the passed clips left out for lacking one."""
    from .manifest import read_manifest

    columns = ["clip_uuid", "embedding", "passed"]
    table = read_manifest(output_path, columns=columns) if manifest is None else manifest.select(columns)
    num_rows = table.num_rows
    table = table.filter(table.column("passed"))
    num_passed = table.num_rows
    table = table.filter(pc.is_valid(table.column("embedding")))
    if table.num_rows == 0:
        raise NoEmbeddingsError(missing_embeddings_message(num_rows, num_passed))
    ids = table.column("clip_uuid").to_pylist()
    vectors = [np.asarray(v, np.float32) for v in table.column("embedding").to_numpy(zero_copy_only=False)]
    dims = {len(v) for v in vectors}
    if len(dims) > 1:
        raise ValueError(f"embeddings of different sizes in the manifest: {sorted(dims)} (mixed models?)")
    emb = np.stack(vectors) if vectors else np.zeros((0, 1), np.float32)
    result = semdedup(ids, emb, settings)
    folder = dedup_dir(output_path)
    duplicates = result.duplicates(settings.eps)
    eps_table = result.eps_table(sorted(set(grid) | {settings.eps}))
    summary = {"num_clips": len(ids), "num_without_embedding": num_passed - len(ids),
               "n_clusters": result.n_clusters, "device": result.device,
               "eps": settings.eps, "num_duplicates": duplicates.num_rows, "settings": result.settings,
               "eps_table": eps_table.to_pylist()}
    storage.write_bytes_atomic(storage.join(folder, "pairwise.parquet"), _parquet_bytes(result.pairwise))
    storage.write_bytes_atomic(storage.join(folder, "duplicates.parquet"), _parquet_bytes(duplicates))
    storage.write_bytes_atomic(storage.join(folder, "eps_table.parquet"), _parquet_bytes(eps_table))
    storage.write_bytes_atomic(storage.join(folder, "summary.json"), (json.dumps(summary, indent=2) + "\n").encode())
    return summary


def load_duplicate_ids(output_path: str, eps: float | None = None) -> frozenset[str]:
    """Clip ids to leave out of the shards: those of ``duplicates.parquet``, or, with ``eps``, the
    pairwise scores at that eps."""
    from ..core.documents import is_canonical_uuid

    folder = dedup_dir(output_path)
    if eps is None:
        table = pq.read_table(io.BytesIO(storage.read_bytes(storage.join(folder, "duplicates.parquet"))),
                              columns=["id"])
    else:
        pairwise = pq.read_table(io.BytesIO(storage.read_bytes(storage.join(folder, "pairwise.parquet"))))
        table = pairwise.filter(pc.greater_equal(pc.cast(pairwise.column("cosine_sim_score"), pa.float64()), 1.0 - eps))
    return frozenset(i for i in table.column("id").to_pylist() if is_canonical_uuid(i))


__all__ = [
    "DEDUP_DIR",
    "DEFAULT_EPS_GRID",
    "DUPLICATES_SCHEMA",
    "DedupResult",
    "DedupSettings",
    "EXCLUDE_MODES",
    "NoEmbeddingsError",
    "PAIRWISE_SCHEMA",
    "kmeans",
    "load_duplicate_ids",
    "max_similarity_to_earlier",
    "missing_embeddings_message",
    "rank_cluster",
    "run_semdedup",
    "semdedup",
]
