"""A bound on concurrent store requests.

Object stores throttle clients that open too many connections, and a FUSE daemon
with 50 upload threads, a prefetcher and a GC sweep can easily ask for hundreds at
once. One semaphore per store keeps the total at ``max_concurrent``; callers beyond
it wait their turn instead of being throttled and retried.

In the stack built by :func:`strata.store.open_store` this wrapper sits *inside* the
retry wrapper, so a request sleeping between retries does not hold a slot.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from strata.store.base import ObjectInfo, Store, StoreWrapper


class LimitedStore(StoreWrapper):
    """At most ``max_concurrent`` requests to ``inner`` in flight at any time."""

    def __init__(self, inner: Store, max_concurrent: int) -> None:
        super().__init__(inner)
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be at least 1, got {max_concurrent}")
        self.max_concurrent = max_concurrent
        self._slots = threading.BoundedSemaphore(max_concurrent)

    def get(self, key: str) -> bytes:
        with self._slots:
            return self.inner.get(key)

    def get_with_etag(self, key: str) -> tuple[bytes, str]:
        with self._slots:
            return self.inner.get_with_etag(key)

    def head(self, key: str) -> ObjectInfo:
        with self._slots:
            return self.inner.head(key)

    def put(
        self, key: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None
    ) -> str:
        with self._slots:
            return self.inner.put(key, data, if_absent=if_absent, if_match=if_match)

    def delete(self, key: str) -> None:
        with self._slots:
            self.inner.delete(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Hold a slot only while fetching, not while the consumer works on an item.

        A listing is a series of page requests made inside ``next()``; holding a slot
        across ``yield`` would let a slow consumer starve every other request.
        """
        items = iter(self.inner.list(prefix))
        try:
            while True:
                with self._slots:
                    info = next(items, None)
                if info is None:
                    return
                yield info
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
