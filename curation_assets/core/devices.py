"""Which torch device a step runs on: one rule for every setting that says ``auto``, and one check
of a device a step is about to put a model on."""

from __future__ import annotations

from typing import Any


def resolve_device(device: str | None) -> str:
    """``device`` as given, or for ``auto`` (and None / ""): ``cuda`` when torch sees a GPU, else ``cpu``."""
    if device in (None, "", "auto"):
        return "cuda" if cuda_available() else "cpu"
    return str(device)


def checked_device(device: str | None) -> Any:
    """The ``torch.device`` for ``device`` (``auto`` resolved by :func:`resolve_device`).

    Refused with ``ValueError``: a name torch does not know, a device other than ``cpu`` or
    ``cuda[:N]``, and ``cuda`` when this process sees no GPU (a clear message before a model
    is built, instead of torch's error from deep inside the first forward).
    """
    import torch

    name = resolve_device(device)
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown torch device {name!r}") from exc
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {name!r}")
    if dev.type == "cuda" and not cuda_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available in this process")
    return dev


def cuda_available() -> bool:
    """Whether torch sees a CUDA device (torch is imported only when asked)."""
    import torch

    return bool(torch.cuda.is_available())
