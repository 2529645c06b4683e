"""Real PostgreSQL and Redis servers for the deployment tests, from Debian's packages.

Register with ``pytest_plugins`` (conftest.py). Each server runs on a free loopback port with its
data in a temporary folder and is stopped at the end of the session. PostgreSQL refuses to run
as root: as root (CI), ``initdb`` and ``pg_ctl`` run as the ``postgres`` user Debian's package
creates. ``.ci/run`` installs both packages; a missing binary fails the test that needs it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

PG_USER = "dagster"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen | None, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout_s:.0f} s")


def wait_for_webserver(url: str, proc: subprocess.Popen, log, timeout_s: float = 180, poll_s: float = 0.5) -> None:
    """Until dagster-webserver at ``url`` answers ``/server_info``; the test fails with the tail of
    its ``log`` (a Path) when it exits first, or when it does not answer within ``timeout_s``."""
    import requests

    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            if requests.get(f"{url}/server_info", timeout=2).ok:
                return
        except requests.ConnectionError:
            pass
        if proc.poll() is not None:
            pytest.fail(log.read_text(errors="replace")[-4000:])
        time.sleep(poll_s)
    pytest.fail("dagster-webserver did not start")


def pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} not found under /usr/lib/postgresql (apt-get install postgresql)")
    return found[-1]


@dataclass
class Postgres:
    host: str
    port: int
    user: str

    def env(self, db_name: str) -> dict[str, str]:
        """The variables ``deploy/dagster.yaml`` reads."""
        return {"DAGSTER_PG_HOST": self.host, "DAGSTER_PG_PORT": str(self.port), "DAGSTER_PG_USERNAME": self.user,
                "DAGSTER_PG_PASSWORD": "unused-trust-auth", "DAGSTER_PG_DB": db_name}

    def connect(self, db_name: str):
        import psycopg2

        return psycopg2.connect(host=self.host, port=self.port, user=self.user, dbname=db_name)

    def new_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        conn = self.connect("postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        return name


def _as_postgres_user() -> dict:
    """``subprocess`` arguments that drop root to the ``postgres`` user (no-op when not root)."""
    if os.geteuid() != 0:
        return {}
    pw = pwd.getpwnam("postgres")
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    data = tempfile.mkdtemp(prefix="curation-pg-")
    as_user = _as_postgres_user()
    if as_user:
        os.chown(data, as_user["user"], as_user["group"])
    pgdata, sockets = os.path.join(data, "data"), os.path.join(data, "sockets")
    run = dict(check=True, capture_output=True, cwd=data, **as_user)
    subprocess.run(["mkdir", "-p", pgdata, sockets], **run)
    subprocess.run([pg_bin("initdb"), "-D", pgdata, "-U", PG_USER, "-A", "trust", "-E", "UTF8", "--no-sync"], **run)
    port = free_port()
    log = os.path.join(data, "server.log")
    subprocess.run([pg_bin("pg_ctl"), "-D", pgdata, "-l", log, "-w", "-t", "60", "-o",
                    f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off", "start"], **run)
    try:
        _wait_for_port(port, None, "postgres")
        yield Postgres(host="127.0.0.1", port=port, user=PG_USER)
    finally:
        subprocess.run([pg_bin("pg_ctl"), "-D", pgdata, "-m", "immediate", "stop"], capture_output=True, cwd=data,
                       **as_user)
        shutil.rmtree(data, ignore_errors=True)


@dataclass
class Redis:
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Redis]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server not found (apt-get install redis-server)")
    data = tempfile.mkdtemp(prefix="curation-redis-")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", data, "--protected-mode", "yes"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, proc, "redis-server")
        yield Redis(port=port)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(data, ignore_errors=True)
