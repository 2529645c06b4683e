"""``curation-assets package manifest|shards|dedup``: the training packages from the command line.

``add_package_parser(subparsers)`` adds the ``package`` command to the project's parser (``curation_assets/cli``)
and ``run_package(args)`` runs it; the videos are found from the ``processed_videos`` documents'
names (one listing of that folder), each video's files from its documents.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from typing import Any, TextIO

from ..core import layout, storage
from ..core.layout_read import VideoLayout, read_video_layout
from ..core.settings import base_type, flag_help, parse_text, section_fields
from ..settings_doc import default_text
from . import dedup, manifest, shards
from .settings import PackagingSection, package_flags


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


def _parse(raw: str, kind: Any) -> Any:
    try:
        return parse_text(raw, kind)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _metavar(name: str) -> str:
    last = name.split("_")[-1]
    return "VALUE" if last.isdigit() else last.upper()


def add_setting_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """A flag for every packaging setting of ``command`` (:func:`settings.package_flags`): its
    help, default and type are the setting's (``packaging/settings.py``)."""
    for name, kind, default, meta in section_fields(PackagingSection):
        for flag in (f for c, f in package_flags(name) if c == command):
            help_text = flag_help(f"{meta.help} (default: {default_text(default, kind)})")
            if base_type(kind)[0] is bool:
                parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=default,
                                    help=help_text)
            else:  # a list's default as a tuple, as parse_text gives a list flag's value
                value = tuple(default) if isinstance(default, list) else default
                parser.add_argument(flag, dest=name, default=value, help=help_text, choices=meta.choices,
                                    metavar=None if meta.choices else _metavar(name),
                                    type=functools.partial(_parse, kind=kind))


def section_from_args(args: argparse.Namespace) -> PackagingSection:
    """The packaging settings the flags give; the settings of other subcommands keep their defaults."""
    return PackagingSection(**{n: getattr(args, n) for n in PackagingSection.model_fields if hasattr(args, n)})


_OUTPUT_HELP = "the curated output folder or s3:// prefix (required)"


def add_package_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("package", help="build training packages from a written output",
                              description="Build the clip manifest, WebDataset shards (with Megatron-Energon "
                                          "metadata) or the semantic-dedup result from an output folder. "
                                          "Each setting is also CURATION_PACKAGE_<NAME> for the assets "
                                          "(docs/settings.md).")
    sub = p.add_subparsers(dest="package_command", required=True)

    m = sub.add_parser("manifest", help="write the clip manifest (a Parquet fragment per video)")
    m.add_argument("--output-path", required=True, help=_OUTPUT_HELP)
    m.add_argument("--video", action="append", dest="videos", metavar="REL",
                   help="only this video (relative path; repeatable) (default: every processed video)")

    s = sub.add_parser("shards", help="write WebDataset shards and their Energon metadata")
    s.add_argument("--output-path", required=True, help=_OUTPUT_HELP)
    add_setting_arguments(s, "shards")
    s.add_argument("--no-energon", action="store_true", help="skip energon prepare (default: off)")

    d = sub.add_parser("dedup", help="SemDeDup over the manifest's embeddings")
    d.add_argument("--output-path", required=True, help=_OUTPUT_HELP)
    add_setting_arguments(d, "dedup")
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
        return repr(section_from_args(args).shard_dest(args.output_path))
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
    section = section_from_args(args)
    problems = section.problems()
    if problems:
        raise ValueError("; ".join(problems))
    if section.exclude_duplicates and section.dedup_exclude_mode == "split" and args.no_energon:
        raise ValueError("--dedup-exclude-mode split writes the duplicates into energon's split.yaml: "
                         "not with --no-energon")
    duplicates: frozenset[str] = frozenset()
    if section.exclude_duplicates:
        duplicates = dedup.load_duplicate_ids(args.output_path, section.dedup_eps)
    settings = section.shard_settings(duplicates)
    dest = section.shard_dest(args.output_path)
    def waiting() -> None:
        print(f"shards: another package run is writing {dest}; waiting for it to finish", file=stream, flush=True)

    with shards.shard_lock(dest, on_wait=waiting):  # another run waits until this one's energon metadata is written
        return _write_shards(args, section, settings, dest, stream, section.split_excludes(duplicates))


def _write_shards(args: argparse.Namespace, section: PackagingSection, settings: shards.ShardSettings, dest: str,
                  stream: TextIO, split_excludes: frozenset[str]) -> int:
    result = shards.build_shards(read_all(args.output_path), dest, settings, force=section.force_rebuild)
    for line in result.repaired:
        print(line, file=stream)
    for p in result.problems:
        print(p, file=stream)
    splits = result.index["splits"]
    counts = ", ".join(f"{s} {v['samples']} samples in {v['shards']} shards" for s, v in splits.items())
    print(f"shards: {counts}; "
          f"groups rewritten: {len(result.rebuilt_groups)}, stale files removed: {len(result.removed)}; "
          f"skipped: {json.dumps(result.index['skipped'])}", file=stream)
    if not args.no_energon and any(v["shards"] for v in splits.values()):
        from .energon import EnergonError, update_energon

        try:
            energon = update_energon(dest, result.index, workers=section.energon_workers, exclude_ids=split_excludes)
        except EnergonError as exc:
            print(f"energon: {exc}", file=stream)
            return 1
        done = "prepared" if energon["prepared"] else "kept (energon indexed these shards)"
        print(f"energon: {storage.join(dest, '.nv-meta')} {done}", file=stream)
        if section.exclude_duplicates and section.dedup_exclude_mode == "split":
            print(f"energon: split.yaml excludes {len(energon['excluded'])} duplicate(s) at "
                  f"dedup_eps={section.dedup_eps}", file=stream)
    return 1 if result.problems else 0


def _dedup(args: argparse.Namespace, stream: TextIO) -> int:
    section = section_from_args(args)
    settings = section.dedup_settings()
    try:
        summary = dedup.run_semdedup(args.output_path, settings)
    except dedup.NoEmbeddingsError as exc:  # not "0 of 0 clips are duplicates", which reads as "none"
        print(f"dedup: {exc}", file=stream)
        return 1
    print(f"dedup: {summary['num_duplicates']} of {summary['num_clips']} clips are duplicates at eps={settings.eps} "
          f"({summary['n_clusters']} clusters, {summary['device']})", file=stream)
    if summary["num_without_embedding"]:
        print(f"dedup: {summary['num_without_embedding']} passed clip(s) have no embedding and were not compared",
              file=stream)
    print("eps       duplicates  fraction", file=stream)
    for row in summary["eps_table"]:
        print(f"{row['eps']:<9g} {row['num_duplicates']:>10}  {row['fraction']:.4f}", file=stream)
    return 0
