"""Captions against a real chat-completions HTTP server running in the test process."""

from __future__ import annotations

import logging
import socket
import time

import numpy as np
import pytest

from curation_assets.models import CaptionClient
from curation_assets.models.frames import decode_frames
from curation_assets_tests.model_fixtures import (
    ChatServer,
    Received,
    all_frames,
    chat_answer,
    echo_responder,
    make_clip,
    request_images,
    second_color,
)

FPS = 24
KEY_ENV = "CURATION_TEST_CAPTION_KEY"
SECRET = "sk-test-5ecret-0123456789"


@pytest.fixture(scope="module")
def clip() -> bytes:
    # 4 s, 24 fps, one solid colour per second: second k has second_color(k).
    return make_clip(4.0, FPS, (128, 128), square=False)


@pytest.fixture
def server():
    with ChatServer() as s:
        yield s


def client_for(server: ChatServer, **kw) -> CaptionClient:
    kw.setdefault("backoff_s", 0.01)
    kw.setdefault("max_backoff_s", 0.05)
    kw.setdefault("timeout_s", 5)
    return CaptionClient(server.base_url, kw.pop("model", "Qwen/Qwen2.5-VL-7B-Instruct"), **kw)


def mean_color(img: np.ndarray) -> np.ndarray:
    return img.reshape(-1, 3).mean(0)


def fail_with(status: int, body=None):
    def responder(server: ChatServer, rec: Received):
        return status, body if body is not None else {"error": {"message": f"status {status}"}}

    return responder


def test_images_are_the_windows_frames(server: ChatServer, clip: bytes) -> None:
    client = client_for(server, prompt="Describe this window.")
    result = client.caption_window(clip, 24, 71)  # seconds 1 and 2 of the clip
    assert result.ok and result.text.startswith("images=5"), result
    assert len(server.received) == 1
    rec = server.received[0]
    assert rec.path == "/v1/chat/completions"
    assert rec.body["model"] == "Qwen/Qwen2.5-VL-7B-Instruct"
    parts = rec.body["messages"][0]["content"]
    assert parts[-1] == {"type": "text", "text": "Describe this window."}
    assert [p["type"] for p in parts[:-1]] == ["image_url"] * 5

    images = request_images(rec.body)
    # 2 fps from the window's first frame (t = 1.0 s): 1.0, 1.5, 2.0, 2.5 and 3.0 s, the last one
    # past the window's end, so its last frame (71): source frames 24, 36, 48, 60, 71.
    frames = all_frames(clip)
    expected_idx = [24, 36, 48, 60, 71]
    assert len(images) == len(expected_idx)
    for img, i in zip(images, expected_idx):
        assert img.shape == (128, 128, 3)
        assert np.abs(mean_color(img) - mean_color(frames[i])).max() < 4
        assert np.abs(mean_color(img) - np.array(second_color(i // FPS))).max() < 8
    # ... and they are what the production decoder gives for that window.
    window = decode_frames(clip, 2.0, start_frame=24, end_frame=71)
    assert len(window) == 5
    for img, f in zip(images, window):
        assert np.abs(mean_color(img) - mean_color(f)).max() < 4


def test_each_window_gets_its_own_frames(server: ChatServer, clip: bytes) -> None:
    windows = [(0, 23), (24, 47), (48, 71), (72, 95)]
    results = client_for(server, max_concurrency=4).caption_windows(clip, windows)
    assert len(results) == 4 and len(server.received) == 4
    for k, result in enumerate(results):
        assert result.ok, result
        n, mean = result.text.split()
        assert n == "images=3"  # t = 0, 0.5 and 1.0 s (past the end: the window's last frame)
        got = np.array([int(c) for c in mean.split("=")[1].split(",")])
        assert np.abs(got - np.array(second_color(k))).max() < 8, (k, got)


def test_retries_a_500_then_succeeds(server: ChatServer, clip: bytes) -> None:
    server.script = [fail_with(500)]
    result = client_for(server, max_retries=3).caption_window(clip, 0, 23)
    assert result.ok and result.attempts == 2
    assert len(server.received) == 2
    assert server.received[0].body == server.received[1].body


def test_gives_up_after_the_retries_without_raising(server: ChatServer, clip: bytes) -> None:
    server.default = fail_with(503)
    results = client_for(server, max_retries=2).caption_windows(clip, [(0, 23), (24, 47)])
    assert all(not r.ok and "HTTP 503" in r.error and r.attempts == 3 for r in results)
    assert len(server.received) == 6


def test_client_errors_are_not_retried(server: ChatServer, clip: bytes) -> None:
    server.script = [fail_with(400, {"error": {"message": "too many images"}})]
    result = client_for(server, max_retries=3).caption_window(clip, 0, 23)
    assert not result.ok and result.attempts == 1
    assert "HTTP 400" in result.error and "too many images" in result.error
    assert len(server.received) == 1


def test_api_key_is_sent_but_never_logged(
    server: ChatServer, clip: bytes, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    caplog.set_level(logging.DEBUG)
    client = client_for(server, api_key_env=KEY_ENV, max_retries=1)
    ok = client.caption_window(clip, 0, 23)
    assert ok.ok
    assert server.received[-1].headers.get("Authorization") == f"Bearer {SECRET}"
    assert all(SECRET not in p["image_url"]["url"] for p in server.received[-1].body["messages"][0]["content"][:-1])

    # A server that echoes the key in its error body: the key must not reach errors or logs.
    server.default = fail_with(500, {"error": {"message": f"bad key Bearer {SECRET}"}})
    failed = client.caption_window(clip, 0, 23)
    assert not failed.ok and failed.attempts == 2
    assert SECRET not in failed.error and "***" in failed.error
    assert SECRET not in caplog.text and "retry 1/1" in caplog.text
    assert SECRET not in repr(client) and SECRET not in str(vars(client))


def test_no_key_no_authorization_header(server: ChatServer, clip: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    assert client_for(server, api_key_env=KEY_ENV).caption_window(clip, 0, 23).ok
    assert "Authorization" not in server.received[-1].headers


def test_connection_errors_are_retried_then_reported(clip: bytes) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: connection refused
    client = CaptionClient(f"http://127.0.0.1:{port}/v1", "m", max_retries=2, backoff_s=0.01, timeout_s=2)
    result = client.caption_window(clip, 0, 23)
    assert not result.ok and result.attempts == 3 and "connection error" in result.error


def test_timeout_is_retried(server: ChatServer, clip: bytes) -> None:
    def slow(s: ChatServer, rec: Received):
        time.sleep(1.0)
        return echo_responder(s, rec)

    server.script = [slow]
    result = client_for(server, timeout_s=0.3, max_retries=2).caption_window(clip, 0, 23)
    assert result.ok and result.attempts == 2


def test_concurrency_limit(server: ChatServer, clip: bytes) -> None:
    def slow(s: ChatServer, rec: Received):
        time.sleep(0.15)
        return echo_responder(s, rec)

    server.default = slow
    windows = [(0, 11), (12, 23), (24, 35), (36, 47), (48, 59), (60, 71)]
    results = client_for(server, max_concurrency=2).caption_windows(clip, windows)
    assert all(r.ok for r in results) and len(server.received) == 6
    assert server.max_in_flight == 2


def test_enhance(server: ChatServer) -> None:
    client = client_for(server, enhance_model="Qwen/Qwen2.5-14B-Instruct", enhance_prompt="Make it richer.")
    assert client.enhance_key == "qwen_lm" and client.caption_key == "qwen"
    result = client.enhance("a red screen")
    assert result.ok and result.text == "enhanced: a red screen"
    body = server.received[-1].body
    assert body["model"] == "Qwen/Qwen2.5-14B-Instruct"
    assert body["messages"] == [
        {"role": "system", "content": "Make it richer."},
        {"role": "user", "content": "a red screen"},
    ]
    many = client.enhance_many(["one", "two"])
    assert [r.text for r in many] == ["enhanced: one", "enhanced: two"]
    assert not client_for(server).enhance("x").ok  # no enhance model configured: an error, no raise


def test_bad_clip_and_empty_answers_are_per_window_errors(server: ChatServer, clip: bytes) -> None:
    client = client_for(server)
    results = client.caption_clips([(b"not a video", [(0, 10), (11, 20)]), (clip, [(0, 23)])])
    assert [r.ok for r in results[0]] == [False, False] and "decode" in results[0][0].error
    assert results[1][0].ok
    server.script = [lambda s, r: (200, chat_answer("   "))]
    assert "empty" in client.caption_window(clip, 0, 23).error


def test_max_frames_and_image_size(server: ChatServer, clip: bytes) -> None:
    client_for(server, max_frames=3, max_image_side=64).caption_window(clip, 0, 95)
    images = request_images(server.received[-1].body)
    assert len(images) == 3 and images[0].shape == (64, 64, 3)
