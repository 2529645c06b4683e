"""``curation-assets diff OLD NEW`` and ``curation-assets snapshot --output-path X``.

``add_diff_parser(subparsers)`` adds both commands to the project's parser (``curation_assets/cli``)
and ``run_diff(args)`` runs either. A side of a diff is an output folder or s3:// prefix (its
manifest read as it is now) or a snapshot file. Exit codes: 0 when compared (identical or not),
2 when a side cannot be read (no manifest, not a snapshot), naming it and what to run.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

from ..core import storage
from . import diff, diff_text, snapshot

_SIDE = "an output folder or s3:// prefix (its clip manifest as it is now) or a snapshot .parquet file"


def add_diff_parser(subparsers: argparse._SubParsersAction) -> None:
    d = subparsers.add_parser("diff", help="what changed between two outputs or snapshots",
                              description="Compare two runs: videos and clips added, removed and changed, "
                                          "settings that differ, how the score distributions moved (docs/diff.md).")
    d.add_argument("old", metavar="OLD", help=_SIDE)
    d.add_argument("new", metavar="NEW", help=_SIDE)
    d.add_argument("--json", action="store_true", help="one JSON document for scripts (default: text)")
    d.add_argument("--full", action="store_true", help="show every video and clip (default: the first "
                                                       f"{diff.SHOWN} of each list)")
    s = subparsers.add_parser("snapshot", help="write a snapshot of an output's manifest to diff later",
                              description="Write <output>/snapshots/<UTC time>-<digest>.parquet from the clip "
                                          "manifest and print its URL.")
    s.add_argument("--output-path", required=True, help="the curated output folder or s3:// prefix (required)")


def run_diff(args: argparse.Namespace, stream: TextIO | None = None) -> int:
    """Run ``diff`` or ``snapshot``: 0 on success, 2 when a side cannot be read."""
    stream = stream or sys.stdout
    try:
        if args.command == "snapshot":
            print(snapshot.write_snapshot(args.output_path), file=stream)
            return 0
        result = diff.diff(args.old, args.new)
    except storage.StorageNotFoundError as exc:
        print(f"curation-assets: error: {exc} (a side is {_SIDE})", file=sys.stderr)
        return 2
    except (ValueError, storage.StorageError) as exc:  # no manifest, not a snapshot, unreadable store
        print(f"curation-assets: error: {storage.redact(exc)}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_json(), indent=1, sort_keys=False), file=stream)
    else:
        stream.write(diff_text.render(result, full=args.full))
    return 0


__all__ = ["add_diff_parser", "run_diff"]
