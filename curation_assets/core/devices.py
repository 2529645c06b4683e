"""Which torch device a step runs on: one rule for every setting that says ``auto``."""

from __future__ import annotations


def resolve_device(device: str | None) -> str:
    """``device`` as given, or for ``auto`` (and None / ""): ``cuda`` when torch sees a GPU, else ``cpu``."""
    if device in (None, "", "auto"):
        return "cuda" if cuda_available() else "cpu"
    return str(device)


def cuda_available() -> bool:
    """Whether torch sees a CUDA device (torch is imported only when asked)."""
    import torch

    return bool(torch.cuda.is_available())
