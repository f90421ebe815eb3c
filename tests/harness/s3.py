"""A real S3-compatible server (versitygw, posix backend) for tests.

One server per test session; every test gets a fresh bucket. Object metadata lives in
xattrs of the data files: with ``--sidecar`` a GET racing an overwrite can pair the new
etag with the old body (seen on v1.8.0), which breaks compare-and-swap.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from tests.harness.process import Component, free_port, port_open
from tests.harness.tools import tool_path

REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str
    component: Component

    def client(self):  # -> botocore S3 client
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )


@dataclass(frozen=True)
class S3Bucket:
    """A fresh bucket on the test server; ``url`` is a Strata store URL for it."""

    server: S3Server
    bucket: str
    prefix: str = "strata"

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    @property
    def region(self) -> str:
        return REGION

    @property
    def access_key(self) -> str:
        return self.server.access_key

    @property
    def secret_key(self) -> str:
        return self.server.secret_key

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}?endpoint={self.endpoint}&region={REGION}"

    def client(self):
        return self.server.client()


def start_s3_server(workdir: Path) -> S3Server:
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    port = free_port()
    access_key, secret_key = "strata-test", secrets.token_hex(16)
    component = Component(
        "versitygw",
        [tool_path("versitygw"), "--port", f"127.0.0.1:{port}", "posix", data],
        workdir,
        env={"ROOT_ACCESS_KEY": access_key, "ROOT_SECRET_KEY": secret_key},
    )
    server = S3Server(f"http://127.0.0.1:{port}", access_key, secret_key, component)

    def ready() -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        if not port_open(port):
            return False
        try:
            server.client().list_buckets()
        except (BotoCoreError, ClientError):
            return False
        return True

    component.wait_ready(ready, timeout=60, what="answering ListBuckets")
    return server


def new_bucket(server: S3Server) -> S3Bucket:
    name = f"t-{secrets.token_hex(6)}"
    server.client().create_bucket(Bucket=name)
    return S3Bucket(server, name)
