"""Small stand-in checkpoints and test videos for the model tests (and ``benchmarks/gpu_check.py``).

The stand-ins follow the real checkpoints' on-disk and API contracts
(``shared/spec/model-contracts.md``) so the production loaders are what the tests exercise:

* Cosmos-Embed1: ``<model_dir>/nvidia/Cosmos-Embed1-<variant>/`` with ``config.json``
  (``model_type`` ``cosmos-embed1``, ``auto_map`` to the remote code), the remote-code modules
  ``configuration_embed1.py``, ``modeling_embed1.py`` (importing ``modeling_vit``,
  ``modeling_qformer`` and ``modeling_outputs`` like the real one), ``preprocessing_embed1.py``
  (a ``ProcessorMixin`` with a BERT tokenizer and ``resolution`` / ``num_video_frames`` /
  ``max_txt_len``), ``processor_config.json``, ``vocab.txt`` and sharded safetensors with an
  index. The architecture is BLIP-2-like (ViT per frame, learned temporal embedding, Q-Former
  queries cross-attending to all frames' tokens, mean-pooled projection, L2-normalised); sizes
  are parameters so the GPU check can build one the size of the real 224p model.
* CLIP: a tiny ``CLIPConfig`` (projection 768, image 224) saved with ``save_pretrained``, the
  OpenAI preprocessing config and a byte-level BPE tokenizer from a small vocabulary.
* The aesthetic MLP: ``model.safetensors`` with exactly the LAION state-dict keys and shapes.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import av
import numpy as np

# ---------------------------------------------------------------------------------------------
# Test videos


def second_color(k: int) -> tuple[int, int, int]:
    """The background colour of second ``k`` of ``make_clip`` videos (well apart per second)."""
    palette = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40), (40, 200, 200), (200, 40, 200)]
    return palette[k % len(palette)]


def make_clip(
    seconds: float = 3.0,
    fps: int = 24,
    size: tuple[int, int] = (128, 128),
    *,
    seed: int = 0,
    square: bool = True,
    color_fn: Callable[[int], tuple[int, int, int]] = second_color,
) -> bytes:
    """An H.264 mp4 (in memory): solid colour per second (``color_fn``) with, when ``square``, a
    small grey square moving across it (so frames differ inside a second). ``seed`` shifts the
    square's path so two clips differ."""
    w, h = size
    n = int(round(seconds * fps))
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "18", "preset": "ultrafast", "tune": "zerolatency"}
        for i in range(n):
            img = np.empty((h, w, 3), np.uint8)
            img[:] = color_fn(i // fps)
            if square:
                s = max(4, w // 8)
                x = (seed * 17 + i * 3) % (w - s)
                y = (seed * 29 + i * 2) % (h - s)
                img[y : y + s, x : x + s] = 128
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def all_frames(clip: bytes) -> list[np.ndarray]:
    """Every decoded frame, independently of the production decoder."""
    with av.open(io.BytesIO(clip)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


# ---------------------------------------------------------------------------------------------
# Cosmos-Embed1 stand-in: remote code

CONFIGURATION_EMBED1 = """
from transformers import PretrainedConfig


class CosmosEmbed1Config(PretrainedConfig):
    model_type = "cosmos-embed1"

    def __init__(
        self,
        embed_dim=768,
        num_query_tokens=32,
        max_txt_len=128,
        num_video_frames=8,
        temporal_encoding_type="temporal_parameter",
        resolution=224,
        vocab_size=30523,
        transformer_engine=False,
        use_fp8=False,
        vision_width=1408,
        vision_layers=39,
        vision_heads=16,
        vision_mlp_dim=6144,
        patch_size=14,
        qformer_width=768,
        qformer_layers=12,
        qformer_heads=12,
        qformer_mlp_dim=3072,
        cross_attention_freq=2,
        **kwargs,
    ):
        self.embed_dim = embed_dim
        self.num_query_tokens = num_query_tokens
        self.max_txt_len = max_txt_len
        self.num_video_frames = num_video_frames
        self.temporal_encoding_type = temporal_encoding_type
        self.resolution = resolution
        self.vocab_size = vocab_size
        self.transformer_engine = transformer_engine
        self.use_fp8 = use_fp8
        self.vision_width = vision_width
        self.vision_layers = vision_layers
        self.vision_heads = vision_heads
        self.vision_mlp_dim = vision_mlp_dim
        self.patch_size = patch_size
        self.qformer_width = qformer_width
        self.qformer_layers = qformer_layers
        self.qformer_heads = qformer_heads
        self.qformer_mlp_dim = qformer_mlp_dim
        self.cross_attention_freq = cross_attention_freq
        super().__init__(**kwargs)
"""

MODELING_OUTPUTS = """
from dataclasses import dataclass
from typing import Optional

import torch
from transformers.utils import ModelOutput


@dataclass
class EmbedderVideoOutput(ModelOutput):
    visual_proj: Optional[torch.FloatTensor] = None
    visual_embs: Optional[torch.FloatTensor] = None
    visual_query_output: Optional[torch.FloatTensor] = None


@dataclass
class EmbedderTextOutput(ModelOutput):
    text_proj: Optional[torch.FloatTensor] = None
    text_embs: Optional[torch.FloatTensor] = None
"""

MODELING_VIT = '''
import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    def __init__(self, dim, heads, kv_dim=None):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(kv_dim or dim, dim)
        self.v = nn.Linear(kv_dim or dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, context=None):
        context = x if context is None else context
        b, n, d = x.shape
        m = context.shape[1]
        h = self.heads
        q = self.q(x).view(b, n, h, d // h).transpose(1, 2)
        k = self.k(context).view(b, m, h, d // h).transpose(1, 2)
        v = self.v(context).view(b, m, h, d // h).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_dim):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, mlp_dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """EVA/BLIP-2 style ViT: patch embedding, class token, learned positions, pre-norm blocks."""

    def __init__(self, img_size, patch_size, width, depth, heads, mlp_dim):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size)
        n = (img_size // patch_size) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, width))
        self.blocks = nn.ModuleList([Block(width, heads, mlp_dim) for _ in range(depth)])

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return x
'''

MODELING_QFORMER = '''
from torch import nn

from .modeling_vit import Attention, Mlp


class QFormerLayer(nn.Module):
    """BERT-style post-norm layer; every ``cross_attention_freq``-th layer also attends to the video."""

    def __init__(self, width, heads, mlp_dim, cross_dim, cross):
        super().__init__()
        self.self_attn = Attention(width, heads)
        self.norm1 = nn.LayerNorm(width, eps=1e-12)
        self.cross_attn = Attention(width, heads, kv_dim=cross_dim) if cross else None
        self.norm_cross = nn.LayerNorm(width, eps=1e-12) if cross else None
        self.mlp = Mlp(width, mlp_dim)
        self.norm2 = nn.LayerNorm(width, eps=1e-12)

    def forward(self, q, context):
        q = self.norm1(q + self.self_attn(q))
        if self.cross_attn is not None:
            q = self.norm_cross(q + self.cross_attn(q, context))
        return self.norm2(q + self.mlp(q))


class QFormer(nn.Module):
    def __init__(self, width, layers, heads, mlp_dim, cross_dim, cross_attention_freq):
        super().__init__()
        self.layers = nn.ModuleList(
            [QFormerLayer(width, heads, mlp_dim, cross_dim, i % cross_attention_freq == 0) for i in range(layers)]
        )

    def forward(self, queries, context):
        for layer in self.layers:
            queries = layer(queries, context)
        return queries
'''

MODELING_EMBED1 = '''
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from .configuration_embed1 import CosmosEmbed1Config
from .modeling_outputs import EmbedderTextOutput, EmbedderVideoOutput
from .modeling_qformer import QFormer
from .modeling_vit import VisionTransformer

IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)


class CosmosEmbed1(PreTrainedModel):
    config_class = CosmosEmbed1Config
    base_model_prefix = "cosmos_embed1"
    main_input_name = "videos"

    def __init__(self, config):
        super().__init__(config)
        c = config
        self.visual_encoder = VisionTransformer(
            c.resolution, c.patch_size, c.vision_width, c.vision_layers, c.vision_heads, c.vision_mlp_dim
        )
        self.ln_vision = nn.LayerNorm(c.vision_width)
        self.temporal_embed = nn.Parameter(torch.zeros(1, c.num_video_frames, 1, c.vision_width))
        self.query_tokens = nn.Parameter(torch.zeros(1, c.num_query_tokens, c.qformer_width))
        self.qformer = QFormer(
            c.qformer_width, c.qformer_layers, c.qformer_heads, c.qformer_mlp_dim, c.vision_width, c.cross_attention_freq
        )
        self.vision_proj = nn.Linear(c.qformer_width, c.embed_dim)
        self.word_embeddings = nn.Embedding(c.vocab_size, c.qformer_width)
        self.text_proj = nn.Linear(c.qformer_width, c.embed_dim)
        self.post_init()

    def _init_weights(self, module):
        std = getattr(self.config, "init_std", 0.02)  # stand-in only: larger makes clips' vectors differ more
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
        elif isinstance(module, CosmosEmbed1):
            nn.init.normal_(module.temporal_embed, std=std)
            nn.init.normal_(module.query_tokens, std=std)
        if hasattr(module, "cls_token"):
            nn.init.normal_(module.cls_token, std=std)
            nn.init.normal_(module.pos_embed, std=std)

    def get_video_embeddings(self, videos):
        """``videos``: float (B, T, C, H, W) in [0, 1] (the processor's output)."""
        if videos.ndim != 5:
            raise ValueError(f"videos must be (B, T, C, H, W), got {tuple(videos.shape)}")
        b, t, c, h, w = videos.shape
        if t != self.config.num_video_frames:
            raise ValueError(f"expected {self.config.num_video_frames} frames, got {t}")
        mean = torch.tensor(IMAGE_MEAN, dtype=videos.dtype, device=videos.device).view(1, 1, 3, 1, 1)
        std = torch.tensor(IMAGE_STD, dtype=videos.dtype, device=videos.device).view(1, 1, 3, 1, 1)
        x = ((videos - mean) / std).reshape(b * t, c, h, w)
        tokens = self.visual_encoder(x)
        tokens = tokens.view(b, t, tokens.shape[1], tokens.shape[2]) + self.temporal_embed
        tokens = self.ln_vision(tokens.reshape(b, -1, tokens.shape[-1]))
        queries = self.qformer(self.query_tokens.expand(b, -1, -1), tokens)
        embs = self.vision_proj(queries)
        proj = F.normalize(embs.mean(dim=1), dim=-1)
        return EmbedderVideoOutput(visual_proj=proj, visual_embs=embs, visual_query_output=queries)

    def get_text_embeddings(self, input_ids, attention_mask):
        emb = self.word_embeddings(input_ids)
        mask = attention_mask.unsqueeze(-1).to(emb.dtype)
        pooled = (emb * mask).sum(1) / mask.sum(1).clamp(min=1)
        return EmbedderTextOutput(text_proj=F.normalize(self.text_proj(pooled), dim=-1), text_embs=emb)

    def forward(self, videos=None, input_ids=None, attention_mask=None):
        out = {}
        if videos is not None:
            out["video"] = self.get_video_embeddings(videos)
        if input_ids is not None:
            out["text"] = self.get_text_embeddings(input_ids, attention_mask)
        return out
'''

PREPROCESSING_EMBED1 = """
import numpy as np
import torch
import torch.nn.functional as F
from transformers import BatchFeature
from transformers.processing_utils import ProcessorMixin


class CosmosEmbed1Processor(ProcessorMixin):
    attributes = ["tokenizer"]
    tokenizer_class = ("BertTokenizer", "BertTokenizerFast")

    def __init__(self, tokenizer=None, resolution=448, num_video_frames=8, max_txt_len=128, **kwargs):
        self.resolution = int(resolution)
        self.num_video_frames = int(num_video_frames)
        self.max_txt_len = int(max_txt_len)
        super().__init__(tokenizer, **kwargs)

    def __call__(self, text=None, videos=None, return_tensors="pt"):
        data = {}
        if text is not None:
            tok = self.tokenizer(
                text, padding="max_length", truncation=True, max_length=self.max_txt_len, return_tensors="pt"
            )
            data["input_ids"] = tok["input_ids"]
            data["attention_mask"] = tok["attention_mask"]
        if videos is not None:
            v = torch.from_numpy(np.asarray(videos)) if not isinstance(videos, torch.Tensor) else videos
            if v.ndim != 5:
                raise ValueError(f"videos must be (B, T, C, H, W), got {tuple(v.shape)}")
            b, t, c, h, w = v.shape
            if t != self.num_video_frames:
                raise ValueError(f"expected {self.num_video_frames} frames, got {t}")
            x = v.reshape(b * t, c, h, w).float()
            if v.dtype == torch.uint8:
                x = x / 255.0
            r = self.resolution
            if (h, w) != (r, r):
                x = F.interpolate(x, size=(r, r), mode="bilinear", align_corners=False, antialias=True)
            data["videos"] = x.clamp(0.0, 1.0).reshape(b, t, c, r, r)
        return BatchFeature(data=data, tensor_type=return_tensors)
"""

BERT_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [
    "a", "the", "video", "of", "dog", "cat", "car", "person", "walking", "running", "red", "green", "blue",
    "on", "in", "street", "road", "field", "##s", "##ing",
]  # fmt: skip


@dataclass
class CosmosStandinSize:
    """Architecture sizes of a Cosmos-Embed1 stand-in (defaults: tiny, for CPU tests)."""

    embed_dim: int = 256
    resolution: int = 224
    patch_size: int = 32
    vision_width: int = 32
    vision_layers: int = 2
    vision_heads: int = 2
    vision_mlp_dim: int = 64
    qformer_width: int = 32
    qformer_layers: int = 2
    qformer_heads: int = 2
    qformer_mlp_dim: int = 64
    num_query_tokens: int = 4
    num_video_frames: int = 8
    extra: dict[str, Any] = field(default_factory=dict)


# The real 224p checkpoint's towers, approximately: EVA ViT-g/14 (1408 wide, 39 blocks, 16 heads,
# MLP 6144 — BLIP-2's vision encoder) and a BERT-base Q-Former (768 wide, 12 layers, cross-attention
# every 2nd layer) with 32 queries; embedding 256. About 1.1 B parameters.
REAL_224P_SIZE = CosmosStandinSize(
    embed_dim=256,
    resolution=224,
    patch_size=14,
    vision_width=1408,
    vision_layers=39,
    vision_heads=16,
    vision_mlp_dim=6144,
    qformer_width=768,
    qformer_layers=12,
    qformer_heads=12,
    qformer_mlp_dim=3072,
    num_query_tokens=32,
)


def build_cosmos_standin(
    model_dir: str | Path,
    variant: str = "224p",
    size: CosmosStandinSize | None = None,
    *,
    seed: int = 0,
    max_shard_size: str = "200KB",
    device: str = "cpu",
    dtype: Any = None,
) -> Path:
    """Write a Cosmos-Embed1 stand-in to ``<model_dir>/nvidia/Cosmos-Embed1-<variant>`` and return it.

    The model is instantiated through ``AutoConfig``/``AutoModel.from_config`` with
    ``trust_remote_code`` from the folder's own code, so what is saved is what the loader reads.
    """
    import torch
    from transformers import AutoConfig, AutoModel

    size = size or CosmosStandinSize()
    folder = Path(model_dir) / "nvidia" / f"Cosmos-Embed1-{variant}"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in {
        "configuration_embed1.py": CONFIGURATION_EMBED1,
        "modeling_embed1.py": MODELING_EMBED1,
        "modeling_vit.py": MODELING_VIT,
        "modeling_qformer.py": MODELING_QFORMER,
        "modeling_outputs.py": MODELING_OUTPUTS,
        "preprocessing_embed1.py": PREPROCESSING_EMBED1,
    }.items():
        (folder / name).write_text(text.lstrip())
    config = {
        "model_type": "cosmos-embed1",
        "architectures": ["CosmosEmbed1"],
        "auto_map": {
            "AutoConfig": "configuration_embed1.CosmosEmbed1Config",
            "AutoModel": "modeling_embed1.CosmosEmbed1",
        },
        "embed_dim": size.embed_dim,
        "num_query_tokens": size.num_query_tokens,
        "max_txt_len": 128,
        "num_video_frames": size.num_video_frames,
        "temporal_encoding_type": "temporal_parameter",
        "resolution": size.resolution,
        "vocab_size": len(BERT_VOCAB),
        "transformer_engine": False,
        "use_fp8": False,
        "vision_width": size.vision_width,
        "vision_layers": size.vision_layers,
        "vision_heads": size.vision_heads,
        "vision_mlp_dim": size.vision_mlp_dim,
        "patch_size": size.patch_size,
        "qformer_width": size.qformer_width,
        "qformer_layers": size.qformer_layers,
        "qformer_heads": size.qformer_heads,
        "qformer_mlp_dim": size.qformer_mlp_dim,
        "cross_attention_freq": 2,
        **size.extra,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "processor_config.json").write_text(
        json.dumps(
            {
                "processor_class": "CosmosEmbed1Processor",
                "auto_map": {"AutoProcessor": "preprocessing_embed1.CosmosEmbed1Processor"},
                "resolution": size.resolution,
                "num_video_frames": size.num_video_frames,
                "max_txt_len": 128,
            },
            indent=2,
        )
    )
    (folder / "vocab.txt").write_text("\n".join(BERT_VOCAB) + "\n")
    (folder / "added_tokens.json").write_text("{}")

    cfg = AutoConfig.from_pretrained(str(folder), trust_remote_code=True, local_files_only=True)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModel.from_config(cfg, trust_remote_code=True, **({} if dtype is None else {"torch_dtype": dtype}))
    model.save_pretrained(str(folder), max_shard_size=max_shard_size, safe_serialization=True)
    del model
    return folder


def plant_text_pairs(source: str | Path, dest: str | Path, pairs: dict[str, np.ndarray]) -> Path:
    """A copy of the stand-in folder ``source`` at ``dest`` whose text tower maps each planted query
    to its clip's video vector: ``get_text_embeddings`` of ``query`` then returns exactly that
    vector (normalised), so the planted clip is the query's nearest neighbour.

    The text tower mean-pools word embeddings (padding masked) and projects them with
    ``text_proj``. Each planted query gets a basis direction ``e_j`` of the pooled space: the word
    embeddings of its words are ``e_j`` and ``[CLS]``/``[SEP]`` are zero, so the pool is a positive
    multiple of ``e_j``, and column ``j`` of ``text_proj`` (bias zero) is the clip's vector. Queries
    must not share words. The copy is saved with ``save_pretrained`` and loaded back by the
    production path (``from_pretrained``), like any checkpoint; the video tower is unchanged.
    """
    import shutil

    import torch
    from transformers import AutoModel, AutoProcessor

    source, dest = Path(source), Path(dest)
    shutil.copytree(source, dest)
    model = AutoModel.from_pretrained(str(dest), trust_remote_code=True, local_files_only=True)
    processor = AutoProcessor.from_pretrained(str(dest), trust_remote_code=True, local_files_only=True)
    width = model.word_embeddings.weight.shape[1]
    if len(pairs) > width:
        raise ValueError(f"at most {width} planted pairs (the stand-in's text width)")
    special = set(processor.tokenizer.all_special_ids)
    used: dict[int, str] = {}
    with torch.no_grad():
        for tid in special:
            model.word_embeddings.weight[tid] = 0.0
        model.text_proj.bias.zero_()
        for j, (query, vector) in enumerate(pairs.items()):
            ids = [t for t in processor.tokenizer(query)["input_ids"] if t not in special]
            if not ids or processor.tokenizer.unk_token_id in ids:
                raise ValueError(f"planted query {query!r} has words outside the stand-in's vocabulary")
            for tid in ids:
                if used.get(tid, query) != query:
                    raise ValueError(f"planted queries {used[tid]!r} and {query!r} share a word")
                used[tid] = query
                model.word_embeddings.weight[tid] = 0.0
                model.word_embeddings.weight[tid, j] = 1.0
            model.text_proj.weight[:, j] = torch.as_tensor(np.asarray(vector, np.float32))
    for old in dest.glob("*.safetensors"):
        old.unlink()
    model.save_pretrained(str(dest), max_shard_size="200KB", safe_serialization=True)
    return dest


# ---------------------------------------------------------------------------------------------
# CLIP + aesthetic MLP stand-ins

MLP_SHAPES: dict[str, tuple[int, ...]] = {
    "layers.0.weight": (1024, 768),
    "layers.0.bias": (1024,),
    "layers.2.weight": (128, 1024),
    "layers.2.bias": (128,),
    "layers.4.weight": (64, 128),
    "layers.4.bias": (64,),
    "layers.6.weight": (16, 64),
    "layers.6.bias": (16,),
    "layers.7.weight": (1, 16),
    "layers.7.bias": (1,),
}


def make_mlp_state(seed: int = 0) -> dict[str, Any]:
    """Float32 tensors with the LAION predictor's exact keys; the output lands near 5 like AVA scores."""
    import torch

    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in MLP_SHAPES.items():
        fan_in = shape[1] if len(shape) == 2 else 1
        state[key] = (torch.randn(shape, generator=g) / fan_in**0.5).float().contiguous()
    state["layers.7.bias"] = torch.tensor([5.0])
    return state


def write_mlp(model_dir: str | Path, state: dict[str, Any] | None = None) -> Path:
    from safetensors.torch import save_file

    folder = Path(model_dir) / "ttj" / "sac-logos-ava1-l14-linearMSE"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.safetensors"
    save_file(state if state is not None else make_mlp_state(), str(path))
    return path


def _byte_level_vocab() -> tuple[dict[str, int], list[str]]:
    from transformers.models.clip.tokenization_clip import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    vocab_list = chars + [c + "</w>" for c in chars]
    merges = ["t h", "th e</w>", "v i", "vi d", "vid e", "vide o</w>", "d o", "do g</w>", "c a", "ca t</w>"]
    for m in merges:
        vocab_list.append(m.replace(" ", ""))
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(vocab_list)}, merges


def build_clip_standin(model_dir: str | Path, *, seed: int = 0) -> Path:
    """A tiny CLIP (projection 768, 224 px images) at ``<model_dir>/openai/clip-vit-large-patch14``."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizerFast

    folder = Path(model_dir) / "openai" / "clip-vit-large-patch14"
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = _byte_level_vocab()
    tok_dir = folder / "_tok"
    tok_dir.mkdir(exist_ok=True)
    (tok_dir / "vocab.json").write_text(json.dumps(vocab))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    fast = CLIPTokenizerFast(vocab_file=str(tok_dir / "vocab.json"), merges_file=str(tok_dir / "merges.txt"))
    config = CLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 77,
            "bos_token_id": vocab["<|startoftext|>"],
            "eos_token_id": vocab["<|endoftext|>"],
            "pad_token_id": vocab["<|endoftext|>"],
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 224,
            "patch_size": 32,
        },
        projection_dim=768,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config)
    model.save_pretrained(str(folder), safe_serialization=True)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": 224},
        crop_size={"height": 224, "width": 224},
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
    )
    CLIPProcessor(image_processor=image_processor, tokenizer=fast).save_pretrained(str(folder))
    for p in tok_dir.iterdir():
        p.unlink()
    tok_dir.rmdir()
    return folder


# ---------------------------------------------------------------------------------------------
# A chat-completions server for the caption tests


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


Responder = Callable[["ChatServer", Received], tuple[int, Any]]


class ChatServer:
    """An OpenAI-compatible ``/v1/chat/completions`` endpoint on 127.0.0.1 (port 0), in a thread.

    Every request is recorded in ``received``. ``script`` is a list of responders used for the
    first requests in order (then ``default``); a responder returns ``(status, json_or_bytes)``
    and may sleep. ``max_in_flight`` records the peak number of concurrent requests.
    """

    def __init__(self, default: Responder | None = None):
        self.received: list[Received] = []
        self.script: list[Responder] = []
        self.default: Responder = default or echo_responder
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"_raw": raw.decode("utf-8", "replace")}
                rec = Received(self.path, {k: v for k, v in self.headers.items()}, body)
                with owner.lock:
                    owner.received.append(rec)
                    responder = owner.script.pop(0) if owner.script else owner.default
                    owner.in_flight += 1
                    owner.max_in_flight = max(owner.max_in_flight, owner.in_flight)
                try:
                    status, payload = responder(owner, rec)
                finally:
                    with owner.lock:
                        owner.in_flight -= 1
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="chat-server", daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def chat_answer(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": "test",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
    }


def request_images(body: dict[str, Any]) -> list[np.ndarray]:
    """The images of a chat request, decoded to uint8 RGB arrays."""
    import base64

    from PIL import Image

    out = []
    for message in body.get("messages", []):
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for part in content:
            if part.get("type") == "image_url":
                url = part["image_url"]["url"]
                assert url.startswith("data:image/jpeg;base64,"), url[:40]
                data = base64.b64decode(url.split(",", 1)[1])
                out.append(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    return out


def echo_responder(server: ChatServer, rec: Received) -> tuple[int, Any]:
    """Answers with the number of images and the first image's mean colour (or echoes text)."""
    images = request_images(rec.body)
    if images:
        mean = images[0].reshape(-1, 3).mean(0)
        return 200, chat_answer(f"images={len(images)} first_mean={','.join(str(int(round(c))) for c in mean)}")
    last = rec.body["messages"][-1]["content"]
    return 200, chat_answer(f"enhanced: {last}")
