"""The project's instance file (``.dagster_home/dagster.yaml``): it lies where Dagster reads it, so
``dg dev`` / ``dagster dev`` with ``DAGSTER_HOME`` set (``make dev``) print no warning about a
``dagster.yaml`` that is not used, and it turns Dagster's new-user sign-up dialog off, which a
fresh headless Chromium against a real ``dagster-webserver`` confirms. Each check is run beside
its control (the old layout, the dialog left on), so the test is seen to tell the two apart."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import requests
import yaml

from curation_assets.cli.runner import PROJECT_DAGSTER_YAML

from .browser import Chromium, chromium_path
from .servers import free_port, wait_for_webserver

ROOT = Path(__file__).resolve().parents[1]
INSTANCE_FILE = ROOT / ".dagster_home" / "dagster.yaml"
NOT_USED = "file will not be used to configure Dagster"
LAUNCHING = "Launching Dagster services"
DIALOG = "Join the Dagster community"
BIN = Path(sys.executable).parent


def _home(tmp_path: Path, name: str, drop: str | None = None) -> Path:
    """A fresh DAGSTER_HOME holding the project's instance file (without the section ``drop``)."""
    home = tmp_path / name
    home.mkdir()
    config = yaml.safe_load(INSTANCE_FILE.read_text(encoding="utf-8"))
    config.pop(drop, None)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    with dg.DagsterInstance.from_config(str(home)):
        pass  # the storage exists before a server starts
    return home


def test_the_instance_file_is_the_one_the_cli_copies_and_turns_the_dialog_off(tmp_path):
    assert PROJECT_DAGSTER_YAML == INSTANCE_FILE
    assert not (ROOT / "dagster.yaml").exists(), "a dagster.yaml beside pyproject.toml is ignored once DAGSTER_HOME is set"
    with dg.DagsterInstance.from_config(str(_home(tmp_path, "home"))) as instance:
        assert instance.nux_enabled is False
        assert instance.telemetry_enabled is False
    with dg.DagsterInstance.from_config(str(_home(tmp_path, "control", drop="nux"))) as instance:
        assert instance.nux_enabled is True  # Dagster's default, which the file turns off


def _dev_output(command: list[str], cwd: Path, home: Path, timeout_s: float = 120) -> str:
    """What a dev command prints until it starts its services (or exits), then stopped."""
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, text=True)
    lines = []
    deadline = time.time() + timeout_s
    try:
        for line in proc.stdout:
            lines.append(line)
            if LAUNCHING in line or time.time() > deadline:
                break
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return "".join(lines)


@pytest.mark.slow
@pytest.mark.parametrize("command", [["dg", "dev"], ["dagster", "dev"]], ids=["dg dev", "dagster dev"])
def test_the_dev_command_prints_no_instance_file_warning(command, tmp_path):
    port = ["-p", str(free_port())]
    output = _dev_output([str(BIN / command[0]), *command[1:], *port], ROOT, _home(tmp_path, "home"))
    assert LAUNCHING in output, output[-3000:]
    assert NOT_USED not in output, output[-3000:]
    # control: a dagster.yaml in the folder the command runs from, as the project had it
    old_layout = tmp_path / "old-layout"
    old_layout.mkdir()
    shutil.copyfile(INSTANCE_FILE, old_layout / "dagster.yaml")
    output = _dev_output([str(BIN / "dagster"), "dev", *port], old_layout, _home(tmp_path, "other"))
    assert NOT_USED in output, output[-3000:]


def _webserver(home: Path, location: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "dagster_webserver", "-f", str(location), "-h", "127.0.0.1",
                             "-p", str(port)], cwd=location.parent, env={**os.environ, "DAGSTER_HOME": str(home)},
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}"



def _should_show_nux(url: str) -> bool:
    answer = requests.post(f"{url}/graphql", json={"query": "{ shouldShowNux }"}, timeout=30)
    answer.raise_for_status()
    return answer.json()["data"]["shouldShowNux"]


@pytest.mark.slow
def test_a_fresh_browser_gets_no_sign_up_dialog(tmp_path):
    if chromium_path() is None:
        pytest.fail("chromium is not installed: apt-get install -y chromium (make test installs it)")
    location = tmp_path / "location.py"
    location.write_text("import dagster as dg\n\n\n@dg.asset\ndef an_asset():\n    return 1\n\n\ndefs = dg.Definitions(assets=[an_asset])\n")
    servers = {}
    try:
        for name, drop in (("project", None), ("control", "nux")):
            log = tmp_path / f"{name}.log"
            servers[name] = (*_webserver(_home(tmp_path, name, drop=drop), location, log), log)
        for proc, url, log in servers.values():
            wait_for_webserver(url, proc, log)
        assert _should_show_nux(servers["control"][1]) is True
        assert _should_show_nux(servers["project"][1]) is False
        # The UI asks shouldShowNux as it starts and opens the dialog a second after the answer.
        # The control says how long that takes here; the project's page gets three times as long.
        app_ready = "document.body && document.body.innerText.includes('an_asset')"
        shows_dialog = f"document.body && document.body.innerText.includes({DIALOG!r})"
        with Chromium(tmp_path) as browser:
            browser.open(f"{servers['control'][1]}/assets")
            assert browser.wait_for(app_ready, 90), browser.text()[:2000]
            started = time.time()
            assert browser.wait_for(shows_dialog, 60), "the control never showed the dialog: the test cannot see it"
            control_s = time.time() - started
            browser.open(f"{servers['project'][1]}/assets")
            assert browser.wait_for(app_ready, 90), browser.text()[:2000]
            assert not browser.wait_for(shows_dialog, max(5.0, 3 * control_s)), "the sign-up dialog is shown"
            assert "an_asset" in browser.text()
    finally:
        for proc, _, _ in servers.values():
            proc.terminate()
        for proc, _, _ in servers.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
