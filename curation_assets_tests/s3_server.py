"""A local S3-compatible server for tests (moto's server mode on a loopback port).

Register with ``pytest_plugins = ["curation_assets_tests.s3_server"]`` in conftest.py.

Fixtures:

* ``s3_server`` (session): starts ``moto.server.ThreadedMotoServer`` on 127.0.0.1 and a free
  port, yields an :class:`S3Server` (``endpoint_url``, ``env``, ``make_bucket()``,
  ``client()``), stops it at the end of the session.
* ``s3_bucket`` (function): creates a fresh bucket, points the AWS environment variables at
  the server (fake credentials, ``AWS_ENDPOINT_URL``) and yields ``"s3://<bucket>"``.

The server runs in the pytest process, so subprocesses started by a test (CLI, kill tests)
can reach it too while the session lasts: pass them ``os.environ`` (``s3_bucket`` has set it)
or ``s3_server.env``.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

FAKE_ACCESS_KEY_ID = "testing"
FAKE_SECRET_ACCESS_KEY = "testing"
REGION = "us-east-1"


@dataclass
class S3Server:
    endpoint_url: str
    host: str
    port: int
    env: dict[str, str] = field(default_factory=dict)

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=FAKE_ACCESS_KEY_ID,
            aws_secret_access_key=FAKE_SECRET_ACCESS_KEY,
            region_name=REGION,
        )

    def make_bucket(self, name: str | None = None) -> str:
        """Create a bucket (random name by default) and return its name."""
        name = name or f"test-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    from moto.server import ThreadedMotoServer

    # werkzeug logs every request to stderr; keep test output readable
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        env = {
            "AWS_ACCESS_KEY_ID": FAKE_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": FAKE_SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": endpoint,
        }
        yield S3Server(endpoint_url=endpoint, host=host, port=port, env=env)
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path_factory) -> str:
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    # nothing from the developer's own AWS setup may leak into the tests
    for name in (
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    ):
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path_factory.mktemp("aws-config")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    no_proxy = ",".join(x for x in (os.environ.get("NO_PROXY"), "127.0.0.1", "localhost") if x)
    monkeypatch.setenv("NO_PROXY", no_proxy)
    monkeypatch.setenv("no_proxy", no_proxy)
    bucket = s3_server.make_bucket()
    return f"s3://{bucket}"
