"""``curation-assets datacard --output-path X [--json]``: the data card of a written output.

``add_datacard_parser(subparsers)`` adds the command to the project's parser (``curation_assets/cli``);
``run_datacard(args)`` builds and writes the card (``reports.datacard.write_datacard``) and prints
where it is, or, with ``--json``, its numbers. Exit 2 when the output has no manifest yet.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

from ..core import storage
from . import datacard


def add_datacard_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("datacard", help="write the data card of a written output (needs its manifest)",
                              description="Write datacard.md, gallery/datacard.html and datacard/ (histogram "
                                          "images, datacard.json) from the clip manifest and the videos' "
                                          "documents (docs/datacard.md).")
    p.add_argument("--output-path", required=True, help="the curated output folder or s3:// prefix (required)")
    p.add_argument("--json", action="store_true", help="print the card's numbers as JSON instead of where it is")
    return p


def run_datacard(args: argparse.Namespace, stream: TextIO | None = None) -> int:
    stream = stream or sys.stdout
    try:
        card = datacard.write_datacard(args.output_path)
    except datacard.NoManifestError as exc:
        print(f"curation-assets datacard: error: {exc}", file=sys.stderr)
        return 2
    except storage.StorageError as exc:
        print(f"curation-assets datacard: error: {storage.redact(exc)}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(card.numbers, indent=2, sort_keys=True), file=stream)
        return 0
    n = card.numbers
    print(f"data card: {storage.redact(card.md_url)} ({n['clips_in']} clips, {n['clips_passed']} passed, "
          f"{n['hours_in']:.2f} source hours)", file=stream)
    print(f"as a page:  {storage.redact(card.html_url)}", file=stream)
    return 0


__all__ = ["add_datacard_parser", "run_datacard"]
