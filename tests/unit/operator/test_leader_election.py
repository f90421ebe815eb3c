"""Lease-based leader election against an in-memory Lease store with compare-and-swap."""

from __future__ import annotations

import copy
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from strata_operator.kube import Conflict
from strata_operator.leader import LeaderElector


class FakeLeases:
    """The three Lease verbs of ``Kube``, with resourceVersion compare-and-swap."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0

    def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.lease)

    def create_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.lease is not None:
            raise Conflict("already exists", 409)
        return self._store(body)

    def replace_lease(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        assert self.lease is not None
        if body["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
            raise Conflict("the object has been modified", 409)
        return self._store(body)

    def _store(self, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        self.lease = copy.deepcopy(body)
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.lease)

    @property
    def holder(self) -> str | None:
        return (self.lease or {}).get("spec", {}).get("holderIdentity")


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def leases() -> FakeLeases:
    return FakeLeases()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def elector(leases: FakeLeases, clock: Clock, identity: str) -> LeaderElector:
    return LeaderElector(
        leases,  # type: ignore[arg-type]
        namespace="ns",
        name="strata-operator",
        identity=identity,
        duration=15,
        clock=lambda: datetime(2026, 11, 20, tzinfo=UTC),
        monotonic=clock,
    )


def test_first_comer_creates_and_holds(leases: FakeLeases, clock: Clock) -> None:
    a, b = elector(leases, clock, "a"), elector(leases, clock, "b")
    assert a.try_acquire_or_renew()
    assert leases.holder == "a"
    assert not b.try_acquire_or_renew()
    assert a.try_acquire_or_renew()  # renewing
    assert leases.lease is not None and leases.lease["spec"]["leaseTransitions"] == 0


def test_standby_takes_over_only_after_the_record_is_stale(
    leases: FakeLeases, clock: Clock
) -> None:
    a, b = elector(leases, clock, "a"), elector(leases, clock, "b")
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()  # b first sees the record now
    clock.t += 14
    assert not b.try_acquire_or_renew()
    clock.t += 2  # 16s unchanged on b's own clock: a stopped renewing
    assert b.try_acquire_or_renew()
    assert leases.holder == "b"
    assert leases.lease is not None and leases.lease["spec"]["leaseTransitions"] == 1
    assert not a.try_acquire_or_renew()  # a sees b's fresh record and backs off


def test_a_renewing_holder_is_never_displaced(leases: FakeLeases, clock: Clock) -> None:
    a, b = elector(leases, clock, "a"), elector(leases, clock, "b")
    assert a.try_acquire_or_renew()
    for _ in range(10):
        clock.t += 5
        assert a.try_acquire_or_renew()
        assert not b.try_acquire_or_renew()


def test_release_lets_a_standby_in_at_once(leases: FakeLeases, clock: Clock) -> None:
    a, b = elector(leases, clock, "a"), elector(leases, clock, "b")
    assert a.acquire(threading.Event())
    a.release()
    assert leases.holder is None
    assert b.try_acquire_or_renew()


def test_lost_race_is_a_plain_no(leases: FakeLeases, clock: Clock) -> None:
    a = elector(leases, clock, "a")
    leases.create_lease("ns", {"metadata": {"name": "strata-operator"}, "spec": {}})
    stale = leases.get_lease("ns", "strata-operator")
    leases.replace_lease("ns", "strata-operator", stale)  # someone else wrote meanwhile
    assert a._write(stale, datetime(2026, 11, 20, tzinfo=UTC), transitions=1) is False


def test_acquire_gives_up_when_stopped(leases: FakeLeases, clock: Clock) -> None:
    a, b = elector(leases, clock, "a"), elector(leases, clock, "b")
    assert a.try_acquire_or_renew()
    stop = threading.Event()
    stop.set()
    assert b.acquire(stop) is False
