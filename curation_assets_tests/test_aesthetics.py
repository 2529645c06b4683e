"""Aesthetic scores (CLIP ViT-L/14 + LAION MLP) through the production loader, on stand-ins."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from curation_assets.models import AestheticScorer, ClipError, ModelLoadError, ModelWeightsMissing, clear_model_cache
from curation_assets.models.aesthetics import ERROR_BUFFER, image_features, preprocess_frames
from curation_assets.models.frames import decode_frames
from curation_assets_tests.model_fixtures import (
    MLP_SHAPES,
    all_frames,
    build_clip_standin,
    make_clip,
    make_mlp_state,
    write_mlp,
)

MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    build_clip_standin(root)
    write_mlp(root)
    return root


@pytest.fixture(scope="module")
def clips() -> list[bytes]:
    return [make_clip(3.0, seed=0), make_clip(4.0, seed=1, size=(160, 96)), make_clip(1.0, seed=2)]


def _reference_scores(model_dir: Path, clip: bytes) -> np.ndarray:
    """Per-frame scores computed independently: every decoded frame at t = 0, 1, 2 ... s, the
    HF CLIP model, L2 normalisation, and the MLP as plain matrix products over the saved state."""
    from safetensors.torch import load_file
    from transformers import CLIPModel

    frames = all_frames(clip)
    # The reference samples t = 0, 1, ... up to the last timestamp + 0.5 s, each taking the closest
    # frame: at 24 fps that is every 24th frame plus the last frame when the clip ends within
    # half a second after a whole second (a 3 s clip: frames 0, 24, 48 and 71).
    last = (len(frames) - 1) / 24
    picked = np.stack([frames[min(round(t * 24), len(frames) - 1)] for t in np.arange(0, last + 0.5, 1.0)])
    clip_model = CLIPModel.from_pretrained(str(model_dir / "openai" / "clip-vit-large-patch14")).eval()
    pixels = preprocess_frames(picked, 224, (224, 224), MEAN, STD)
    with torch.no_grad():
        feats = image_features(clip_model, pixels).float()
    x = feats / feats.norm(dim=-1, keepdim=True)
    state = load_file(str(model_dir / "ttj" / "sac-logos-ava1-l14-linearMSE" / "model.safetensors"))
    for i in (0, 2, 4, 6, 7):  # Dropout layers (1, 3, 5) are identities at inference
        x = x @ state[f"layers.{i}.weight"].T + state[f"layers.{i}.bias"]
    return x.squeeze(-1).numpy()


def test_scores_match_an_independent_computation(model_dir: Path, clips: list[bytes]) -> None:
    scorer = AestheticScorer(model_dir=model_dir)
    assert scorer.resolve()[1].name == "model.safetensors"
    scores = scorer.score_clips(clips)
    assert all(isinstance(s, float) for s in scores)
    for clip, score in zip(clips, scores):
        ref = _reference_scores(model_dir, clip)
        assert abs(score - float(ref.min())) < 1e-4
    means = AestheticScorer(model_dir=model_dir, reduction="mean").score_clips(clips)
    for clip, score in zip(clips, means):
        assert abs(score - float(_reference_scores(model_dir, clip).mean())) < 1e-4
    assert all(m >= s - 1e-6 for m, s in zip(means, scores))


def test_frames_at_one_fps(clips: list[bytes]) -> None:
    # 3 s at 24 fps: samples at t = 0, 1, 2, 3 (stop = last timestamp 2.958 + 0.5); 3.0 takes
    # the last frame. 4 s: t = 0 .. 4. 1 s: t = 0, 1.
    assert len(decode_frames(clips[0], 1.0)) == 4
    assert len(decode_frames(clips[1], 1.0)) == 5
    assert len(decode_frames(clips[2], 1.0)) == 2
    got = decode_frames(clips[0], 1.0)
    frames = all_frames(clips[0])
    assert len(got) == 4
    for g, i in zip(got, (0, 24, 48, 71)):
        np.testing.assert_array_equal(g, frames[i])


def test_deterministic_and_batching_invariant(model_dir: Path, clips: list[bytes]) -> None:
    big = AestheticScorer(model_dir=model_dir, batch_size=64).score_clips(clips)
    small = AestheticScorer(model_dir=model_dir, batch_size=2, decode_workers=0).score_clips(clips)
    alone = [AestheticScorer(model_dir=model_dir).score_clips([c])[0] for c in clips]
    again = AestheticScorer(model_dir=model_dir, batch_size=64).score_clips(clips)
    assert big == again
    np.testing.assert_allclose(big, small, atol=1e-5)
    np.testing.assert_allclose(big, alone, atol=1e-5)


def test_preprocessing_matches_clip_processor_geometry() -> None:
    """Our tensor preprocessing (the reference's torchvision path) against transformers' PIL one:
    same crop, channel order and normalisation; only the resampling filter differs slightly."""
    from transformers import CLIPImageProcessor

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(36, 60, 3), dtype=np.uint8)
    frame = np.kron(base, np.ones((8, 8, 1), dtype=np.uint8))  # 288 x 480, 8 px blocks
    ours = preprocess_frames(frame[None], 224, (224, 224), MEAN, STD)[0].numpy()
    theirs = CLIPImageProcessor(image_mean=MEAN, image_std=STD)(images=[frame], return_tensors="np")["pixel_values"][0]
    assert ours.shape == theirs.shape == (3, 224, 224)
    assert np.abs(ours - theirs).mean() < 0.01  # a 2 px crop offset gives ~0.12, BGR ~0.5


def test_image_features_accepts_output_objects() -> None:
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    feats = torch.randn(2, 768)

    class Fake:
        class config:  # noqa: N801
            projection_dim = 768

        def get_image_features(self, pixel_values):  # transformers 5 style
            return BaseModelOutputWithPooling(last_hidden_state=torch.randn(2, 50, 1024), pooler_output=feats)

    assert image_features(Fake(), torch.zeros(2, 3, 224, 224)) is feats


def test_errors_per_clip(model_dir: Path, clips: list[bytes]) -> None:
    errors: dict[int, ClipError] = {}
    out = AestheticScorer(model_dir=model_dir).score_clips([b"", clips[0], b"garbage"], errors=errors)
    assert out[0] is None and out[2] is None and isinstance(out[1], float)
    assert errors[0] == ClipError(ERROR_BUFFER, "empty")
    assert errors[2].key.startswith("frames-")


def test_missing_mlp_weights(tmp_path: Path) -> None:
    build_clip_standin(tmp_path)
    cache = tmp_path / "hf-cache"
    scorer = AestheticScorer(model_dir=tmp_path, cache_dir=cache)
    with pytest.raises(ModelWeightsMissing) as info:
        scorer.score_clips([b"x"])
    folder = tmp_path / "ttj" / "sac-logos-ava1-l14-linearMSE"
    msg = str(info.value)
    assert str(folder) in msg and str(cache) in msg
    assert f"huggingface-cli download ttj/sac-logos-ava1-l14-linearMSE model.safetensors --local-dir {folder}" in msg


def test_missing_clip_weights(tmp_path: Path) -> None:
    write_mlp(tmp_path)
    with pytest.raises(ModelWeightsMissing) as info:
        AestheticScorer(model_dir=tmp_path, cache_dir=tmp_path / "c").resolve()
    assert "huggingface-cli download openai/clip-vit-large-patch14" in str(info.value)
    assert str(tmp_path / "openai" / "clip-vit-large-patch14") in str(info.value)


def test_mlp_state_dict_is_loaded_strictly(tmp_path: Path, clips: list[bytes]) -> None:
    build_clip_standin(tmp_path)
    state = make_mlp_state()
    assert set(state) == set(MLP_SHAPES)
    state["layers.8.weight"] = torch.zeros(1)  # an unexpected key
    write_mlp(tmp_path, state)
    with pytest.raises(ModelLoadError, match="layers.8.weight"):
        AestheticScorer(model_dir=tmp_path).score_clips(clips[:1])


def teardown_module() -> None:
    clear_model_cache()
