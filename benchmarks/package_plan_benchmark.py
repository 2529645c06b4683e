"""Packaging a dataset of many videos from the manifest vs from every video's documents.

Prints figures; not a test. One real video is curated (clips, metas, chunk and video documents
written by the production pipeline and writer), then cloned into ``--videos`` videos: each clone
has its own source name, so its clip ids, metas and documents are the ones the pipeline would
write for it (ids from source and span), and its mp4s are hard links to the template's. Then:

- ``manifest``: every video's fragment (what ``clip_manifest`` does per video partition);
- ``first build``: the shards, planned from the manifest (``build_shards_from_manifest``);
- ``unchanged, manifest``: the dataset-level step when nothing changed: the manifest IO manager's
  keys-to-paths mapping, one listing, each fragment's footer digest and the plan (what
  ``webdataset_shards`` does);
- ``unchanged, layouts`` (the baseline, same run): every video's documents read
  (``read_video_layout``) and ``build_shards`` planned from them (the CLI's way in);
- ``one video changed``: one clone's fragment rewritten, then the manifest plan again (its group
  is rewritten, reading only that group's documents).

    python benchmarks/package_plan_benchmark.py [--videos 20000] [--num-groups 16]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import DEFAULT_RESULTS, append_record, cpu_self, git_commit, peak_rss_mb  # noqa: E402


def template(root: Path) -> tuple[Path, Path, str]:
    """One real 6 s video curated into ``root/out`` (2 s clips, no models); (input, output, rel)."""
    from curation_assets_tests.packaging_fixtures import write_layout
    from curation_assets_tests.video_factory import make_video

    videos, out = root / "in", root / "out"
    videos.mkdir(parents=True)
    make_video(videos / "t.mp4", seconds=6, fps=25, width=256, height=192)
    write_layout(videos, str(out), root / "no-models", rels=["t.mp4"], generate_embeddings="off",
                 generate_captions=False, enhance_captions=False, generate_previews=False,
                 motion_filter="score-only")
    return videos, out, "t.mp4"


def clone(videos: Path, out: Path, rel: str, n: int) -> list[str]:
    """``n`` copies of the template video's layout, each under its own source name."""
    from curation_assets.core import layout
    from curation_assets.core.layout_read import verified_span
    from curation_assets.core.model import clip_uuid

    video = json.loads((out / layout.video_file(rel)).read_text())
    source = video["video"]
    chunks = [json.loads((out / layout.chunk_file(rel, i)).read_text()) for i in range(video["num_clip_chunks"])]
    metas = {u: json.loads((out / layout.METAS / f"{u}.json").read_text())
             for c in chunks for u in c["clips"] + c["filtered_clips"]}
    frames = {u: verified_span(u, source, m) for u, m in metas.items()}
    rels = []
    for i in range(n):
        new_rel = f"c/{i // 1000:03d}/v{i:06d}.mp4"
        new_source = str(videos / new_rel)
        ids = {u: str(clip_uuid(new_source, *frames[u])) for u in metas}
        for u, m in metas.items():
            folder = Path(m["clip_location"]).parent  # clips/ or filtered_clips/
            doc = dict(m, span_uuid=ids[u], source_video=new_source, clip_location=str(folder / f"{ids[u]}.mp4"))
            (out / layout.METAS / f"{ids[u]}.json").write_text(json.dumps(doc))
            os.link(folder / f"{u}.mp4", folder / f"{ids[u]}.mp4")
        for c in chunks:
            doc = json.loads(json.dumps(c).replace(source, new_source))
            for old, new in ids.items():
                doc = json.loads(json.dumps(doc).replace(old, new))
            path = out / layout.chunk_file(new_rel, c["clip_chunk_index"])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(doc))
        path = out / layout.video_file(new_rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dict(video, video=new_source)))
        rels.append(new_rel)
    return rels


def timed(label: str, fn, figures: dict):
    start, cpu = time.perf_counter(), cpu_self()
    value = fn()
    figures[label] = {"wall_s": round(time.perf_counter() - start, 3), "cpu_s": round(cpu_self() - cpu, 3)}
    print(f"{label:<28} {figures[label]['wall_s']:>9.2f} s wall {figures[label]['cpu_s']:>9.2f} s CPU")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=20_000)
    parser.add_argument("--num-groups", type=int, default=16)
    parser.add_argument("--results", default=str(DEFAULT_RESULTS))
    args = parser.parse_args()

    from curation_assets.core.keys import key_from_rel_path
    from curation_assets.core.layout_read import read_video_layout
    from curation_assets.core import storage
    from curation_assets.packaging import manifest, shards
    from curation_assets.partitions import source_url_for_key

    root = Path(tempfile.mkdtemp(prefix="package-plan-"))
    try:
        videos, out, rel = template(root)
        figures: dict = {}
        rels = timed("clone layouts", lambda: clone(videos, out, rel, args.videos), figures)
        keys = [key_from_rel_path(r) for r in rels]

        def fragments():
            for r in rels:
                manifest.write_fragment(str(out), read_video_layout(str(out), r))
        timed("manifest (every video)", fragments, figures)
        settings = shards.ShardSettings(num_groups=args.num_groups, max_shard_samples=1000)
        dest = str(out / "webdataset" / "default")

        def from_manifest():  # what the manifest IO manager and webdataset_shards do
            sources = [source_url_for_key(str(videos), k) for k in keys]
            mapped = [storage.relative_to(str(videos), s) for s in sources]
            found = manifest.fragment_digests(str(out), mapped)
            return shards.build_shards_from_manifest(str(out), found.digests, dest, settings,
                                                     sources=dict(zip(mapped, sources)))

        first = timed("first build", from_manifest, figures)
        clips = first.index["splits"]["train"]["samples"]
        again = timed("unchanged, manifest", from_manifest, figures)
        layouts = timed("unchanged, layouts", lambda: shards.build_shards(
            [read_video_layout(str(out), r) for r in rels], dest, settings), figures)
        assert again.rebuilt_groups == [] and layouts.rebuilt_groups == [], (again.rebuilt_groups, layouts.rebuilt_groups)
        # one video changed: its clips' captions are not part of this layout, so drop its last clip
        changed = rels[len(rels) // 2]
        chunk = out / "processed_clip_chunks" / f"{changed}_0.json"
        doc = json.loads(chunk.read_text())
        doc["clips"] = doc["clips"][:-1]
        chunk.write_text(json.dumps(doc))
        video_doc = out / "processed_videos" / f"{changed}.json"
        vdoc = json.loads(video_doc.read_text())
        vdoc["num_total_clips"] -= 1
        video_doc.write_text(json.dumps(vdoc))
        manifest.write_fragment(str(out), read_video_layout(str(out), changed))
        one = timed("one video changed", from_manifest, figures)
        assert len(one.rebuilt_groups) == 1, one.rebuilt_groups
        ratio = figures["unchanged, layouts"]["wall_s"] / max(figures["unchanged, manifest"]["wall_s"], 1e-9)
        print(f"{args.videos} videos, {clips} clips, {len(first.index['shards'])} shards in {args.num_groups} groups; "
              f"unchanged dataset: the manifest plan takes 1/{ratio:.1f} of the layout plan's time")
        append_record(args.results, {"benchmark": "package_plan", "commit": git_commit(), "videos": args.videos,
                                     "clips": clips, "num_groups": args.num_groups, "figures": figures,
                                     "layout_over_manifest": round(ratio, 2), "peak_rss_mb": round(peak_rss_mb(), 1)})
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
