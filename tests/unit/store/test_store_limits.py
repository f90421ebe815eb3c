"""LimitedStore: never more than ``max_concurrent`` requests in flight."""

from __future__ import annotations

import threading

import pytest

from strata.store.base import StoreWrapper
from strata.store.limits import LimitedStore
from strata.store.memory import MemoryStore


class Gate(StoreWrapper):
    """Holds every get until released, recording how many were inside at once."""

    def __init__(self) -> None:
        super().__init__(MemoryStore())
        self.inner.put("k", b"x")
        self.release = threading.Event()
        self.changed = threading.Condition()
        self.inside = 0
        self.most = 0

    def get(self, key: str) -> bytes:
        with self.changed:
            self.inside += 1
            self.most = max(self.most, self.inside)
            self.changed.notify_all()
        try:
            assert self.release.wait(timeout=30), "never released"
            return self.inner.get(key)
        finally:
            with self.changed:
                self.inside -= 1


def test_concurrency_never_exceeds_the_bound() -> None:
    gate = Gate()
    store = LimitedStore(gate, max_concurrent=3)
    results: list[bytes] = []
    threads = [threading.Thread(target=lambda: results.append(store.get("k"))) for _ in range(12)]
    for t in threads:
        t.start()
    with gate.changed:
        assert gate.changed.wait_for(lambda: gate.inside == 3, timeout=30)
    # Three are inside and held; the other nine can only be waiting for a slot.
    assert gate.most == 3
    gate.release.set()
    for t in threads:
        t.join(timeout=30)
    assert results == [b"x"] * 12
    assert gate.most == 3


def test_a_slow_list_consumer_does_not_hold_a_slot() -> None:
    memory = MemoryStore()
    memory.put("a", b"1")
    memory.put("b", b"2")
    store = LimitedStore(memory, max_concurrent=1)
    listing = store.list()
    assert next(listing).key == "a"  # a listing is under way, paused by its consumer
    other = threading.Thread(target=lambda: store.get("b"))
    other.start()
    other.join(timeout=30)
    assert not other.is_alive(), "a paused listing blocked every other request"
    assert [i.key for i in listing] == ["b"]


def test_bound_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_concurrent"):
        LimitedStore(MemoryStore(), 0)
