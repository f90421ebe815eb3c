"""FaultyStore: the faults it promises, deterministically."""

from __future__ import annotations

import pytest

from strata.errors import TemporaryStoreError
from strata.store.faults import FaultyStore
from strata.store.memory import MemoryStore


def outcomes(store: FaultyStore, n: int = 40) -> list[str]:
    result = []
    for i in range(n):
        try:
            store.put(f"k{i}", b"x")
            result.append("ok")
        except TemporaryStoreError as exc:
            result.append("after" if "reply was lost" in str(exc) else "before")
    return result


def test_same_seed_same_faults() -> None:
    def make() -> FaultyStore:
        return FaultyStore(MemoryStore(), fail_rate=0.3, fail_after_rate=0.3, seed=42)

    first, second = outcomes(make()), outcomes(make())
    assert first == second
    assert {"ok", "before", "after"} <= set(first)


def test_fault_before_does_not_reach_the_store() -> None:
    memory = MemoryStore()
    store = FaultyStore(memory, fail_rate=1.0)
    with pytest.raises(TemporaryStoreError, match="failed before reaching"):
        store.put("k", b"x")
    assert not memory.exists("k")
    assert store.injected["put", "before"] == 1


def test_fault_after_success_leaves_the_write_done() -> None:
    memory = MemoryStore()
    store = FaultyStore(memory, fail_after_rate=1.0)
    with pytest.raises(TemporaryStoreError, match="reply was lost"):
        store.put("k", b"x", if_absent=True)
    assert memory.get("k") == b"x"
    assert store.injected["put", "after"] == 1


def test_only_the_chosen_ops_fail() -> None:
    memory = MemoryStore()
    store = FaultyStore(memory, fail_rate=1.0, ops={"get"})
    store.put("k", b"x")
    assert store.head("k").size == 1
    assert [i.key for i in store.list()] == ["k"]
    with pytest.raises(TemporaryStoreError):
        store.get("k")
    with pytest.raises(TemporaryStoreError):
        store.get_with_etag("k")


def test_slow_requests_sleep_the_delay() -> None:
    slept: list[float] = []
    store = FaultyStore(MemoryStore(), slow_rate=1.0, delay=0.25, sleep=slept.append)
    store.put("k", b"x")
    store.get("k")
    assert slept == [0.25, 0.25]
    assert store.injected["put", "slow"] == 1


def test_listings_fail_per_page_and_after_the_last_item() -> None:
    memory = MemoryStore()
    for i in range(10):
        memory.put(f"k{i}", b"x")
    store = FaultyStore(memory, fail_after_rate=1.0, ops={"list"})
    with pytest.raises(TemporaryStoreError):
        list(store.list())
    got: list[str] = []
    with pytest.raises(TemporaryStoreError):
        for info in FaultyStore(memory, fail_rate=1.0, ops={"list"}, page_size=4).list():
            got.append(info.key)
    assert got == []
    empty = FaultyStore(MemoryStore(), fail_rate=1.0, ops={"list"})
    with pytest.raises(TemporaryStoreError):
        list(empty.list())


@pytest.mark.parametrize(
    "kwargs",
    [{"fail_rate": 1.5}, {"fail_after_rate": -0.1}, {"slow_rate": 2}, {"ops": {"gett"}}],
)
def test_bad_settings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        FaultyStore(MemoryStore(), **kwargs)  # type: ignore[arg-type]
