"""SemDeDup: planted duplicates among real clips (the same clip re-encoded, a slightly cropped
copy) are found and distinct clips are not flagged; the batched pairwise step equals a brute-force
reading of NeMo Curator's rule; ranking keeps what NeMo keeps.

The clip embeddings here are a fixed function of the decoded frames (8 frames, 12x12 RGB, mean
removed), not the Cosmos-Embed1 stand-in: its random weights map every clip to nearly the same
vector, so a check on it could not tell duplicates from distinct clips. A frame embedding is
near 1 for a re-encode or a small crop and well below for different content, which is what the
algorithm needs to be tested on.
"""

from __future__ import annotations

import io
import uuid

import av
import numpy as np
import pytest

from curation_assets.packaging.dedup import (
    DedupSettings,
    max_similarity_to_earlier,
    rank_cluster,
    semdedup,
)

from .model_fixtures import all_frames, make_clip
from .video_factory import make_video

PALETTE = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40), (40, 200, 200), (200, 40, 200)]


def frame_embedding(clip: bytes) -> np.ndarray:
    frames = all_frames(clip)
    picks = np.linspace(0, len(frames) - 1, 8).round().astype(int)
    small = []
    for i in picks:
        img = av.VideoFrame.from_ndarray(frames[i], format="rgb24").reformat(width=12, height=12,
                                                                             interpolation="AREA")
        small.append(img.to_ndarray().astype(np.float32))
    v = np.concatenate([s.reshape(-1) for s in small])
    return v - v.mean()


def encode(frames: list[np.ndarray], crf: str, fps: int = 24) -> bytes:
    buf = io.BytesIO()
    h, w, _ = frames[0].shape
    with av.open(buf, mode="w", format="mp4") as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"crf": crf, "preset": "ultrafast"}
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return buf.getvalue()


def crop_and_rescale(frames: list[np.ndarray], border: float = 0.04) -> list[np.ndarray]:
    h, w, _ = frames[0].shape
    dy, dx = int(h * border), int(w * border)
    out = []
    for f in frames:
        img = av.VideoFrame.from_ndarray(np.ascontiguousarray(f[dy:h - dy, dx:w - dx]), format="rgb24")
        out.append(img.reformat(width=w, height=h, interpolation="BICUBIC").to_ndarray())
    return out


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("dedup-clips")
    out = {f"colours{o}": make_clip(seconds=3, color_fn=lambda k, o=o: PALETTE[(k * (o + 1) + o) % 6], seed=o)
           for o in range(3)}
    for name, kw in {"gradient": {}, "cuts": {"scene_cut_every": 1.0}}.items():
        out[name] = make_video(folder / f"{name}.mp4", width=128, height=128, fps=24, seconds=3, audio=False,
                               **kw).read_bytes()
    out["colours0-reencoded"] = encode(all_frames(out["colours0"]), crf="32")
    out["gradient-cropped"] = encode(crop_and_rescale(all_frames(out["gradient"])), crf="18")
    return out


PLANTED = {("colours0", "colours0-reencoded"), ("gradient", "gradient-cropped")}


def test_planted_duplicates_are_found_and_distinct_clips_are_not(clips):
    names = sorted(clips)
    ids = [str(uuid.uuid5(uuid.NAMESPACE_URL, n)) for n in names]
    name_of = dict(zip(ids, names))
    emb = np.stack([frame_embedding(clips[n]) for n in names])
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sims = unit @ unit.T
    planted = {tuple(sorted(p)) for p in PLANTED}
    pair_sims = {tuple(sorted((a, b))): float(sims[i, j]) for i, a in enumerate(names) for j, b in enumerate(names) if i < j}
    lowest_planted = min(s for p, s in pair_sims.items() if p in planted)
    highest_distinct = max(s for p, s in pair_sims.items() if p not in planted)
    assert lowest_planted > 0.95 and highest_distinct < 0.9  # the embedding separates them
    eps = 1 - (lowest_planted + highest_distinct) / 2

    for keep in ("hard", "easy"):
        result = semdedup(ids, emb, DedupSettings(n_clusters=3, eps=eps, which_to_keep=keep))
        dup = {name_of[r["id"]]: name_of[r["max_id"]] for r in result.duplicates(eps).to_pylist()}
        assert len(dup) == 2
        assert {tuple(sorted(p)) for p in dup.items()} == planted  # one of each pair, pointing at the other
        table = result.eps_table([0.001, eps, 0.5])
        counts = table.column("num_duplicates").to_pylist()
        assert counts[1] == 2 and counts == sorted(counts)


def brute_force(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NeMo's rule read literally: for the i-th ranked item, max over j < i of x_i . x_j (0 and
    itself when there is none above 0)."""
    n = len(x)
    best = np.zeros(n, np.float32)
    arg = np.arange(n)
    for i in range(n):
        for j in range(i):
            s = float(x[i] @ x[j])
            if s > best[i]:
                best[i], arg[i] = s, j
    return best, arg


def test_batched_pairwise_equals_the_rule_read_literally():
    import torch

    rng = np.random.default_rng(1)
    x = rng.standard_normal((37, 16)).astype(np.float32)
    x[20] = x[3] + 0.01  # some high similarities
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    want_best, want_arg = brute_force(x)
    for batch in (1, 5, 37, 1024):
        best, arg = max_similarity_to_earlier(torch.as_tensor(x), batch)
        assert np.allclose(best.numpy(), want_best, atol=1e-6)
        assert np.array_equal(arg.numpy(), want_arg)


def test_ranking_is_nemos():
    ids = np.array(["b", "a", "c", "d"])
    dist = np.array([0.2, 0.2, 0.5, 0.1], np.float32)
    assert ids[rank_cluster(ids, dist, "hard", 0)].tolist() == ["c", "b", "a", "d"]  # far first, id descending
    assert ids[rank_cluster(ids, dist, "easy", 0)].tolist() == ["d", "a", "b", "c"]
    assert sorted(rank_cluster(ids, dist, "random", 0).tolist()) == [0, 1, 2, 3]

    # two near-identical clips in one cluster: "hard" keeps the one farther from the centroid
    rng = np.random.default_rng(0)
    base = rng.standard_normal(8)
    x = np.stack([base, base + 0.05 * rng.standard_normal(8), -base]).astype(np.float32)
    r = semdedup(["p", "q", "r"], x, DedupSettings(n_clusters=2, eps=0.05))
    flagged = r.duplicates(0.05).to_pylist()
    assert len(flagged) == 1
    row = {t["id"]: t for t in r.pairwise.to_pylist()}
    kept, dropped = flagged[0]["max_id"], flagged[0]["id"]
    assert row[kept]["cosine_dist_to_cent"] >= row[dropped]["cosine_dist_to_cent"]


def test_settings_are_checked():
    for bad in (dict(eps=0.0), dict(which_to_keep="best"), dict(device="tpu"), dict(fit_fraction=0.0)):
        (name,) = bad
        with pytest.raises(ValueError, match=f"invalid dedup settings: {name}="):
            DedupSettings(**bad)
    with pytest.raises(ValueError, match="unique"):
        semdedup(["a", "a"], np.ones((2, 4), np.float32))
