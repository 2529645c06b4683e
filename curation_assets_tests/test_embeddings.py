"""Cosmos-Embed1 embeddings through the production loader, on a stand-in checkpoint built locally."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from curation_assets.models import ClipError, ClipFailure, CosmosEmbedder, ModelWeightsMissing, clear_model_cache
from curation_assets.models.embeddings import (
    ERROR_BUFFER,
    ERROR_FRAMES,
    ERROR_TOO_SHORT,
    cosmos_folder_is_complete,
    normalize_variant,
)
from curation_assets.models.frames import frames_for_embedding, sample_evenly, sample_times
from curation_assets_tests.model_fixtures import CosmosStandinSize, all_frames, build_cosmos_standin, make_clip


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    build_cosmos_standin(root, "224p")
    return root


@pytest.fixture(scope="module")
def clips() -> dict[str, bytes]:
    return {
        "a": make_clip(3.0, seed=0),
        "b": make_clip(4.0, seed=1),
        "c": make_clip(2.0, seed=2, size=(160, 96)),  # another resolution in the same batch
        "short": make_clip(0.5, seed=3),  # 12 frames: needs re-decoding at 16 fps
        "too_short": make_clip(4 / 24, seed=4),  # 4 frames: fewer than 8 even at 20 fps
    }


@pytest.fixture(scope="module")
def embedder(model_dir: Path) -> CosmosEmbedder:
    return CosmosEmbedder("cosmos-embed1-224p", model_dir=model_dir, batch_size=4)


@pytest.mark.parametrize("missing", ["config.json", "processor_config.json", "*.safetensors"])
def test_a_folder_without_what_the_reference_requires_is_incomplete(model_dir: Path, tmp_path: Path,
                                                                     missing: str) -> None:
    """The reference's completeness test: weights (``*.safetensors``, here sharded), a
    ``processor_config.json`` and a ``config.json``; without any one of them the folder is not
    used and the error says so."""
    folder = tmp_path / "nvidia" / "Cosmos-Embed1-224p"
    shutil.copytree(model_dir / "nvidia" / "Cosmos-Embed1-224p", folder)
    assert cosmos_folder_is_complete(folder)
    removed = list(folder.glob(missing))
    assert removed
    for path in removed:
        path.unlink()
    assert not cosmos_folder_is_complete(folder)
    with pytest.raises(ModelWeightsMissing, match="incomplete"):
        CosmosEmbedder("cosmos-embed1-224p", model_dir=tmp_path, cache_dir=tmp_path / "hub").resolve()


def test_the_model_and_processor_load_through_the_auto_classes(model_dir: Path, embedder: CosmosEmbedder) -> None:
    folder = model_dir / "nvidia" / "Cosmos-Embed1-224p"
    assert embedder.resolve() == folder
    model, processor = embedder.load()
    # Loaded through AutoModel / AutoProcessor with remote code from that folder.
    assert type(model).__name__ == "CosmosEmbed1" and type(model).__module__.startswith("transformers_modules")
    assert type(processor).__name__ == "CosmosEmbed1Processor"
    assert processor.num_video_frames == 8 and processor.resolution == 224
    assert model.config.embed_dim == 256
    assert str(embedder.device) == "cpu" and str(embedder.dtype) == "torch.float32"


def test_shapes_dtype_and_norm(embedder: CosmosEmbedder, clips: dict[str, bytes]) -> None:
    vectors = embedder.embed_clips([clips["a"], clips["b"]])
    assert len(vectors) == 2
    for v in vectors:
        assert isinstance(v, np.ndarray) and v.shape == (256,) and v.dtype == np.float32
        assert np.isfinite(v).all()
        assert abs(float(np.linalg.norm(v)) - 1.0) < 1e-5
    assert not np.allclose(vectors[0], vectors[1], atol=1e-4), "different clips must embed differently"
    assert embedder.embedding_dim == embedder.expected_dim == 256


def test_deterministic_and_batching_invariant(embedder: CosmosEmbedder, clips: dict[str, bytes]) -> None:
    order = [clips["a"], clips["b"], clips["c"], clips["short"], clips["a"]]
    batched = embedder.embed_clips(order)  # batch_size 4: a batch of 4 and a batch of 1
    again = embedder.embed_clips(order)
    for x, y in zip(batched, again):
        np.testing.assert_array_equal(x, y)
    alone = [
        CosmosEmbedder(model_dir=embedder.model_dir, batch_size=1, decode_workers=0).embed_clips([c])[0] for c in order
    ]
    for x, y in zip(batched, alone):
        np.testing.assert_allclose(x, y, atol=1e-5, rtol=0)
    np.testing.assert_allclose(batched[0], batched[4], atol=1e-5, rtol=0)


def test_model_loads_once_per_process(model_dir: Path, embedder: CosmosEmbedder) -> None:
    other = CosmosEmbedder("224p", model_dir=str(model_dir), batch_size=8)
    assert other.load()[0] is embedder.load()[0]
    assert other.load()[1] is embedder.load()[1]


def test_frames_follow_the_reference_sampling(clips: dict[str, bytes]) -> None:
    clip = clips["a"]  # 3 s at 24 fps: 72 frames, timestamps k/24
    frames = all_frames(clip)
    ts = np.arange(72, dtype=np.float32) / 24
    # 2 fps gives samples 0, 0.5, ..., 3.0 -> 7 frames (< 8), so the reference doubles to 4 fps:
    assert len(sample_times(ts, 2.0)) == 7
    idx4 = sample_times(ts, 4.0)
    assert list(idx4) == [0, 6, 12, 18, 24, 30, 36, 42, 48, 54, 60, 66, 71]
    expected = [frames[i] for i in sample_evenly(list(idx4), 8)]  # step 13 // 8 = 1: the first 8
    got = frames_for_embedding(clip, 8)
    assert len(got) == 8
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)
    assert sample_evenly(list(range(21)), 8) == [0, 2, 4, 6, 8, 10, 12, 14]

    short = frames_for_embedding(clips["short"], 8)  # 12 frames: 2 -> 4 -> 8 -> 16 fps
    assert len(short) == 8 and all(f.dtype == np.uint8 and f.shape == (128, 128, 3) for f in short)


def test_per_clip_errors_do_not_stop_the_others(embedder: CosmosEmbedder, clips: dict[str, bytes]) -> None:
    errors: dict[int, ClipError] = {}
    out = embedder.embed_clips([clips["a"], b"", b"not a video at all", clips["too_short"], clips["b"]], errors=errors)
    assert out[0] is not None and out[4] is not None
    assert out[1] is None and out[2] is None and out[3] is None
    assert errors[1] == ClipError(ERROR_BUFFER, "empty")
    assert errors[2].key == ERROR_FRAMES
    assert errors[3].key == ERROR_TOO_SHORT and "too short" in errors[3].message
    np.testing.assert_allclose(out[0], embedder.embed_clips([clips["a"]])[0], atol=1e-5)
    with pytest.raises(ClipFailure, match="cosmos_embed1_frames: clip too short"):
        embedder.embed_clips([clips["too_short"]])


def test_missing_weights_name_the_folder_and_the_command(tmp_path: Path) -> None:
    model_dir = tmp_path / "models"
    cache = tmp_path / "hf-cache"
    embedder = CosmosEmbedder("cosmos-embed1-224p", model_dir=model_dir, cache_dir=cache)
    with pytest.raises(ModelWeightsMissing) as info:
        embedder.resolve()
    folder = model_dir / "nvidia" / "Cosmos-Embed1-224p"
    msg = str(info.value)
    assert str(folder) in msg and str(cache) in msg
    command = f"huggingface-cli download nvidia/Cosmos-Embed1-224p --local-dir {folder}"
    assert command in msg and info.value.download_command == command
    assert not folder.exists(), "offline by default: nothing is created or fetched"

    # A folder with code but no weights is reported as incomplete, with the same command.
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    with pytest.raises(ModelWeightsMissing, match="incomplete"):
        CosmosEmbedder(model_dir=model_dir, cache_dir=cache).resolve()

    # Without a model_dir the command downloads into the Hugging Face cache.
    with pytest.raises(ModelWeightsMissing) as info:
        CosmosEmbedder("336p", cache_dir=cache).load()
    assert "huggingface-cli download nvidia/Cosmos-Embed1-336p" in str(info.value)


def test_hugging_face_cache_is_used_when_model_dir_lacks_weights(model_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    repo = cache / "models--nvidia--Cosmos-Embed1-224p"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snap = repo / "snapshots" / commit
    shutil.copytree(model_dir / "nvidia" / "Cosmos-Embed1-224p", snap)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    embedder = CosmosEmbedder(model_dir=tmp_path / "empty", cache_dir=cache)
    assert embedder.resolve() == snap


def test_allowed_download_that_fails_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # no network here: make it fail fast
    embedder = CosmosEmbedder(model_dir=tmp_path, cache_dir=tmp_path / "hub", allow_download=True)
    with pytest.raises(ModelWeightsMissing, match="download failed") as info:
        embedder.resolve()
    assert "huggingface-cli download nvidia/Cosmos-Embed1-224p" in str(info.value)


def test_closest_sampling_ties_go_left() -> None:
    from curation_assets.models.frames import closest_indices

    src = np.array([0.0, 1.0, 2.0], dtype=np.float32)
    dst = np.array([0.5, 1.4, 1.6, 5.0], dtype=np.float32)
    assert list(closest_indices(src, dst)) == [0, 1, 2, 2]


def test_variant_names() -> None:
    assert normalize_variant("224p") == "cosmos-embed1-224p"
    assert normalize_variant("Cosmos-Embed1-448p") == "cosmos-embed1-448p"
    with pytest.raises(ValueError, match="unknown embedding algorithm 'cosmos-embed1-999p'"):
        normalize_variant("cosmos-embed1-999p")


def test_768_dim_variant(tmp_path: Path, clips: dict[str, bytes]) -> None:
    build_cosmos_standin(tmp_path, "336p", CosmosStandinSize(embed_dim=768, resolution=96, patch_size=16), seed=1)
    embedder = CosmosEmbedder("cosmos-embed1-336p", model_dir=tmp_path)
    (v,) = embedder.embed_clips([clips["c"]])
    assert v.shape == (768,) and v.dtype == np.float32 and embedder.expected_dim == 768


def teardown_module() -> None:
    clear_model_cache()
