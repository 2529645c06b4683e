"""Aesthetic scores: CLIP ViT-L/14 image features into the LAION improved-aesthetic MLP.

As the reference (NeMo Curator ``CLIPAestheticScorer``): frames sampled at 1 fps (decoded from
the clip, or stored by the frame tap of :mod:`.tap`, already resized by :func:`resize_frames`); each frame
resized so its short side is 224 (bicubic, antialiased, rounded back to uint8), centre-cropped to
224, scaled to [0, 1] and normalised with CLIP's mean/std (the sizes and constants are read from
the checkpoint's ``preprocessor_config.json``); ``CLIPModel.get_image_features``; L2
normalisation; the MLP ``768-1024-128-64-16-1``; per clip the ``min`` (default) or ``mean`` of the
frame scores. CLIP runs in fp32 by default, as in the reference.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._runtime import ClipError, ClipFailure, failure_recorder, resolve_device, resolve_dtype, run_batched
from ._weights import ModelLoadError, ModelWeightsMissing, cached, resolve_repo
from .frame_store import AestheticFrames, FrameStoreError, StoredFrames
from .frames import AESTHETIC_FPS, FrameDecodeError, decode_frames

log = logging.getLogger(__name__)

CLIP_REPO = "openai/clip-vit-large-patch14"
AESTHETIC_REPO = "ttj/sac-logos-ava1-l14-linearMSE"
AESTHETIC_FILE = "model.safetensors"
CLIP_FILES = (
    "config.json",
    "preprocessor_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
)
# (in, out) of each Linear in ``layers``, keyed by its index in the Sequential.
MLP_LINEARS: dict[int, tuple[int, int]] = {0: (768, 1024), 2: (1024, 128), 4: (128, 64), 6: (64, 16), 7: (16, 1)}
MLP_STATE_KEYS: tuple[str, ...] = tuple(f"layers.{i}.{p}" for i in MLP_LINEARS for p in ("weight", "bias"))

# CLIP ViT-L/14's preprocessing (its preprocessor_config.json): short side resized to 224, then a
# 224 centre crop. The frame tap stores frames resized to this; the scorer checks the checkpoint's.
CLIP_SHORT_SIDE = 224

# Error keys, as the reference names them.
ERROR_BUFFER = "buffer"
ERROR_FRAMES = "frames-FrameExtractionPolicy.sequence-1000"
ERROR_SCORE = "aesthetic_score"  # not named by the reference: the model failed on the clip

__all__ = [
    "AestheticScorer",
    "ModelWeightsMissing",
    "ModelLoadError",
    "ClipError",
    "build_aesthetic_mlp",
    "clip_folder_is_complete",
    "image_features",
    "load_aesthetic_models",
]


def build_aesthetic_mlp() -> Any:
    """The LAION predictor's module: ``layers = Sequential(Linear, Dropout, ..., Linear(16, 1))``."""
    from torch import nn

    class AestheticMLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.Sequential(
                nn.Linear(768, 1024),
                nn.Dropout(0.2),
                nn.Linear(1024, 128),
                nn.Dropout(0.2),
                nn.Linear(128, 64),
                nn.Dropout(0.1),
                nn.Linear(64, 16),
                nn.Linear(16, 1),
            )

        def forward(self, x: Any) -> Any:
            return self.layers(x)

    return AestheticMLP()


def clip_folder_is_complete(folder: Path) -> bool:
    return (
        folder.is_dir()
        and (folder / "config.json").is_file()
        and (folder / "preprocessor_config.json").is_file()
        and (any(folder.glob("*.safetensors")) or (folder / "pytorch_model.bin").is_file())
    )


def _mlp_folder_is_complete(folder: Path) -> bool:
    return (folder / AESTHETIC_FILE).is_file()


def load_aesthetic_models(clip_path: str | Path, mlp_path: str | Path, device: str, dtype: Any) -> tuple[Any, Any, Any]:
    """``(clip_model, clip_processor, mlp)``, loaded once per process per (paths, device, dtype)."""
    clip_path, mlp_path = Path(clip_path).resolve(), Path(mlp_path).resolve()
    key = ("aesthetic", str(clip_path), str(mlp_path), device, str(dtype))
    return cached(key, lambda: _load_uncached(clip_path, mlp_path, device, dtype))


def _load_uncached(clip_path: Path, mlp_path: Path, device: str, dtype: Any) -> tuple[Any, Any, Any]:
    import torch
    from safetensors.torch import load_file
    from transformers import CLIPModel, CLIPProcessor

    log.info("loading CLIP from %s and the aesthetic MLP from %s on %s", clip_path, mlp_path, device)
    try:
        clip = CLIPModel.from_pretrained(str(clip_path), local_files_only=True)
        clip = clip.to(device=device, dtype=dtype).eval()
        processor = CLIPProcessor.from_pretrained(str(clip_path), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not load CLIP from {clip_path}: {exc}") from exc
    projection_dim = int(getattr(clip.config, "projection_dim", 768))
    if projection_dim != 768:
        raise ModelLoadError(f"CLIP in {clip_path} projects to {projection_dim} values; the aesthetic MLP needs 768")
    mlp = build_aesthetic_mlp()
    try:
        state = load_file(str(mlp_path))
        mlp.load_state_dict(state, strict=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise ModelLoadError(f"could not load the aesthetic MLP from {mlp_path}: {exc}") from exc
    mlp = mlp.to(device=device, dtype=torch.float32).eval()
    return clip, processor, mlp


def image_features(clip: Any, pixel_values: Any) -> Any:
    """Projected image features, whether ``get_image_features`` returns a tensor (transformers 4)
    or an output object (transformers 5: ``pooler_output`` holds the projection)."""
    import torch

    out = clip.get_image_features(pixel_values=pixel_values)
    if isinstance(out, torch.Tensor):
        return out
    dim = int(getattr(clip.config, "projection_dim", 0)) or None
    for name in ("image_embeds", "pooler_output"):
        value = getattr(out, name, None)
        if isinstance(value, torch.Tensor) and value.ndim == 2 and (dim is None or value.shape[-1] == dim):
            return value
    raise TypeError(f"get_image_features returned {type(out).__name__} without projected image features")


def _processor_geometry(processor: Any) -> tuple[int, tuple[int, int], list[float], list[float]]:
    ip = getattr(processor, "image_processor", processor)
    size = ip.size
    short = (
        int(size["shortest_edge"])
        if isinstance(size, dict) and "shortest_edge" in size
        else int(size.get("height", 224) if isinstance(size, dict) else size)
    )
    crop = ip.crop_size if getattr(ip, "do_center_crop", True) else None
    if isinstance(crop, dict):
        crop_hw = (int(crop["height"]), int(crop["width"]))
    elif crop:
        crop_hw = (int(crop), int(crop))
    else:
        crop_hw = (short, short)
    return short, crop_hw, list(ip.image_mean), list(ip.image_std)


def _resize_short_side(x: Any, short_side: int) -> Any:
    """uint8 ``(N, 3, H, W)`` tensor with its short side resized to ``short_side`` (torchvision's
    Resize(short side, bicubic, antialias) on uint8: interpolate in float, round back)."""
    import torch
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    if w <= h:
        new_w, new_h = short_side, int(short_side * h / w)
    else:
        new_h, new_w = short_side, int(short_side * w / h)
    if (new_h, new_w) != (h, w):
        y = F.interpolate(x.float(), size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True)
        x = y.clamp_(0, 255).round_().to(torch.uint8)
    return x


def resize_frames(frames: np.ndarray, short_side: int = CLIP_SHORT_SIDE) -> np.ndarray:
    """uint8 ``(N, H, W, 3)`` with the short side resized to the size :func:`preprocess_frames`
    resizes to, by Pillow's bicubic filter: the antialiased kernel torchvision's follows (within 3
    levels of it, 0.1 on average), without torch's thread pool, which stalls behind the encoder
    threads of the decode pass. The frame tap stores these; :func:`preprocess_frames` then has
    nothing left to resize."""
    from PIL import Image

    out = []
    for frame in np.asarray(frames):
        h, w = frame.shape[:2]
        size = (short_side, int(short_side * h / w)) if w <= h else (int(short_side * w / h), short_side)
        img = Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8))
        out.append(np.asarray(img.resize(size, Image.Resampling.BICUBIC)) if size != (w, h) else frame)
    return np.stack(out)


def preprocess_frames(
    frames: np.ndarray, short_side: int, crop_hw: tuple[int, int], mean: Sequence[float], std: Sequence[float]
) -> Any:
    """uint8 ``(N, H, W, 3)`` -> float32 ``(N, 3, crop_h, crop_w)`` the way the reference's
    torchvision transforms do it (Resize(short side, bicubic, antialias) on uint8, CenterCrop,
    ConvertImageDtype, Normalize)."""
    import torch
    import torch.nn.functional as F

    x = _resize_short_side(torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2), short_side)
    new_h, new_w = x.shape[-2:]
    ch, cw = crop_hw
    top = int(round((new_h - ch) / 2.0))
    left = int(round((new_w - cw) / 2.0))
    if top < 0 or left < 0:
        x = F.pad(x, [max(0, -left), max(0, cw - new_w + left), max(0, -top), max(0, ch - new_h + top)])
        top, left = max(0, top), max(0, left)
    x = x[..., top : top + ch, left : left + cw].float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - m) / s


class AestheticScorer:
    """Scores clips (mp4 bytes) with CLIP ViT-L/14 + the LAION ``sac+logos+ava1-l14-linearMSE`` MLP.

    Args:
        model_dir: folder holding ``openai/clip-vit-large-patch14/`` and
            ``ttj/sac-logos-ava1-l14-linearMSE/model.safetensors`` (the reference's layout); the
            Hugging Face cache is used for whatever is missing there.
        cache_dir: Hugging Face cache folder (default: the hub's default).
        allow_download: fetch missing weights; off by default.
        reduction: ``"min"`` (default, the reference's) or ``"mean"`` over a clip's frame scores.
        device: ``cuda`` when available else ``cpu`` by default.
        dtype: CLIP's dtype, fp32 by default (the MLP always runs in fp32).
        batch_size: frames per CLIP call.
        fps: frame sampling rate (1, as the reference).
        decode_workers: threads decoding clips ahead of the model (0: decode inline).
    """

    def __init__(
        self,
        *,
        model_dir: str | Path | None = None,
        cache_dir: str | Path | None = None,
        allow_download: bool = False,
        reduction: str = "min",
        device: str | None = None,
        dtype: Any = None,
        batch_size: int = 64,
        fps: float = AESTHETIC_FPS,
        decode_workers: int = 2,
    ):
        if reduction not in ("min", "mean"):
            raise ValueError(f"reduction must be 'min' or 'mean', got {reduction!r}")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.model_dir = model_dir
        self.cache_dir = cache_dir
        self.allow_download = allow_download
        self.reduction = reduction
        # Resolved on first use: choosing a device imports torch (seconds), which a run whose
        # weights are missing, or that skips the stage, should not pay.
        self._device_arg = device
        self._dtype_arg = dtype
        self.batch_size = int(batch_size)
        self.fps = float(fps)
        self.decode_workers = int(decode_workers)
        self._paths: tuple[Path, Path] | None = None

    @functools.cached_property
    def device(self) -> str:
        return resolve_device(self._device_arg)

    @functools.cached_property
    def dtype(self) -> Any:
        return resolve_dtype(self._dtype_arg, self.device, gpu_default="float32")

    def resolve(self) -> tuple[Path, Path]:
        """``(clip_folder, mlp_file)``; raises ``ModelWeightsMissing`` (nothing is loaded)."""
        if self._paths is None:
            clip_dir = resolve_repo(
                CLIP_REPO,
                what="CLIP ViT-L/14 (aesthetic scorer)",
                is_complete=clip_folder_is_complete,
                requirement="config.json, preprocessor_config.json, model.safetensors and tokenizer files",
                model_dir=self.model_dir,
                cache_dir=self.cache_dir,
                allow_download=self.allow_download,
                files=CLIP_FILES,
            )
            mlp_dir = resolve_repo(
                AESTHETIC_REPO,
                what="Aesthetic predictor MLP",
                is_complete=_mlp_folder_is_complete,
                requirement=AESTHETIC_FILE,
                model_dir=self.model_dir,
                cache_dir=self.cache_dir,
                allow_download=self.allow_download,
                files=(AESTHETIC_FILE,),
            )
            self._paths = (clip_dir, mlp_dir / AESTHETIC_FILE)
        return self._paths

    def load(self) -> tuple[Any, Any, Any]:
        clip_dir, mlp_file = self.resolve()
        return load_aesthetic_models(clip_dir, mlp_file, self.device, self.dtype)

    def prepare(self, clip: bytes, stored: Any = None) -> Any:
        """Preprocessed 1 fps frames of one clip, float32 ``(N, 3, 224, 224)`` (CPU work): from
        ``stored`` (the clip's frames kept by the frame tap) when it holds this scorer's, else
        decoded from the clip."""
        _, processor, _ = self.load()
        geometry = _processor_geometry(processor)
        frames = self._stored_frames(stored, geometry[0]) if stored else None
        if frames is None:
            if not clip:
                raise ClipFailure(ERROR_BUFFER, "empty")
            try:
                decoded = decode_frames(clip, self.fps)
            except FrameDecodeError as exc:
                raise ClipFailure(ERROR_FRAMES, str(exc)) from exc
            if not decoded:
                raise ClipFailure(ERROR_FRAMES, "missing")
            frames = np.stack(decoded)
        return preprocess_frames(frames, *geometry)

    def _stored_frames(self, stored: Any, short_side: int) -> np.ndarray | None:
        try:
            return StoredFrames.load(stored).aesthetic(AestheticFrames(short_side, self.fps))
        except FrameStoreError as exc:
            log.warning("stored aesthetic frames not usable, decoding the clip: %s", exc)
            return None

    def score_frames(self, pixel_values: Any) -> np.ndarray:
        """Aesthetic score per preprocessed frame, float32 ``(N,)``."""
        import torch

        clip, _, mlp = self.load()
        scores = []
        with torch.inference_mode():
            for start in range(0, pixel_values.shape[0], self.batch_size):
                chunk = pixel_values[start : start + self.batch_size].to(device=self.device, dtype=self.dtype)
                feats = image_features(clip, chunk).float()
                feats = feats / torch.linalg.vector_norm(feats, dim=-1, keepdim=True)
                scores.append(mlp(feats).squeeze(-1).cpu())
        return torch.cat(scores).numpy().astype(np.float32, copy=False)

    def score_clips(self, clips: Sequence[bytes], *, errors: dict[int, ClipError] | None = None,
                    frames: Sequence[Any] | None = None) -> list[float | None]:
        """One score per clip, in order (``min`` or ``mean`` over its 1 fps frames).

        ``frames``: per clip, its frames stored by the frame tap (or None), used instead of
        decoding the clip when they hold this scorer's. Without ``errors`` any failing clip
        raises; with an ``errors`` dict a failing clip gets ``None`` and ``errors[index] =
        ClipError(key, message)``.
        """
        self.load()

        def reduce(frame_scores: Any, idx: list[int], counts: list[int]) -> list[float]:
            out, offset = [], 0
            for n in counts:
                part = frame_scores[offset: offset + n]
                offset += n
                out.append(float(part.min() if self.reduction == "min" else part.mean()))
            return out

        return run_batched(
            len(clips), lambda i: self.prepare(clips[i], frames[i] if frames is not None else None),
            self.score_frames, reduce, failure_recorder(errors, ERROR_SCORE),
            batch_size=self.batch_size, workers=self.decode_workers, size=lambda v: int(v.shape[0]),
        )
