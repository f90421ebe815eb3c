"""Test doubles for the chunk layer: an instrumented store and a hand-driven clock."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from strata.store.base import Store, StoreWrapper
from strata.store.memory import MemoryStore

WAIT = 10.0  # seconds; only ever reached when a test is already failing


class ProbeStore(StoreWrapper):
    """Counts requests, tracks concurrency, and can hold or fail them on demand.

    ``gate`` (set by default) must be set for a put/get to proceed; clear it to hold
    requests in flight. ``put_error``/``get_errors`` make the next requests fail.
    """

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.calls: Counter[str] = Counter()
        self.gate = threading.Event()
        self.gate.set()
        self.put_error: BaseException | None = None
        self.get_errors: list[BaseException] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._cond = threading.Condition()

    def _enter(self, op: str) -> None:
        with self._cond:
            self.calls[op] += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self._cond.notify_all()
        assert self.gate.wait(WAIT), "test gate never opened"

    def _leave(self) -> None:
        with self._cond:
            self.in_flight -= 1
            self._cond.notify_all()

    def wait_in_flight(self, n: int) -> None:
        """Block until exactly ``n`` requests are in flight (fail after WAIT seconds)."""
        with self._cond:
            assert self._cond.wait_for(lambda: self.in_flight == n, WAIT), self.in_flight

    def put(
        self, key: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None
    ) -> str:
        self._enter("put")
        try:
            if self.put_error is not None:
                raise self.put_error
            return super().put(key, data, if_absent=if_absent, if_match=if_match)
        finally:
            self._leave()

    def get(self, key: str) -> bytes:
        self._enter("get")
        try:
            if self.get_errors:
                raise self.get_errors.pop(0)
            return super().get(key)
        finally:
            self._leave()


class FakeClock:
    """A monotonic clock that only moves when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def memory() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def probe(memory: MemoryStore) -> ProbeStore:
    return ProbeStore(memory)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
