"""An in-process store (``memory://``): for unit tests and throwaway volumes.

Same semantics as the real backends, including conditional writes and key validation,
so the shared store test suite runs against it too.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator

from strata.errors import ObjectNotFound, PreconditionFailed
from strata.store.base import ObjectInfo, Store
from strata.store.local import validate_key


class MemoryStore(Store):
    def __init__(self, url: str = "memory://", *, clock: Callable[[], float] = time.time) -> None:
        """``clock`` stamps each write's mtime (tests of GC age rules pass a fake one)."""
        self.url = url
        self._clock = clock
        self._objects: dict[str, tuple[bytes, float, str]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes:
        return self.get_with_etag(key)[0]

    def get_with_etag(self, key: str) -> tuple[bytes, str]:
        validate_key(key)
        with self._lock:
            try:
                data, _, etag = self._objects[key]
            except KeyError:
                raise ObjectNotFound(key, self.url) from None
        return data, etag

    def head(self, key: str) -> ObjectInfo:
        validate_key(key)
        with self._lock:
            try:
                data, mtime, etag = self._objects[key]
            except KeyError:
                raise ObjectNotFound(key, self.url) from None
        return ObjectInfo(key, len(data), mtime, etag)

    def put(
        self, key: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None
    ) -> str:
        validate_key(key)
        etag = hashlib.md5(data, usedforsecurity=False).hexdigest()
        with self._lock:
            current = self._objects.get(key)
            if if_absent and current is not None:
                raise PreconditionFailed(key, "object already exists")
            if if_match is not None and (current is None or current[2] != if_match):
                raise PreconditionFailed(key, "object changed since it was read")
            self._objects[key] = (bytes(data), self._clock(), etag)
        return etag

    def delete(self, key: str) -> None:
        validate_key(key)
        with self._lock:
            self._objects.pop(key, None)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        with self._lock:
            items = sorted((k, v) for k, v in self._objects.items() if k.startswith(prefix))
        for key, (data, mtime, etag) in items:
            yield ObjectInfo(key, len(data), mtime, etag)

    def set_mtime(self, key: str, mtime: float) -> None:
        """Backdate an object (tests of GC grace windows)."""
        with self._lock:
            data, _, etag = self._objects[key]
            self._objects[key] = (data, mtime, etag)
