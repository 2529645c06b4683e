"""Which torch device a step runs on: one rule for every setting that says ``auto``."""

from __future__ import annotations


def resolve_device(device: str | None) -> str:
    """``device`` as given, or for ``auto`` (and None / ""): ``cuda`` when torch sees a GPU, else ``cpu``."""
    if device in (None, "", "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)
