"""Fixtures of the store tests: one raw backend per implementation.

``backend`` is parametrized over every :class:`~strata.store.base.Store`
implementation, so a test that takes it is a contract test run against all of them
(STYLE.md item 3). The S3 variant runs against the real server of the test harness
(``s3_bucket`` in tests/conftest.py) and is marked ``s3``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from strata.store.base import Store
from strata.store.local import LocalStore
from strata.store.memory import MemoryStore

BACKENDS = ["memory", "local", pytest.param("s3", marks=pytest.mark.s3)]


def make_backend(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if kind == "memory":
        return MemoryStore()
    if kind == "local":
        return LocalStore(tmp_path / "store")
    if kind == "s3":
        from strata.store.s3 import S3Store

        bucket = request.getfixturevalue("s3_bucket")
        return S3Store(
            bucket.bucket,
            f"contract-{secrets.token_hex(4)}",
            endpoint=bucket.endpoint,
            region=bucket.region,
        )
    raise AssertionError(f"unknown backend {kind}")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    store = make_backend(request.param, request, tmp_path)
    try:
        yield store
    finally:
        store.close()
