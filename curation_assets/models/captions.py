"""Window captions through an OpenAI-compatible chat-completions endpoint (e.g. vLLM + Qwen2.5-VL).

Per window, the clip's frames inside the window's frame range are sampled at 2 fps (the same
sampling as the reference's frame extraction, with times starting at the window's first frame),
JPEG-encoded and sent as base64 ``image_url`` content parts followed by the prompt. With frames
stored by the frame tap (:mod:`.tap`: the same frames, taken off the transcode's decode pass and
already JPEG-encoded with this client's settings) nothing is decoded.
``enhance(text)`` sends a caption to a text model (``qwen_lm`` in the reference's key names).
:class:`CaptionModels` holds one client per caption model, in the order the layout writes them.

Only the standard library is used for HTTP. The API key is read from an environment variable at
request time, sent only in the ``Authorization`` header, and scrubbed from every log line and
error message. Failures are per window: a window that fails gets a ``CaptionResult`` with an
``error`` and no text; the other windows of the clip are unaffected.

Serving note: vLLM limits images per prompt (``--limit-mm-per-prompt``); a 256-frame window at
24 fps gives about 22 images at 2 fps, so start vLLM with e.g. ``--limit-mm-per-prompt
'{"image": 32}'`` or set ``max_frames`` here.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import logging
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from .frame_store import CaptionFrames, FrameStoreError, StoredFrames
from .frames import CAPTION_FPS, decode_windows

log = logging.getLogger(__name__)

# The reference's default prompts (NeMo Curator's Qwen caption and enhancement stages).
DEFAULT_CAPTION_PROMPT = "Elaborate on the visual and narrative elements of the video in detail."
DEFAULT_ENHANCE_PROMPT = (
    "You are a chatbot that enhances video caption inputs, adding more color and details to the text. "
    "The output should be longer than the provided input caption."
)
DEFAULT_CAPTION_KEY = "qwen"
DEFAULT_ENHANCE_KEY = "qwen_lm"
DEFAULT_JPEG_QUALITY = 90

_RETRY_STATUS = frozenset({408, 409, 425, 429}) | frozenset(range(500, 600))

__all__ = [
    "CaptionClient",
    "CaptionModels",
    "CaptionResult",
    "DEFAULT_CAPTION_PROMPT",
    "DEFAULT_ENHANCE_PROMPT",
    "encode_jpeg",
]


@dataclass
class CaptionResult:
    """Text from the model, or why there is none (``error``); ``attempts`` counts HTTP tries."""

    text: str | None = None
    error: str | None = None
    attempts: int = 0

    @property
    def ok(self) -> bool:
        return self.text is not None and self.error is None


class _RequestError(Exception):
    def __init__(self, message: str, retryable: bool, retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


def encode_jpeg(frame: np.ndarray, quality: int = DEFAULT_JPEG_QUALITY, max_side: int | None = None) -> bytes:
    """uint8 RGB ``(H, W, 3)`` -> JPEG bytes, scaled down so the long side is at most ``max_side``."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8))
    if max_side and max(img.size) > max_side:
        scale = max_side / max(img.size)
        img = img.resize(
            (max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.BICUBIC
        )
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def _chat_url(base_url: str) -> str:
    url = base_url.rstrip("/")
    return url if url.endswith("/chat/completions") else url + "/chat/completions"


class CaptionClient:
    """Captions windows and enhances captions over OpenAI-compatible chat-completions endpoints.

    Args:
        base_url: the server's API root, e.g. ``http://localhost:8000/v1`` (``/chat/completions``
            is appended unless already there).
        model: the served vision-language model's name (e.g. ``Qwen/Qwen2.5-VL-7B-Instruct``).
        api_key_env: environment variable holding the API key (read at request time, sent as
            ``Authorization: Bearer ...``); None or an unset variable sends no key.
        prompt: caption prompt sent after the window's images.
        caption_key: the ``<model>`` in ``<model>_caption`` (``qwen`` as the reference).
        timeout_s: per-request timeout (connect and read).
        max_retries: retries after the first try, on connection errors, timeouts, 408/429 and 5xx.
        backoff_s, max_backoff_s: retry ``k`` waits ``min(max_backoff_s, backoff_s * 2**k)`` (plus a
            little jitter; ``Retry-After`` is honoured up to ``max_backoff_s``).
        max_concurrency: requests in flight at once, over every call on this client.
        fps: window frame sampling rate (2, as the reference).
        max_frames: at most this many images per window (evenly thinned); None: no limit.
        max_image_side: downscale images so their long side is at most this; None: as decoded.
        jpeg_quality: JPEG quality of the images.
        max_tokens, temperature: generation settings sent with every request (None: omitted).
        enhance_base_url, enhance_model, enhance_api_key_env: the text model used by
            ``enhance``; URL and key default to the caption endpoint's.
        enhance_prompt: system prompt for ``enhance``.
        enhance_key: the ``<model>`` in ``<model>_enhanced_caption`` (``qwen_lm``).
        decode_workers: threads decoding clips for ``caption_clips``.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str | None = None,
        prompt: str = DEFAULT_CAPTION_PROMPT,
        caption_key: str = DEFAULT_CAPTION_KEY,
        timeout_s: float = 120.0,
        max_retries: int = 3,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        max_concurrency: int = 8,
        fps: float = CAPTION_FPS,
        max_frames: int | None = None,
        max_image_side: int | None = None,
        jpeg_quality: int = DEFAULT_JPEG_QUALITY,
        max_tokens: int | None = 512,
        temperature: float | None = None,
        enhance_base_url: str | None = None,
        enhance_model: str | None = None,
        enhance_api_key_env: str | None = None,
        enhance_prompt: str = DEFAULT_ENHANCE_PROMPT,
        enhance_key: str = DEFAULT_ENHANCE_KEY,
        decode_workers: int = 2,
    ):
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.base_url = base_url
        self.model = model
        self.api_key_env = api_key_env
        self.prompt = prompt
        self.caption_key = caption_key
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self.max_concurrency = int(max_concurrency)
        self.fps = float(fps)
        self.max_frames = max_frames
        self.max_image_side = max_image_side
        self.jpeg_quality = int(jpeg_quality)
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.enhance_base_url = enhance_base_url or base_url
        self.enhance_model = enhance_model
        self.enhance_api_key_env = enhance_api_key_env if enhance_api_key_env is not None else api_key_env
        self.enhance_prompt = enhance_prompt
        self.enhance_key = enhance_key
        self.decode_workers = max(1, int(decode_workers))
        self._slots = threading.BoundedSemaphore(self.max_concurrency)

    def __repr__(self) -> str:  # no key material, ever
        return f"CaptionClient(base_url={self.base_url!r}, model={self.model!r}, api_key_env={self.api_key_env!r})"

    # -- frames ------------------------------------------------------------------------------
    def window_images(self, clip: bytes, windows: Sequence[tuple[int, int]], stored: Any = None) -> list[list[bytes]]:
        """JPEG images per inclusive ``(start_frame, end_frame)`` window: from ``stored`` (the clip's
        frames kept by the frame tap) when it holds these windows with this client's JPEG
        settings, else from one decode of the clip."""
        windows = [(int(s), int(e)) for s, e in windows]
        per_window: list[list[Any]] | None = self._stored_images(stored, windows) if stored else None
        encoded = per_window is not None
        if per_window is None:
            per_window = decode_windows(clip, windows, self.fps)
        out = []
        for frames in per_window:
            if self.max_frames and len(frames) > self.max_frames:
                pick = np.linspace(0, len(frames) - 1, self.max_frames).round().astype(int)
                frames = [frames[i] for i in pick]
            out.append(list(frames) if encoded else [encode_jpeg(f, self.jpeg_quality, self.max_image_side)
                                                     for f in frames])
        return out

    def _stored_images(self, stored: Any, windows: list[tuple[int, int]]) -> list[list[bytes]] | None:
        spec = CaptionFrames(self.jpeg_quality, self.max_image_side, self.fps)
        try:
            return StoredFrames.load(stored).caption_images(spec, windows)
        except FrameStoreError as exc:
            log.warning("stored caption frames not usable, decoding the clip: %s", exc)
            return None

    # -- requests ----------------------------------------------------------------------------
    def caption_request(self, images: Sequence[bytes], prompt: str | None = None) -> dict:
        """The chat-completions body for one window."""
        content: list[dict] = [
            {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + base64.b64encode(j).decode("ascii")}}
            for j in images
        ]
        content.append({"type": "text", "text": prompt if prompt is not None else self.prompt})
        return self._body(self.model, [{"role": "user", "content": content}])

    def enhance_request(self, text: str) -> dict:
        if not self.enhance_model:
            raise ValueError("no enhance_model configured")
        messages = [{"role": "system", "content": self.enhance_prompt}, {"role": "user", "content": text}]
        return self._body(self.enhance_model, messages)

    def _body(self, model: str, messages: list[dict]) -> dict:
        body: dict = {"model": model, "messages": messages}
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        if self.temperature is not None:
            body["temperature"] = self.temperature
        return body

    def caption_images(self, images: Sequence[bytes], prompt: str | None = None) -> CaptionResult:
        if not images:
            return CaptionResult(error="no frames in the window")
        return self._complete(self.base_url, self.api_key_env, self.caption_request(images, prompt))

    def caption_window(self, clip: bytes, start_frame: int, end_frame: int) -> CaptionResult:
        """Caption one window (inclusive frame range) of a clip."""
        return self.caption_windows(clip, [(start_frame, end_frame)])[0]

    def caption_windows(self, clip: bytes, windows: Sequence[tuple[int, int]]) -> list[CaptionResult]:
        """One result per window of one clip, requests run concurrently; never raises for a window."""
        return self.caption_clips([(clip, windows)])[0]

    def caption_clips(self, items: Sequence[tuple[bytes, Sequence[tuple[int, int]]]],
                      frames: Sequence[Any] | None = None) -> list[list[CaptionResult]]:
        """``[(clip_bytes, windows), ...]`` -> one list of results per clip, one result per window.

        ``frames``: per clip, its frames stored by the frame tap (or None), sent instead of
        decoding the clip when they hold its windows."""
        results: list[list[CaptionResult]] = [[CaptionResult() for _ in w] for _, w in items]
        with (
            ThreadPoolExecutor(self.decode_workers, thread_name_prefix="caption-decode") as decoders,
            ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="caption-http") as requests,
        ):
            decoded = [decoders.submit(self.window_images, clip, windows, frames[i] if frames is not None else None)
                       for i, (clip, windows) in enumerate(items)]
            sent: list[tuple[int, int, Future]] = []
            for ci, fut in enumerate(decoded):
                try:
                    images = fut.result()
                except Exception as exc:  # noqa: BLE001 - any decoding failure is this clip's, not the run's
                    for wi in range(len(results[ci])):
                        results[ci][wi] = CaptionResult(error=f"could not decode the window's frames: {exc}")
                    continue
                for wi, imgs in enumerate(images):
                    sent.append((ci, wi, requests.submit(self.caption_images, imgs)))
            for ci, wi, answer in sent:
                results[ci][wi] = answer.result()
        return results

    def enhance(self, text: str) -> CaptionResult:
        """Send one caption to the text model; its answer is the enhanced caption."""
        if not text:
            return CaptionResult(error="no caption to enhance")
        try:
            body = self.enhance_request(text)
        except ValueError as exc:
            return CaptionResult(error=str(exc))
        return self._complete(self.enhance_base_url, self.enhance_api_key_env, body)

    def enhance_many(self, texts: Sequence[str]) -> list[CaptionResult]:
        with ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="enhance-http") as pool:
            return list(pool.map(self.enhance, texts))

    def unreachable(self, timeout_s: float = 5.0) -> str | None:
        """Why the caption (and enhance) endpoints cannot be reached, or None when they answer.

        Any HTTP answer counts as reachable (a 401 or 404 still means a server is there); a
        refused connection, an unknown host or a timeout does not."""
        urls = [self.base_url] + ([self.enhance_base_url] if self.enhance_base_url != self.base_url else [])
        for base in urls:
            key = os.environ.get(self.api_key_env) if self.api_key_env else None
            url = base.rstrip("/") + "/models"
            try:
                with urllib.request.urlopen(urllib.request.Request(url, method="GET"), timeout=timeout_s):
                    pass
            except urllib.error.HTTPError:
                continue
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError, http.client.HTTPException) as exc:
                reason = getattr(exc, "reason", exc)
                return _scrub(f"caption endpoint {base} is unreachable: {reason}", key)
        return None

    # -- HTTP --------------------------------------------------------------------------------
    def _complete(self, base_url: str, key_env: str | None, body: dict) -> CaptionResult:
        key = os.environ.get(key_env) if key_env else None
        url = _chat_url(base_url)
        payload = json.dumps(body).encode("utf-8")
        attempts = 0
        while True:
            attempts += 1
            try:
                with self._slots:
                    answer = self._post(url, payload, key)
                text = _message_text(answer)
                if not text:
                    return CaptionResult(error="the model returned an empty message", attempts=attempts)
                return CaptionResult(text=text, attempts=attempts)
            except _RequestError as exc:
                message = _scrub(str(exc), key)
                if not exc.retryable or attempts > self.max_retries:
                    if attempts > 1:
                        message += f" (after {attempts} attempts)"
                    log.warning("chat request to %s failed: %s", _scrub(url, key), message)
                    return CaptionResult(error=message, attempts=attempts)
                delay = min(self.max_backoff_s, self.backoff_s * (2 ** (attempts - 1)))
                if exc.retry_after is not None:
                    delay = min(self.max_backoff_s, max(delay, exc.retry_after))
                delay += random.uniform(0, 0.1 * delay)
                log.info(
                    "chat request to %s failed (%s); retry %d/%d in %.2fs",
                    _scrub(url, key),
                    message,
                    attempts,
                    self.max_retries,
                    delay,
                )
                time.sleep(delay)

    def _post(self, url: str, payload: bytes, key: str | None) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(url, data=payload, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = ""
            try:
                detail = exc.read(500).decode("utf-8", "replace").strip()
            except Exception:  # noqa: BLE001 - the status is what matters
                pass
            retry_after = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
            message = f"HTTP {exc.code}" + (f": {detail[:300]}" if detail else "")
            raise _RequestError(message, exc.code in _RETRY_STATUS, retry_after) from None
        except urllib.error.URLError as exc:
            raise _RequestError(f"connection error: {exc.reason}", True) from None
        except TimeoutError:
            raise _RequestError(f"timed out after {self.timeout_s:g}s", True) from None
        except (http.client.HTTPException, ConnectionError, OSError) as exc:
            raise _RequestError(f"connection error: {type(exc).__name__}: {exc}", True) from None
        try:
            return json.loads(raw)
        except ValueError:
            raise _RequestError("the server's answer is not JSON", False) from None


def _message_text(answer: dict) -> str | None:
    try:
        content = answer["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise _RequestError("the server's answer has no choices[0].message.content", False) from None
    if isinstance(content, list):  # content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if content is None:
        return None
    return str(content).strip() or None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _scrub(text: str, key: str | None) -> str:
    if key:
        text = text.replace(key, "***")
    return text


class CaptionModels:
    """The ordered caption models of a run, one :class:`CaptionClient` each (its ``caption_key``
    names the model; with ``enhance``, its ``enhance_key`` names the enhanced caption model paired
    with it by position, as the reference pairs ``qwen`` with ``qwen_lm``). Empty: no captions."""

    def __init__(self, clients: Sequence[CaptionClient], enhance: Sequence[bool] = ()):
        self.clients = list(clients)
        self.enhance = [bool(e) for e in enhance] or [False] * len(self.clients)
        if len(self.enhance) != len(self.clients):
            raise ValueError("one enhance flag per caption client")

    def __repr__(self) -> str:
        return f"CaptionModels({self.clients!r})"

    def unreachable(self, timeout_s: float = 5.0) -> str | None:
        """The first endpoint that cannot be reached, over every model (None: all answer)."""
        for client in self.clients:
            reason = client.unreachable(timeout_s)
            if reason:
                return f"{client.caption_key}: {reason}"
        return None
