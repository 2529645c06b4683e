"""Cosmos-Embed1 video embeddings (``nvidia/Cosmos-Embed1-224p|336p|448p``).

The path is the reference's (NeMo Curator ``CosmosEmbed1``): ``AutoModel`` / ``AutoProcessor``
with remote code, frames decoded at 2 fps (re-decoded at a higher rate for short clips),
``processor.num_video_frames`` frames picked evenly, ``processor(videos=uint8 (1, T, C, H, W))``,
``model.get_video_embeddings(videos=...)``, its ``.visual_proj``. Unlike the reference, clips are
batched through the model (``batch_size``), and vectors are returned as float32 (the reference
casts to float16).

The frames come from the frame tap (:mod:`.tap`: picked off the transcode's single decode pass
by the same rules, stored beside the clip already resized to the processor's size) or, without
stored frames, from decoding the clip. Either way a pool of threads prepares clips ahead of the
model, a loader thread stacks them into batches in pinned memory, and each batch is copied to the
GPU and started before the previous batch's vectors are read back, so the GPU is never left
waiting on the CPU between batches.

The text tower (``embed_texts``, for text-to-clip search) is the reference's text call:
``processor(text=[...], return_tensors="pt")`` (``input_ids``, ``attention_mask``, padded by the
processor), ``model.get_text_embeddings(**batch)``, its ``.text_proj``.
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
from .frame_store import EmbeddingFrames, FrameStoreError, StoredFrames
from .frames import EMBEDDING_FPS, MAX_REDECODE_FPS, FrameDecodeError, TooFewFrames, frames_for_embedding

log = logging.getLogger(__name__)

VARIANTS: dict[str, str] = {
    "cosmos-embed1-224p": "nvidia/Cosmos-Embed1-224p",
    "cosmos-embed1-336p": "nvidia/Cosmos-Embed1-336p",
    "cosmos-embed1-448p": "nvidia/Cosmos-Embed1-448p",
}
EMBEDDING_DIMS: dict[str, int] = {"cosmos-embed1-224p": 256, "cosmos-embed1-336p": 768, "cosmos-embed1-448p": 768}
# processor_config.json's "resolution" of each checkpoint: the processor resizes frames to this squared
VARIANT_RESOLUTIONS: dict[str, int] = {"cosmos-embed1-224p": 224, "cosmos-embed1-336p": 336, "cosmos-embed1-448p": 448}
# processor_config.json's "num_video_frames" (older remote code refuses any other count)
NUM_VIDEO_FRAMES = 8
DEFAULT_VARIANT = "cosmos-embed1-224p"

# Error keys, as the reference names them.
ERROR_BUFFER = "buffer"  # no clip bytes
ERROR_FRAMES = "frames-FrameExtractionPolicy.sequence-2000"  # the 2 fps frames could not be decoded
ERROR_TOO_SHORT = "cosmos_embed1_frames"  # fewer than 8 frames even at 20 fps
ERROR_EMBEDDING = "cosmos_embed1_embedding"  # the model failed on the batch

_BERT_NOTE = (
    "the real checkpoint's remote code also reads the bert-base-uncased config; offline, cache it "
    "once with: huggingface-cli download bert-base-uncased config.json"
)

__all__ = [
    "CosmosEmbedder",
    "ModelWeightsMissing",
    "ModelLoadError",
    "ClipError",
    "VARIANTS",
    "EMBEDDING_DIMS",
    "normalize_variant",
    "cosmos_folder_is_complete",
    "load_cosmos",
]


def normalize_variant(variant: str) -> str:
    """``"224p"``, ``"Cosmos-Embed1-224p"`` or ``"cosmos-embed1-224p"`` -> ``"cosmos-embed1-224p"``."""
    v = variant.strip().lower()
    if not v.startswith("cosmos-embed1-"):
        v = "cosmos-embed1-" + v
    if v not in VARIANTS:
        raise ValueError(f"unknown embedding algorithm {variant!r}; choose one of {', '.join(VARIANTS)}")
    return v


def cosmos_folder_is_complete(folder: Path) -> bool:
    """The reference's test: some ``*.safetensors`` and a ``processor_config.json`` (plus ``config.json``)."""
    return (
        folder.is_dir()
        and any(folder.glob("*.safetensors"))
        and (folder / "processor_config.json").is_file()
        and (folder / "config.json").is_file()
    )


def resize_for_processor(rgb: np.ndarray, resolution: int) -> np.ndarray:
    """uint8 ``(H, W, 3)`` -> ``(resolution, resolution, 3)``: the square the processor resizes
    every frame to, with an antialiased bilinear filter (Pillow's; within rounding of torch's
    ``interpolate(bilinear, antialias=True)``, what the processor is believed to apply: the real
    checkpoint's interpolation is unverified). The frame tap stores frames resized by this, and
    the processor then leaves them as they are."""
    from PIL import Image

    if rgb.shape[:2] == (resolution, resolution):
        return np.ascontiguousarray(rgb)
    img = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    return np.asarray(img.resize((resolution, resolution), Image.Resampling.BILINEAR))


def load_cosmos(path: str | Path, device: str, dtype: Any) -> tuple[Any, Any]:
    """``(model, processor)`` from a Cosmos-Embed1 folder, loaded once per process per (path, device, dtype)."""
    path = Path(path).resolve()
    key = ("cosmos-embed1", str(path), device, str(dtype))
    return cached(key, lambda: _load_cosmos_uncached(path, device, dtype))


def _load_cosmos_uncached(path: Path, device: str, dtype: Any) -> tuple[Any, Any]:
    from transformers import AutoModel, AutoProcessor

    log.info("loading Cosmos-Embed1 from %s on %s (%s)", path, device, dtype)
    try:
        model = AutoModel.from_pretrained(str(path), trust_remote_code=True, local_files_only=True)
        model = model.to(device=device, dtype=dtype).eval()
        processor = AutoProcessor.from_pretrained(str(path), trust_remote_code=True, local_files_only=True)
    except (OSError, ValueError, ImportError, AttributeError, TypeError) as exc:
        raise ModelLoadError(
            f"could not load Cosmos-Embed1 from {path}: {exc} (note: {_BERT_NOTE}; the remote code needs "
            "transformers>=4.50,<5)"
        ) from exc
    if not hasattr(model, "get_video_embeddings"):
        raise ModelLoadError(f"the model in {path} has no get_video_embeddings(): not a Cosmos-Embed1 checkpoint")
    return model, processor


class CosmosEmbedder:
    """Embeds clips (mp4 bytes) with Cosmos-Embed1.

    Args:
        variant: ``cosmos-embed1-224p`` (default), ``-336p`` or ``-448p``.
        model_dir: folder holding ``nvidia/Cosmos-Embed1-<variant>/`` (the reference's layout);
            when None or incomplete, the Hugging Face cache is used.
        cache_dir: Hugging Face cache folder (default: the hub's default).
        allow_download: fetch missing weights (into ``model_dir`` when given); off by default.
        device: ``cuda`` when available else ``cpu`` by default.
        dtype: bf16 on GPU, fp32 on CPU by default (a ``torch.dtype`` or its name).
        batch_size: clips per model call.
        fps: rate the frames are first decoded at (2, as the reference).
        decode_workers: threads decoding clips ahead of the model (0: decode inline).
    """

    def __init__(
        self,
        variant: str = DEFAULT_VARIANT,
        *,
        model_dir: str | Path | None = None,
        cache_dir: str | Path | None = None,
        allow_download: bool = False,
        device: str | None = None,
        dtype: Any = None,
        batch_size: int = 16,
        fps: float = EMBEDDING_FPS,
        decode_workers: int = 2,
    ):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.variant = normalize_variant(variant)
        self.repo_id = VARIANTS[self.variant]
        self.model_dir = model_dir
        self.cache_dir = cache_dir
        self.allow_download = allow_download
        # Resolved on first use: choosing a device imports torch (seconds), which a run whose
        # weights are missing, or that skips the stage, should not pay.
        self._device_arg = device
        self._dtype_arg = dtype
        self.batch_size = int(batch_size)
        self.fps = float(fps)
        self.decode_workers = int(decode_workers)
        self._path: Path | None = None

    # -- weights -----------------------------------------------------------------------------
    @property
    def expected_dim(self) -> int:
        return EMBEDDING_DIMS[self.variant]

    @functools.cached_property
    def device(self) -> str:
        return resolve_device(self._device_arg)

    @functools.cached_property
    def dtype(self) -> Any:
        return resolve_dtype(self._dtype_arg, self.device)

    def resolve(self) -> Path:
        """The folder the weights load from; raises ``ModelWeightsMissing`` (nothing is loaded)."""
        if self._path is None:
            self._path = resolve_repo(
                self.repo_id,
                what=f"Cosmos-Embed1 ({self.variant})",
                is_complete=cosmos_folder_is_complete,
                requirement="*.safetensors, config.json and processor_config.json",
                model_dir=self.model_dir,
                cache_dir=self.cache_dir,
                allow_download=self.allow_download,
                note=_BERT_NOTE,
            )
        return self._path

    def load(self) -> tuple[Any, Any]:
        """``(model, processor)``, shared by every embedder of the process with the same settings."""
        return load_cosmos(self.resolve(), self.device, self.dtype)

    @property
    def num_frames(self) -> int:
        return int(getattr(self.load()[1], "num_video_frames", NUM_VIDEO_FRAMES))

    @property
    def embedding_dim(self) -> int:
        model = self.load()[0]
        return int(getattr(model.config, "embed_dim", self.expected_dim))

    # -- inference ---------------------------------------------------------------------------
    def frame_spec(self) -> EmbeddingFrames | None:
        """What stored frames must be for this model's processor, None when it does not say its size."""
        _, processor = self.load()
        resolution = getattr(processor, "resolution", None)
        if not isinstance(resolution, int):
            return None
        n = int(getattr(processor, "num_video_frames", NUM_VIDEO_FRAMES))
        return EmbeddingFrames(n, resolution, self.fps, MAX_REDECODE_FPS)

    def prepare(self, clip: bytes, stored: Any = None) -> Any:
        """The processor's ``videos`` tensor ``(1, T, C, R, R)`` for one clip (CPU work): from
        ``stored`` (the clip's frames kept by the frame tap) when it holds this model's, else
        decoded from the clip."""
        _, processor = self.load()
        n = int(getattr(processor, "num_video_frames", NUM_VIDEO_FRAMES))
        frames = self._stored_frames(stored) if stored else None
        if frames is None:
            if not clip:
                raise ClipFailure(ERROR_BUFFER, "empty")
            try:
                frames = np.stack(frames_for_embedding(clip, num_frames=n, fps=self.fps))
            except FrameDecodeError as exc:
                key = ERROR_TOO_SHORT if isinstance(exc, TooFewFrames) else ERROR_FRAMES
                raise ClipFailure(key, str(exc)) from exc
        video = frames[None].transpose(0, 1, 4, 2, 3)  # (1, T, C, H, W) uint8
        return processor(videos=np.ascontiguousarray(video), return_tensors="pt")["videos"]

    def _stored_frames(self, stored: Any) -> np.ndarray | None:
        spec = self.frame_spec()
        if spec is None:
            return None
        try:
            found = StoredFrames.load(stored).embedding(spec)
        except FrameStoreError as exc:
            log.warning("stored embedding frames not usable, decoding the clip: %s", exc)
            return None
        if found is None:
            return None
        frames, too_short = found
        if too_short is not None:
            raise ClipFailure(ERROR_TOO_SHORT, too_short)
        return frames

    def embed_clips(
        self, clips: Sequence[bytes], *, errors: dict[int, ClipError] | None = None,
        frames: Sequence[Any] | None = None,
    ) -> list[np.ndarray | None]:
        """One float32 vector ``(D,)`` per clip, in order.

        ``frames``: per clip, its frames stored by the frame tap (or None), used instead of
        decoding the clip when they hold this model's. Without ``errors`` any failing clip raises.
        With an ``errors`` dict, a failing clip gets ``None`` and ``errors[index] = ClipError(key,
        message)`` (the reference's error keys), and the other clips still get their vectors.
        """
        model, _ = self.load()
        values = run_batched(
            len(clips), lambda i: self.prepare(clips[i], frames[i] if frames is not None else None),
            lambda videos: self._launch(model, videos),
            lambda launched, idx, sizes: list(self._collect(launched)),
            failure_recorder(errors, ERROR_EMBEDDING),
            batch_size=self.batch_size, workers=self.decode_workers, pin=self.device.startswith("cuda"),
        )
        return [None if v is None else v.copy() for v in values]

    def _launch(self, model: Any, videos: Any) -> Any:
        """Start one batch on the device; its vectors come from :meth:`_collect` (on a GPU the copy
        in, the forward and the copy back are queued; nothing waits)."""
        import torch

        cuda = self.device.startswith("cuda")
        videos = videos.to(device=self.device, dtype=self.dtype, non_blocking=cuda)
        with torch.inference_mode():
            out = model.get_video_embeddings(videos=videos)
        proj = getattr(out, "visual_proj", None)
        if proj is None:
            raise ModelLoadError("get_video_embeddings() returned no visual_proj")
        proj = proj.to(dtype=torch.float32)
        if not cuda:
            return proj, None
        host = torch.empty(proj.shape, dtype=torch.float32, pin_memory=True)
        host.copy_(proj, non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        return host, done

    @staticmethod
    def _collect(launched: Any) -> np.ndarray:
        host, done = launched
        if done is not None:
            done.synchronize()
        return host.numpy().astype(np.float32, copy=False)

    def _forward(self, model: Any, videos: Any) -> np.ndarray:
        """One batch through the model, waiting for its vectors."""
        if self.device.startswith("cuda"):
            videos = videos.pin_memory()
        return self._collect(self._launch(model, videos))

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Float32 ``(len(texts), D)``, each row L2-normalised, from the model's text tower (the
        same loaded model as the clips'); ``batch_size`` texts per model call."""
        import torch

        model, processor = self.load()
        if not hasattr(model, "get_text_embeddings"):
            raise ModelLoadError("the loaded Cosmos-Embed1 model has no get_text_embeddings(): no text tower")
        out: list[np.ndarray] = []
        for start in range(0, len(texts), self.batch_size):
            batch = processor(text=list(texts[start:start + self.batch_size]), return_tensors="pt")
            inputs = {k: batch[k].to(self.device) for k in ("input_ids", "attention_mask")}
            with torch.inference_mode():
                proj = getattr(model.get_text_embeddings(**inputs), "text_proj", None)
            if proj is None:
                raise ModelLoadError("get_text_embeddings() returned no text_proj")
            out.append(proj.to(device="cpu", dtype=torch.float32).numpy())
        vectors = np.concatenate(out) if out else np.zeros((0, self.expected_dim), np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
