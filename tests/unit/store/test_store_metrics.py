"""MeteredStore: the Prometheus series move as the store is used."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from prometheus_client import REGISTRY

from strata.errors import ObjectNotFound, PreconditionFailed, StoreUnavailable
from strata.store.faults import FaultyStore
from strata.store.memory import MemoryStore
from strata.store.metrics import MeteredStore
from strata.store.retry import RetryingStore


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Delta:
    """Changes of chosen samples across a block of code (the registry is process-wide)."""

    def __init__(self, **series: tuple[str, dict[str, str]]) -> None:
        self.series = series
        self.start = {k: sample(n, **lab) for k, (n, lab) in series.items()}

    def __getitem__(self, key: str) -> float:
        name, labels = self.series[key]
        return sample(name, **labels) - self.start[key]


def req(op: str, result: str) -> tuple[str, dict[str, str]]:
    return "strata_store_requests_total", {"op": op, "result": result}


def test_requests_bytes_and_latency_are_counted() -> None:
    store = MeteredStore(MemoryStore())
    d = Delta(
        put_ok=req("put", "ok"),
        get_ok=req("get", "ok"),
        head_ok=req("head", "ok"),
        delete_ok=req("delete", "ok"),
        list_ok=req("list", "ok"),
        out=("strata_store_bytes_total", {"direction": "out"}),
        into=("strata_store_bytes_total", {"direction": "in"}),
        put_seconds=("strata_store_request_seconds_count", {"op": "put"}),
    )
    store.put("a", b"12345")
    store.put("b", b"123")
    assert store.get("a") == b"12345"
    store.get_with_etag("b")
    store.head("a")
    assert [i.key for i in store.list()] == ["a", "b"]
    store.delete("a")
    assert (d["put_ok"], d["get_ok"], d["head_ok"], d["delete_ok"], d["list_ok"]) == (
        2,
        2,
        1,
        1,
        1,
    )
    assert (d["out"], d["into"]) == (8, 8)
    assert d["put_seconds"] == 2


def test_expected_answers_are_results_not_errors() -> None:
    store = MeteredStore(MemoryStore())
    store.put("k", b"x")
    d = Delta(
        nf=req("get", "not_found"),
        pf=req("put", "precondition_failed"),
        errors=("strata_store_errors_total", {"op": "get", "kind": "ObjectNotFound"}),
    )
    with pytest.raises(ObjectNotFound):
        store.get("missing")
    with pytest.raises(PreconditionFailed):
        store.put("k", b"y", if_absent=True)
    assert (d["nf"], d["pf"], d["errors"]) == (1, 1, 0)


def test_failures_after_retries_are_errors_by_kind_and_retries_are_counted() -> None:
    faulty = FaultyStore(MemoryStore(), fail_rate=1.0)
    store = MeteredStore(RetryingStore(faulty, attempts=3, sleep=lambda s: None))
    d = Delta(
        err=req("head", "error"),
        kind=("strata_store_errors_total", {"op": "head", "kind": "StoreUnavailable"}),
        retries=("strata_store_retries_total", {"op": "head"}),
    )
    with pytest.raises(StoreUnavailable):
        store.head("k")
    assert (d["err"], d["kind"], d["retries"]) == (1, 1, 2)


@pytest.mark.parametrize(
    "consume",
    [lambda it: next(it), lambda it: list(it)],
    ids=["abandoned", "exhausted"],
)
def test_a_listing_counts_once_however_it_ends(consume: Callable[..., object]) -> None:
    memory = MemoryStore()
    memory.put("a", b"x")
    memory.put("b", b"x")
    d = Delta(ok=req("list", "ok"), n=("strata_store_request_seconds_count", {"op": "list"}))
    listing = MeteredStore(memory).list()
    consume(listing)
    listing.close()
    assert (d["ok"], d["n"]) == (1, 1)
