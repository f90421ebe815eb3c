"""The store interface: bytes in and out of a bucket or a directory.

Five verbs plus compare-and-swap, like restic's backend: everything else (retries,
concurrency limits, metrics, fault injection, request counting) is a wrapper that is
itself a :class:`Store`. Keys are ``/``-separated relative paths such as
``chunks/ab/abcdef…``; backends map them onto their own namespace (a prefix in a
bucket, a path under a directory).

Conditional writes are the only synchronisation primitive the engine needs:

* ``put(key, data, if_absent=True)`` writes only if the key does not exist
  (S3 ``If-None-Match: *``, local ``O_EXCL``/link); immutable objects use it.
* ``put(key, data, if_match=etag)`` replaces the object only if it still has ``etag``
  (S3 ``If-Match``, local lock + compare + rename); the per-volume head uses it.

Both raise :class:`strata.errors.PreconditionFailed` when they lose.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class ObjectInfo:
    """What a listing or ``head`` says about one object."""

    key: str
    size: int
    mtime: float  # seconds since the epoch, as the store reports last modification
    etag: str = ""


class Store(abc.ABC):
    """A flat namespace of objects. Implementations must be thread-safe."""

    #: the URL this store was opened from, without credentials (safe to log)
    url: str

    @abc.abstractmethod
    def get(self, key: str) -> bytes:
        """Return the object's bytes; raise ObjectNotFound if absent."""

    @abc.abstractmethod
    def get_with_etag(self, key: str) -> tuple[bytes, str]:
        """Return the bytes and the etag to pass to ``put(if_match=…)``."""

    @abc.abstractmethod
    def head(self, key: str) -> ObjectInfo:
        """Return size/mtime/etag; raise ObjectNotFound if absent."""

    @abc.abstractmethod
    def put(
        self,
        key: str,
        data: bytes,
        *,
        if_absent: bool = False,
        if_match: str | None = None,
    ) -> str:
        """Write the object atomically (readers never see a partial object).

        Returns the new etag. At most one of ``if_absent`` / ``if_match`` is given.
        """

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yield every object whose key starts with ``prefix``, in key order."""

    def exists(self, key: str) -> bool:
        from strata.errors import ObjectNotFound

        try:
            self.head(key)
        except ObjectNotFound:
            return False
        return True

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections/threads; the default has nothing to release."""


class StoreWrapper(Store):
    """A store that delegates to another; subclasses override what they change."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.url = inner.url

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def get_with_etag(self, key: str) -> tuple[bytes, str]:
        return self.inner.get_with_etag(key)

    def head(self, key: str) -> ObjectInfo:
        return self.inner.head(key)

    def put(
        self, key: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None
    ) -> str:
        return self.inner.put(key, data, if_absent=if_absent, if_match=if_match)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def close(self) -> None:
        self.inner.close()
