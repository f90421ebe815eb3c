"""Fixtures for the real components, shared by every test tier.

* ``kube``      — etcd + kube-apiserver (session): ``.kubeconfig``, ``.api_client``,
                  ``.server``, ``.kubectl(*args)``.
* ``s3_server`` — versitygw (session); ``s3_bucket`` — a fresh bucket per test, with
                  AWS_* credentials set in the environment for the standard chain.
* ``tool``      — path of a Go-built tool (csi-sanity, helm, …).

Tests that use ``kube`` are marked ``k8s`` and tests that use an S3 fixture ``s3``
automatically, so ``pytest -m "not k8s"`` selects a slice without bookkeeping.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import process
from tests.harness.kube import KubeCluster, start_cluster
from tests.harness.s3 import REGION, S3Bucket, S3Server, new_bucket, start_s3_server
from tests.harness.tools import tool_path

_FIXTURE_MARKERS = {"kube": "k8s", "s3_server": "s3", "s3_bucket": "s3"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for fixture, marker in _FIXTURE_MARKERS.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(marker)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    outcome = yield
    report = outcome.get_result()
    if report.failed and process.RUNNING:
        lines = [f"{c.name}: {c.log_path}" for c in process.RUNNING]
        report.sections.append(("real components (logs kept)", "\n".join(lines)))


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    cluster = start_cluster(tmp_path_factory.mktemp("kube"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = start_s3_server(tmp_path_factory.mktemp("s3"))
    try:
        yield server
    finally:
        server.component.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Bucket:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    return new_bucket(s3_server)


@pytest.fixture(scope="session")
def tool() -> object:
    """``tool("helm")`` → Path of the cached binary (fails naming the missing tool)."""
    return tool_path


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def running_as_root() -> bool:
    return os.geteuid() == 0
