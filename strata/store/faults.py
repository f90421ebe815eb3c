"""Fault injection for tests: a store that fails or slows a fraction of requests.

Two kinds of failure matter, and real stores produce both:

* **before** the request reaches the store (connection refused, throttled): nothing
  happened, a retry is trivially safe;
* **after** the store acted but before the caller heard back (the reply was lost, a
  read timed out): the write *did* happen, and a retry must be idempotent. This is the
  case that breaks naive ``put(if_absent=True)`` retries and compare-and-swap loops.

Both raise :class:`~strata.errors.TemporaryStoreError`, as a backend would. Decisions
come from one seeded RNG, so a sequential test sees the same faults on every run.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from typing import TypeVar

from strata.errors import TemporaryStoreError
from strata.store.base import ObjectInfo, Store, StoreWrapper

T = TypeVar("T")

#: operation names accepted by ``ops`` (``get_with_etag`` counts as ``get``)
OPS = frozenset({"get", "head", "put", "delete", "list"})


class FaultyStore(StoreWrapper):
    """Injects temporary failures and delays into requests to ``inner``.

    Per request of an op in ``ops`` (default: all), independently:

    * with probability ``slow_rate``, sleep ``delay`` seconds first;
    * with probability ``fail_rate``, fail *before* calling ``inner``;
    * otherwise call ``inner``, and if it succeeded, with probability
      ``fail_after_rate`` fail anyway (the reply was "lost").

    A listing is treated as pages of ``page_size`` items (S3 pages hold 1000): each
    page fetch may fail before, and the listing may fail after its last item. ``injected`` counts
    what was injected, e.g. ``injected["put", "after"]``, so a test can check that
    the faults it relies on really happened.
    """

    def __init__(
        self,
        inner: Store,
        *,
        fail_rate: float = 0.0,
        fail_after_rate: float = 0.0,
        slow_rate: float = 0.0,
        delay: float = 0.0,
        seed: int | None = 0,
        ops: Collection[str] | None = None,
        page_size: int = 1000,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(inner)
        for name, rate in (
            ("fail_rate", fail_rate),
            ("fail_after_rate", fail_after_rate),
            ("slow_rate", slow_rate),
        ):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {rate}")
        unknown = set(ops or ()) - OPS
        if unknown:
            raise ValueError(f"unknown ops {sorted(unknown)}; choose from {sorted(OPS)}")
        self.fail_rate = fail_rate
        self.fail_after_rate = fail_after_rate
        self.slow_rate = slow_rate
        self.delay = delay
        self.ops = frozenset(ops) if ops is not None else OPS
        self.page_size = page_size
        self.injected: Counter[tuple[str, str]] = Counter()
        self._sleep = sleep
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def _roll(self, rate: float) -> bool:
        if rate <= 0.0:
            return False
        with self._lock:
            return self._rng.random() < rate

    def _note(self, op: str, kind: str) -> None:
        with self._lock:
            self.injected[op, kind] += 1

    def _before(self, op: str, key: str) -> None:
        if op not in self.ops:
            return
        if self._roll(self.slow_rate):
            self._note(op, "slow")
            self._sleep(self.delay)
        if self._roll(self.fail_rate):
            self._note(op, "before")
            raise TemporaryStoreError(
                f"injected fault: {op} {key!r} failed before reaching {self.url}"
            )

    def _after(self, op: str, key: str) -> None:
        if op in self.ops and self._roll(self.fail_after_rate):
            self._note(op, "after")
            raise TemporaryStoreError(
                f"injected fault: {op} {key!r} reached {self.url} but the reply was lost"
            )

    def _call(self, op: str, key: str, fn: Callable[[], T]) -> T:
        self._before(op, key)
        result = fn()
        self._after(op, key)
        return result

    def get(self, key: str) -> bytes:
        return self._call("get", key, lambda: self.inner.get(key))

    def get_with_etag(self, key: str) -> tuple[bytes, str]:
        return self._call("get", key, lambda: self.inner.get_with_etag(key))

    def head(self, key: str) -> ObjectInfo:
        return self._call("head", key, lambda: self.inner.head(key))

    def put(
        self, key: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None
    ) -> str:
        return self._call(
            "put", key, lambda: self.inner.put(key, data, if_absent=if_absent, if_match=if_match)
        )

    def delete(self, key: str) -> None:
        self._call("delete", key, lambda: self.inner.delete(key))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        count = 0
        for info in self.inner.list(prefix):
            if count % self.page_size == 0:
                self._before("list", prefix)
            count += 1
            yield info
        if count == 0:
            self._before("list", prefix)  # an empty listing is still one request
        self._after("list", prefix)
