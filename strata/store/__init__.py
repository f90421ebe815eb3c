"""Strata engine layer: store (see docs/architecture.md).

Bytes in and out of a bucket or a directory, behind the one small interface of
:mod:`strata.store.base`. One module per backend (``local``, ``s3``, ``memory``);
every other feature is a wrapper that is itself a store (``retry``, ``limits``,
``metrics``, and for tests ``faults`` and ``counting``). :func:`open_store` turns a URL
into the stack the engine uses::

    MeteredStore(RetryingStore(LimitedStore(backend)))

Metrics outermost, so they time what callers wait for, retries included; the limit
innermost, so a request sleeping before a retry does not hold a connection slot.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from strata.errors import InvalidStoreURL
from strata.store.base import ObjectInfo, Store, StoreWrapper
from strata.store.counting import CountingStore, ImmutableGuardStore, ImmutableOverwrite
from strata.store.faults import FaultyStore
from strata.store.limits import LimitedStore
from strata.store.local import LocalStore, validate_key
from strata.store.memory import MemoryStore
from strata.store.metrics import MeteredStore
from strata.store.retry import RetryingStore

if TYPE_CHECKING:
    from strata.store.s3 import S3Store

__all__ = [
    "CountingStore",
    "FaultyStore",
    "ImmutableGuardStore",
    "ImmutableOverwrite",
    "LimitedStore",
    "LocalStore",
    "MemoryStore",
    "MeteredStore",
    "ObjectInfo",
    "RetryingStore",
    "S3Store",
    "Store",
    "StoreWrapper",
    "open_store",
    "validate_key",
]

ACCEPTED_FORMS = (
    "file:///absolute/path, s3://bucket[/prefix][?endpoint=URL&region=NAME], memory://name"
)
_S3_PARAMS = ("endpoint", "region")
# AWS bucket naming rules, which S3-compatible servers accept too.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")

_memory_stores: dict[str, MemoryStore] = {}
_memory_lock = threading.Lock()


def __getattr__(name: str) -> Any:
    # boto3 takes a noticeable time to import; only S3 users should pay for it.
    if name == "S3Store":
        from strata.store.s3 import S3Store

        return S3Store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_store(
    url: str,
    *,
    retries: bool = True,
    max_concurrent: int | None = 64,
    metrics: bool = True,
) -> Store:
    """Open the store at ``url``, wrapped for production use.

    ``max_concurrent`` bounds requests in flight (``None``: unbounded) and sizes the
    S3 connection pool to match; ``retries`` and ``metrics`` can be switched off for
    tests that want to see raw backend behaviour. Raises InvalidStoreURL with the
    accepted forms when the URL is not one of them.
    """
    store = _open_backend(url, max_concurrent)
    if max_concurrent is not None:
        store = LimitedStore(store, max_concurrent)
    if retries:
        store = RetryingStore(store)
    if metrics:
        store = MeteredStore(store)
    return store


def clear_memory_stores() -> None:
    """Forget every ``memory://`` store of this process (test isolation)."""
    with _memory_lock:
        _memory_stores.clear()


def _open_backend(url: str, max_concurrent: int | None) -> Store:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        return _open_file(url, parts)
    if scheme == "s3":
        return _open_s3(url, parts, max_concurrent)
    if scheme == "memory":
        return _open_memory(url, parts)
    shown = f"scheme {scheme!r}" if scheme else "no scheme"
    raise _invalid(url, f"{shown} is not supported")


def _open_file(url: str, parts: Any) -> Store:
    if parts.netloc not in ("", "localhost"):
        raise _invalid(
            url,
            f"{parts.netloc!r} would be a host name; a local path needs three slashes "
            "and must be absolute",
        )
    if parts.query or parts.fragment:
        raise _invalid(url, "a file store URL takes no query or fragment")
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise _invalid(url, "the path must be absolute")
    return LocalStore(Path(path))


def _open_s3(url: str, parts: Any, max_concurrent: int | None) -> Store:
    from strata.store.s3 import S3Store

    if "@" in parts.netloc:
        raise _invalid(
            url,
            "credentials do not belong in the URL; they come from the standard AWS chain "
            "(environment, ~/.aws, pod or instance role)",
        )
    bucket = parts.netloc
    if not bucket:
        raise _invalid(url, "the bucket name is missing")
    if not _BUCKET.match(bucket):
        raise _invalid(url, f"{bucket!r} is not a valid bucket name")
    prefix = unquote(parts.path).strip("/")
    if prefix:
        try:
            validate_key(prefix)
        except ValueError:
            raise _invalid(url, f"{prefix!r} is not a valid key prefix") from None
    params = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(params) - set(_S3_PARAMS))
    if unknown:
        raise _invalid(
            url, f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(_S3_PARAMS)}"
        )
    for name, values in params.items():
        if len(values) != 1 or not values[0]:
            raise _invalid(url, f"parameter {name!r} needs exactly one non-empty value")
    endpoint = params.get("endpoint", [None])[0]
    if endpoint is not None:
        ep = urlsplit(endpoint)
        if ep.scheme not in ("http", "https") or not ep.hostname:
            raise _invalid(url, "endpoint must be an http:// or https:// URL with a host")
        if ep.username is not None or ep.password is not None:
            raise _invalid(url, "credentials do not belong in the endpoint URL")
    return S3Store(
        bucket,
        prefix,
        endpoint=endpoint,
        region=params.get("region", [None])[0],
        max_connections=max_concurrent or 64,
    )


def _open_memory(url: str, parts: Any) -> Store:
    if parts.query or parts.fragment:
        raise _invalid(url, "a memory store URL takes no query or fragment")
    name = (parts.netloc + parts.path).strip("/")
    with _memory_lock:
        store = _memory_stores.get(name)
        if store is None:
            store = _memory_stores[name] = MemoryStore(f"memory://{name}")
    return store


def _invalid(url: str, why: str) -> InvalidStoreURL:
    return InvalidStoreURL(
        f"invalid store URL {_redact(url)!r}: {why}; accepted forms: {ACCEPTED_FORMS}"
    )


def _redact(url: str) -> str:
    """The URL with anything that looks like a credential replaced, for messages."""
    url = re.sub(r"(?<=://)[^/@?#]*@", "***@", url)
    return re.sub(r"(?i)((?:secret|key|token|password)[^=&]*=)[^&]*", r"\1***", url)
