"""open_store: URLs in, the production stack out; bad URLs explained."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

import strata.store
from strata.errors import InvalidStoreURL
from strata.store import (
    LimitedStore,
    LocalStore,
    MemoryStore,
    MeteredStore,
    RetryingStore,
    S3Store,
    Store,
    open_store,
)


def layers(store: Store) -> list[type]:
    chain = [type(store)]
    while hasattr(store, "inner"):
        store = store.inner
        chain.append(type(store))
    return chain


def test_file_url_opens_the_full_stack(tmp_path: Path) -> None:
    store = open_store((tmp_path / "s").as_uri())
    assert layers(store) == [MeteredStore, RetryingStore, LimitedStore, LocalStore]
    assert store.url == (tmp_path / "s").as_uri()
    store.put("k", b"x")
    assert (tmp_path / "s" / "k").read_bytes() == b"x"


def test_wrappers_can_be_switched_off(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}", retries=False, metrics=False, max_concurrent=None)
    assert layers(store) == [LocalStore]
    assert layers(open_store(f"file://{tmp_path}", metrics=False)) == [
        RetryingStore,
        LimitedStore,
        LocalStore,
    ]


def test_file_url_may_name_localhost_and_escape_characters(tmp_path: Path) -> None:
    store = open_store(f"file://localhost{tmp_path}/with%20space", metrics=False)
    store.put("k", b"x")
    assert (tmp_path / "with space" / "k").exists()


def test_memory_urls_name_process_wide_stores() -> None:
    a1 = open_store("memory://store-test-a", metrics=False, retries=False, max_concurrent=None)
    a2 = open_store("memory://store-test-a", metrics=False, retries=False, max_concurrent=None)
    b = open_store("memory://store-test-b", metrics=False, retries=False, max_concurrent=None)
    assert isinstance(a1, MemoryStore)
    assert a1 is a2
    assert a1 is not b
    assert a1.url == "memory://store-test-a"
    a1.put("k", b"x")
    assert open_store("memory://store-test-a").get("k") == b"x"
    strata.store.clear_memory_stores()
    assert not open_store("memory://store-test-a").exists("k")


def test_s3_url_parts_reach_the_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    url = "s3://my-bucket/some/prefix?endpoint=http://127.0.0.1:9000&region=eu-central-1"
    store = open_store(url, max_concurrent=7)
    backend = store
    while hasattr(backend, "inner"):
        backend = backend.inner
    assert isinstance(backend, S3Store)
    assert (backend.bucket, backend.prefix) == ("my-bucket", "some/prefix")
    assert (backend.endpoint, backend.region) == ("http://127.0.0.1:9000", "eu-central-1")
    assert backend._client.meta.config.max_pool_connections == 7
    assert store.url == backend.url == url
    assert open_store(store.url).url == store.url  # a store's url opens the same store
    bare = open_store("s3://my-bucket", metrics=False, retries=False, max_concurrent=None)
    assert isinstance(bare, S3Store)
    assert bare.prefix == "" and bare.url == "s3://my-bucket/"


BAD_URLS = [
    ("", "no scheme"),
    ("/abs/path", "no scheme"),
    ("ftp://host/x", "scheme 'ftp' is not supported"),
    ("file://relative/path", "three slashes"),
    ("file:relative/path", "must be absolute"),
    ("file:///abs?x=1", "no query"),
    ("s3://", "bucket name is missing"),
    ("s3:///prefix", "bucket name is missing"),
    ("s3://Bad_Bucket/x", "not a valid bucket name"),
    ("s3://bucket/a//b", "not a valid key prefix"),
    ("s3://bucket/x?endpoint=http://h&color=red", "unknown parameter(s) color"),
    ("s3://bucket/x?region=", "exactly one non-empty value"),
    ("s3://bucket/x?region=a&region=b", "exactly one non-empty value"),
    ("s3://bucket/x?endpoint=127.0.0.1:9000", "http:// or https://"),
    ("memory://x?y=1", "no query"),
]


@pytest.mark.parametrize(("url", "why"), BAD_URLS)
def test_bad_urls_are_explained_with_the_accepted_forms(url: str, why: str) -> None:
    with pytest.raises(InvalidStoreURL) as info:
        open_store(url)
    message = str(info.value)
    assert why in message
    assert "accepted forms: file:///absolute/path, s3://bucket" in message
    assert "memory://name" in message
    assert info.value.errno == errno.EINVAL


@pytest.mark.parametrize(
    "url",
    [
        "s3://AKIDEXAMPLE:s3cr3t@bucket/prefix",
        "s3://bucket/x?endpoint=http://AKIDEXAMPLE:s3cr3t@host:9000",
    ],
)
def test_credentials_in_urls_are_refused_and_not_repeated(url: str) -> None:
    with pytest.raises(InvalidStoreURL, match="credentials do not belong") as info:
        open_store(url)
    assert "s3cr3t" not in str(info.value)
    assert "AKIDEXAMPLE" not in str(info.value)


def test_public_names_are_exported() -> None:
    for name in strata.store.__all__:
        assert getattr(strata.store, name) is not None
    assert "open_store" in strata.store.__all__
