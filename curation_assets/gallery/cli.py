"""``curation-assets gallery``: build the clip gallery of a written output and print its URL.

``add_gallery_parser(subparsers)`` adds the command to the project's parser (``curation_assets/cli``),
``run_gallery(args)`` runs it. Exit codes as ``package``: 0 built; 1 a file could not be written, or
a manifest fragment could not be read (its video is left out and named, the others are shown); 2
bad usage or no manifest to show (the message names the command that writes it).
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from ..core import storage
from .site import NoManifestError, build_gallery


def add_gallery_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("gallery", help="build the clip gallery (a static site) of a written output",
                              description="Build <output>/gallery/: one card per clip of the manifest, with "
                                          "filters, sorts and pages; it opens from disk, a static web server or "
                                          "an object store (docs/gallery.md).")
    p.add_argument("--output-path", required=True, help="the curated output folder or s3:// prefix (required)")
    p.add_argument("--video", dest="videos", action="append", metavar="REL",
                   help="rebuild only this video's cards (its path relative to the input; repeatable); "
                        "default: every video of the manifest")
    return p


def run_gallery(args: argparse.Namespace, stream: TextIO | None = None) -> int:
    """Build the gallery and print where to open it; the exit status."""
    stream = stream or sys.stdout
    try:
        build = build_gallery(args.output_path, args.videos)
    except NoManifestError as exc:
        print(f"error: {exc}", file=stream)
        return 2
    except storage.StorageError as exc:
        print(f"error: {exc}", file=stream)
        return 1
    print(f"gallery: {build.videos} videos, {build.clips} clips; {len(build.written)} video(s) written, "
          f"{len(build.removed)} removed, in {build.seconds:.1f} s", file=stream)
    for problem in build.problems:
        print(problem, file=stream)
    print(f"open the gallery:  {build.url}", file=stream)
    return 1 if build.problems else 0


__all__ = ["add_gallery_parser", "run_gallery"]
