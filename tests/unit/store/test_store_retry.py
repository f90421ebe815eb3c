"""RetryingStore: temporary failures are retried, with a budget, idempotently."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import REGISTRY

from strata.errors import (
    ObjectNotFound,
    PreconditionFailed,
    StoreUnavailable,
    TemporaryStoreError,
)
from strata.store.base import Store, StoreWrapper
from strata.store.counting import CountingStore
from strata.store.faults import FaultyStore
from strata.store.memory import MemoryStore
from strata.store.retry import RetryingStore


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


class FailFirst(StoreWrapper):
    """Fails the first ``n`` puts with a temporary error, ``after`` the write or before."""

    def __init__(self, inner: Store, n: int = 1, *, after: bool) -> None:
        super().__init__(inner)
        self.left = n
        self.after = after

    def put(
        self, key: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None
    ) -> str:
        if self.left and not self.after:
            self.left -= 1
            raise TemporaryStoreError("injected: connection reset before the request")
        etag = self.inner.put(key, data, if_absent=if_absent, if_match=if_match)
        if self.left:
            self.left -= 1
            raise TemporaryStoreError("injected: read timeout, the reply was lost")
        return etag


def retrying(inner: Store, time: FakeTime | None = None, **kw: object) -> RetryingStore:
    time = time or FakeTime()
    return RetryingStore(inner, sleep=time.sleep, clock=time.clock, seed=1, **kw)  # type: ignore[arg-type]


def retries_metric(op: str) -> float:
    return REGISTRY.get_sample_value("strata_store_retries_total", {"op": op}) or 0.0


def test_flaky_store_succeeds_through_retries() -> None:
    memory = MemoryStore()
    faulty = FaultyStore(memory, fail_rate=0.4, fail_after_rate=0.2, seed=7)
    store = retrying(faulty, attempts=20)
    before = retries_metric("put")
    for i in range(50):
        store.put(f"chunks/{i:02d}", b"x" * i, if_absent=True)
    for i in range(50):
        assert store.get(f"chunks/{i:02d}") == b"x" * i
        assert store.head(f"chunks/{i:02d}").size == i
    assert [info.key for info in store.list("chunks/")] == [f"chunks/{i:02d}" for i in range(50)]
    for i in range(50):
        store.delete(f"chunks/{i:02d}")
    assert list(memory.list()) == []
    assert faulty.injected["put", "before"] > 0
    assert faulty.injected["put", "after"] > 0
    assert retries_metric("put") - before == (
        faulty.injected["put", "before"] + faulty.injected["put", "after"]
    )


def test_giving_up_names_the_object_the_operation_and_the_cause() -> None:
    counting = CountingStore(FaultyStore(MemoryStore(), fail_rate=1.0))
    store = retrying(counting, attempts=4)
    with pytest.raises(StoreUnavailable) as info:
        store.get("chunks/ab/abcdef")
    message = str(info.value)
    assert "get 'chunks/ab/abcdef'" in message
    assert "memory://" in message
    assert "after 4 attempts" in message
    assert "injected fault" in message  # the last cause, in words
    assert isinstance(info.value.__cause__, TemporaryStoreError)
    assert counting.counts.by_op["get"] == 4


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    time = FakeTime()
    store = retrying(
        FaultyStore(MemoryStore(), fail_rate=1.0),
        time,
        attempts=9,
        base_delay=0.1,
        max_delay=1.0,
        deadline=1000,
    )
    with pytest.raises(StoreUnavailable):
        store.head("k")
    assert len(time.sleeps) == 8  # between 9 attempts
    caps = [min(1.0, 0.1 * 2**n) for n in range(8)]
    assert all(0 <= s <= cap for s, cap in zip(time.sleeps, caps, strict=True))
    assert len(set(time.sleeps)) == len(time.sleeps), "no jitter"
    assert max(time.sleeps[4:]) > 0.2, "delays did not grow"


def test_deadline_bounds_the_time_spent() -> None:
    time = FakeTime()
    counting = CountingStore(FaultyStore(MemoryStore(), fail_rate=1.0))
    store = retrying(counting, time, attempts=1000, base_delay=1.0, max_delay=1.0, deadline=10.0)
    with pytest.raises(StoreUnavailable, match="attempts in"):
        store.get("k")
    assert time.now <= 10.0
    assert 3 < counting.counts.by_op["get"] < 1000


@pytest.mark.parametrize("error", [ObjectNotFound("k"), PreconditionFailed("k"), ValueError("x")])
def test_permanent_answers_are_not_retried(error: Exception) -> None:
    class Answer(StoreWrapper):
        calls = 0

        def get(self, key: str) -> bytes:
            Answer.calls += 1
            raise error

    store = retrying(Answer(MemoryStore()))
    with pytest.raises(type(error)):
        store.get("k")
    assert Answer.calls == 1


def test_if_absent_whose_first_attempt_landed_succeeds() -> None:
    """The reply was lost, the retry finds "our" object: that is success, not a conflict."""
    memory = MemoryStore()
    store = retrying(FailFirst(memory, after=True))
    etag = store.put("chunks/ab/c", b"content", if_absent=True)
    assert memory.get_with_etag("chunks/ab/c") == (b"content", etag)


def test_if_absent_after_an_uncertain_attempt_still_detects_a_real_conflict() -> None:
    memory = MemoryStore()
    memory.put("versions/v/1", b"someone else's")
    store = retrying(FailFirst(memory, after=False))
    with pytest.raises(PreconditionFailed):
        store.put("versions/v/1", b"mine", if_absent=True)
    assert memory.get("versions/v/1") == b"someone else's"


def test_if_absent_conflict_without_uncertainty_is_reported_as_is() -> None:
    """Identical bytes, but nothing of ours was in flight: the caller learns it existed."""
    memory = MemoryStore()
    memory.put("chunks/x", b"same")
    with pytest.raises(PreconditionFailed):
        retrying(memory).put("chunks/x", b"same", if_absent=True)


def test_if_match_whose_first_attempt_landed_is_not_guessed() -> None:
    memory = MemoryStore()
    etag = memory.put("heads/v", b"1")
    store = retrying(FailFirst(memory, after=True))
    with pytest.raises(PreconditionFailed, match="may have been the change"):
        store.put("heads/v", b"2", if_match=etag)
    assert memory.get("heads/v") == b"2"  # it did land; the caller re-reads to see that


def test_faults_after_success_on_every_op_keep_results_exact() -> None:
    memory = MemoryStore()
    store = retrying(FaultyStore(memory, fail_after_rate=0.5, seed=3), attempts=30)
    for i in range(20):
        store.put(f"trees/{i:02d}", bytes([i]), if_absent=True)
        store.put(f"heads/{i:02d}", bytes([i]))
    assert [store.get(f"trees/{i:02d}") for i in range(20)] == [bytes([i]) for i in range(20)]
    assert len(list(store.list())) == 40


def test_list_resumes_without_repeating_or_dropping_keys() -> None:
    memory = MemoryStore()
    keys = [f"chunks/{i:03d}" for i in range(40)]
    for key in keys:
        memory.put(key, b"x")
    faulty = FaultyStore(memory, fail_rate=0.3, fail_after_rate=0.5, page_size=4, seed=5)
    store = retrying(faulty, attempts=50)
    assert [info.key for info in store.list("chunks/")] == keys
    assert faulty.injected["list", "before"] > 1  # some failures came mid-listing


def test_list_gives_up_naming_where_it_stopped() -> None:
    memory = MemoryStore()
    for i in range(6):
        memory.put(f"k{i}", b"x")

    class BreaksAfterTwo(StoreWrapper):
        def list(self, prefix: str = ""):  # type: ignore[override]
            for n, info in enumerate(self.inner.list(prefix)):
                if n == 2:
                    raise TemporaryStoreError("connection reset")
                yield info

    store = retrying(BreaksAfterTwo(memory), attempts=3)
    seen: list[str] = []
    with pytest.raises(StoreUnavailable, match=r"list '' .*\(after 'k1'\) failed after 3 attempts"):
        for info in store.list():
            seen.append(info.key)
    assert seen == ["k0", "k1"]


def test_cas_through_faults_before_the_request_loses_nothing() -> None:
    """Faults *before* the request keep compare-and-swap exact under contention."""
    memory = MemoryStore()
    memory.put("heads/counter", b"0")
    store = RetryingStore(
        FaultyStore(memory, fail_rate=0.3, seed=11), attempts=50, sleep=lambda s: None
    )
    threads, per_thread = 6, 30

    def worker() -> None:
        for _ in range(per_thread):
            while True:
                data, etag = store.get_with_etag("heads/counter")
                try:
                    store.put("heads/counter", str(int(data) + 1).encode(), if_match=etag)
                    break
                except PreconditionFailed:
                    continue

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=60)
    assert int(memory.get("heads/counter")) == threads * per_thread


def test_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError, match="attempts"):
        RetryingStore(MemoryStore(), attempts=0)
