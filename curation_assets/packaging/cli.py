"""``curation-assets package manifest|shards|dedup``: the training packages from the command line.

``add_package_parser(subparsers)`` adds the ``package`` command to the project's parser (``curation_assets/cli``)
and ``run_package(args)`` runs it; the videos are found from the ``processed_videos`` documents'
names (one listing of that folder), each video's files from its documents.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from ..core import layout, storage
from ..core.layout_read import VideoLayout, read_video_layout
from . import dedup, manifest, shards
from .settings import PackagingSection


def processed_rel_paths(output_path: str) -> list[str]:
    """The relative paths of the videos that have a ``processed_videos`` document."""
    folder = storage.join(output_path, layout.PROCESSED_VIDEOS)
    out = []
    for url in storage.list_files(folder):
        rel = storage.relative_to(folder, url)
        if rel.endswith(".json") and not any(c.startswith(".") for c in rel.split("/")):
            out.append(rel[: -len(".json")])
    return sorted(out)


def read_all(output_path: str, rel_paths: list[str] | None = None) -> list[VideoLayout]:
    return [read_video_layout(output_path, rel) for rel in (rel_paths or processed_rel_paths(output_path))]


def _default(name: str) -> Any:
    """A flag's default: the packaging setting's (``packaging/settings.py``), defined once."""
    return PackagingSection.model_fields[name].default


def add_package_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("package", help="build training packages from a written output",
                              description="Build the clip manifest, WebDataset shards (with Megatron-Energon "
                                          "metadata) or the semantic-dedup result from an output folder.")
    sub = p.add_subparsers(dest="package_command", required=True)

    m = sub.add_parser("manifest", help="write the clip manifest (a Parquet fragment per video)")
    m.add_argument("--output-path", required=True)
    m.add_argument("--video", action="append", dest="videos", metavar="REL",
                   help="only this video (relative path; repeatable); default: every processed video")

    s = sub.add_parser("shards", help="write WebDataset shards and their Energon metadata")
    s.add_argument("--output-path", required=True)
    s.add_argument("--dest", help="shard folder (default: <output>/webdataset/<name>)")
    s.add_argument("--name", default=_default("name"))
    s.add_argument("--max-shard-bytes", type=int, default=_default("max_shard_bytes"))
    s.add_argument("--max-shard-samples", type=int, default=_default("max_shard_samples"))
    s.add_argument("--num-groups", type=int, default=_default("num_groups"))
    s.add_argument("--val-fraction", type=float, default=_default("val_fraction"))
    s.add_argument("--bucket-by", choices=shards.BUCKET_BY, default=_default("bucket_by"))
    s.add_argument("--length-edges-s", type=lambda v: tuple(float(x) for x in v.split(",")),
                   default=tuple(_default("length_edges_s")))
    s.add_argument("--include-filtered", action="store_true")
    s.add_argument("--include-invalid", action="store_true")
    s.add_argument("--min-aesthetic-score", type=float)
    s.add_argument("--min-motion-global-mean", type=float)
    s.add_argument("--min-motion-per-patch-min-256", type=float)
    s.add_argument("--require-caption", action="store_true")
    s.add_argument("--require-embedding", action="store_true")
    s.add_argument("--exclude-duplicates", action="store_true",
                   help="leave out the clips of <output>/semdedup/duplicates.parquet")
    s.add_argument("--dedup-eps", type=float, help="with --exclude-duplicates: this eps instead of the one dedup used")
    s.add_argument("--force", action="store_true", help="rewrite every group")
    s.add_argument("--no-energon", action="store_true", help="skip energon prepare")
    s.add_argument("--energon-workers", type=int, default=_default("energon_workers"))

    d = sub.add_parser("dedup", help="SemDeDup over the manifest's embeddings")
    d.add_argument("--output-path", required=True)
    d.add_argument("--n-clusters", type=int, default=_default("dedup_n_clusters"))
    d.add_argument("--eps", type=float, default=_default("dedup_eps"))
    d.add_argument("--which-to-keep", choices=dedup.WHICH_TO_KEEP, default=_default("dedup_which_to_keep"))
    d.add_argument("--max-iter", type=int, default=_default("dedup_max_iter"))
    d.add_argument("--fit-fraction", type=float)
    d.add_argument("--device", default=_default("dedup_device"))
    d.add_argument("--seed", type=int, default=_default("dedup_seed"))
    return p


def run_package(args: argparse.Namespace, stream: TextIO | None = None) -> int:
    """Run ``package <what>``; 0 on success, 1 when a document or shard had problems or a file could
    not be written (a full disk: one line naming it), 2 on bad usage."""
    stream = stream or sys.stdout
    try:
        if args.package_command == "manifest":
            return _manifest(args, stream)
        if args.package_command == "shards":
            return _shards(args, stream)
        return _dedup(args, stream)
    except ValueError as exc:
        print(f"error: {exc}", file=stream)
        return 2
    except storage.StorageError as exc:  # redacted, one line (a full disk names the file)
        print(f"error: {exc}", file=stream)
        return 1
    except OSError as exc:  # a full disk met outside the storage module (pyarrow, tarfile)
        if not storage.is_no_space(exc):
            raise
        print(f"error: {storage.no_space_message(_written_folder(args))}", file=stream)
        return 1


def _written_folder(args: argparse.Namespace) -> str:
    """The folder ``package <what>`` writes into, for a full-disk message."""
    if args.package_command == "shards":
        return repr(args.dest or shards.default_dest(args.output_path, args.name))
    folder = manifest.MANIFEST_DIR if args.package_command == "manifest" else dedup.DEDUP_DIR
    return repr(storage.join(args.output_path, folder))


def _manifest(args: argparse.Namespace, stream: TextIO) -> int:
    problems = 0
    rows = 0
    for video in read_all(args.output_path, args.videos):
        if not video.exists:
            print(f"{video.rel_path}: no processed_videos document", file=stream)
            problems += 1
        table = manifest.manifest_table(video) if video.exists else None
        manifest.write_fragment(args.output_path, video, table)
        rows += table.num_rows if table is not None else 0
        for p in video.problems:
            print(f"{video.rel_path}: {p}", file=stream)
        problems += len(video.problems)
    if not args.videos:
        manifest.remove_fragments(args.output_path, set(processed_rel_paths(args.output_path)))
    print(f"manifest: {rows} clips written; {manifest.read_manifest(args.output_path, columns=['clip_uuid']).num_rows} "
          f"in {storage.join(args.output_path, manifest.MANIFEST_DIR)}", file=stream)
    return 1 if problems else 0


def _shards(args: argparse.Namespace, stream: TextIO) -> int:
    exclude: frozenset[str] = frozenset()
    if args.exclude_duplicates:
        exclude = dedup.load_duplicate_ids(args.output_path, args.dedup_eps)
    elif args.dedup_eps is not None:
        raise ValueError("--dedup-eps needs --exclude-duplicates")
    selection = shards.Selection(
        include_filtered=args.include_filtered, include_invalid=args.include_invalid,
        min_aesthetic_score=args.min_aesthetic_score, min_motion_global_mean=args.min_motion_global_mean,
        min_motion_per_patch_min_256=args.min_motion_per_patch_min_256, require_caption=args.require_caption,
        require_embedding=args.require_embedding, exclude=exclude)
    settings = shards.ShardSettings(
        name=args.name, max_shard_bytes=args.max_shard_bytes, max_shard_samples=args.max_shard_samples,
        num_groups=args.num_groups, val_fraction=args.val_fraction, bucket_by=args.bucket_by,
        length_edges_s=args.length_edges_s, selection=selection)
    dest = args.dest or shards.default_dest(args.output_path, args.name)
    result = shards.build_shards(read_all(args.output_path), dest, settings, force=args.force)
    for p in result.problems:
        print(p, file=stream)
    splits = result.index["splits"]
    counts = ", ".join(f"{s} {v['samples']} samples in {v['shards']} shards" for s, v in splits.items())
    print(f"shards: {counts}; "
          f"groups rewritten: {len(result.rebuilt_groups)}, stale files removed: {len(result.removed)}; "
          f"skipped: {json.dumps(result.index['skipped'])}", file=stream)
    if not args.no_energon and any(v["shards"] for v in splits.values()):
        from .energon import EnergonError, prepare_energon

        try:
            prepare_energon(dest, result.index, workers=args.energon_workers)
        except EnergonError as exc:
            print(f"energon: {exc}", file=stream)
            return 1
        print(f"energon: {storage.join(dest, '.nv-meta')} prepared", file=stream)
    return 1 if result.problems else 0


def _dedup(args: argparse.Namespace, stream: TextIO) -> int:
    settings = dedup.DedupSettings(n_clusters=args.n_clusters, eps=args.eps, which_to_keep=args.which_to_keep,
                                   max_iter=args.max_iter, fit_fraction=args.fit_fraction, device=args.device,
                                   random_state=args.seed)
    try:
        summary = dedup.run_semdedup(args.output_path, settings)
    except dedup.NoEmbeddingsError as exc:  # not "0 of 0 clips are duplicates", which reads as "none"
        print(f"dedup: {exc}", file=stream)
        return 1
    print(f"dedup: {summary['num_duplicates']} of {summary['num_clips']} clips are duplicates at eps={args.eps} "
          f"({summary['n_clusters']} clusters, {summary['device']})", file=stream)
    if summary["num_without_embedding"]:
        print(f"dedup: {summary['num_without_embedding']} passed clip(s) have no embedding and were not compared",
              file=stream)
    print("eps       duplicates  fraction", file=stream)
    for row in summary["eps_table"]:
        print(f"{row['eps']:<9g} {row['num_duplicates']:>10}  {row['fraction']:.4f}", file=stream)
    return 0
