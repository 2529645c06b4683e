"""Headless Chromium (Debian's ``chromium`` package) driven over the DevTools protocol, for UI tests.

``with Chromium(tmp_path) as browser:`` starts it with a fresh profile; ``browser.open(url)``,
``browser.wait_for(js)``, ``browser.click_text("Skip")``, ``browser.text()`` and
``browser.screenshot(path)`` are what the tests need. The protocol goes over a websocket
(``websocket-client``), one request at a time.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import requests

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1600,1400"]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Chromium:
    def __init__(self, workdir: Path, timeout_s: float = 30.0):
        self.profile = Path(workdir) / "chromium-profile"
        self.timeout_s = timeout_s
        self.proc: subprocess.Popen | None = None
        self.ws: Any = None
        self._id = 0

    def __enter__(self) -> Chromium:
        import websocket

        exe = chromium_path()
        if exe is None:
            raise RuntimeError("chromium is not installed (apt-get install -y chromium)")
        self.profile.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
                                      "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.time() + self.timeout_s
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        while True:
            pages = [t for t in requests.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json() if t["type"] == "page"]
            if pages or time.time() > deadline:
                break
            time.sleep(0.1)
        self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=self.timeout_s,
                                              suppress_origin=True)
        self.call("Page.enable")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.ws is not None:
            self.ws.close()
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result.get("result", {}).get("value")

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def wait_for(self, expression: str, timeout_s: float = 60.0) -> bool:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.evaluate(expression):
                return True
            time.sleep(0.25)
        return False

    def click_text(self, text: str) -> bool:
        """Click the first button whose text is ``text``; False when there is none."""
        return bool(self.evaluate(
            "(() => { const b = [...document.querySelectorAll('button')].find(x => x.innerText.trim() === "
            f"{json.dumps(text)}); if (b) {{ b.click(); return true; }} return false; }})()"))

    def text(self) -> str:
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def html(self) -> str:
        return self.evaluate("document.documentElement.outerHTML") or ""

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def requests_until(self, until: str, navigate: str | None = None, expression: str | None = None,
                       timeout_s: float = 60.0) -> list[str]:
        """Every URL the page requests (DevTools ``Network.requestWillBeSent``) from navigating to
        ``navigate`` or evaluating ``expression`` until ``until`` is true (then 0.5 s more). Reads the
        protocol itself: :meth:`call` drops events."""
        self.call("Network.enable")
        urls: list[str] = []
        pending: dict[int, str] = {}

        def send(method: str, **params: Any) -> None:
            self._id += 1
            pending[self._id] = method
            self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))

        if navigate is not None:
            send("Page.navigate", url=navigate)
        if expression is not None:
            send("Runtime.evaluate", expression=expression, awaitPromise=True)
        deadline, done_at, next_poll = time.time() + timeout_s, None, 0.0
        self.ws.settimeout(0.1)
        try:
            while time.time() < deadline and (done_at is None or time.time() < done_at):
                if done_at is None and time.time() >= next_poll and "poll" not in pending.values():
                    self._id += 1
                    pending[self._id] = "poll"
                    self.ws.send(json.dumps({"id": self._id, "method": "Runtime.evaluate",
                                             "params": {"expression": until, "returnByValue": True}}))
                    next_poll = time.time() + 0.25
                try:
                    message = json.loads(self.ws.recv())
                except Exception:  # noqa: BLE001 - a quiet moment (the socket's timeout)
                    continue
                if message.get("method") == "Network.requestWillBeSent":
                    urls.append(message["params"]["request"]["url"])
                elif pending.pop(message.get("id", -1), None) == "poll":
                    if message.get("result", {}).get("result", {}).get("value"):
                        done_at = time.time() + 0.5
        finally:
            self.ws.settimeout(self.timeout_s)
            self.call("Network.disable")
        if done_at is None:
            raise TimeoutError(f"{until} was not true within {timeout_s} s")
        return urls
