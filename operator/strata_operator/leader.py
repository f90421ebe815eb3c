"""Leader election over a ``coordination.k8s.io/v1`` Lease: one replica acts at a time.

Why a Lease and not kopf's peering: peering needs kopf's own KopfPeering CRDs installed
and, between replicas of equal priority, only warns instead of choosing one. A Lease is
built into every cluster and is what controller-runtime and client-go use.

The replica that holds the Lease runs kopf (handlers and the sweeper); the others wait,
alive to their probes. The holder renews every ``duration / 3`` seconds; if it cannot
renew for ``2/3 * duration`` it stops acting and the process exits (the pod restarts as
a standby), before anyone else may take over. Expiry is judged the way client-go does,
by how long the record has been seen unchanged on *this* replica's monotonic clock, so
clock skew between nodes cannot make two replicas leaders at once. A clean shutdown
releases the Lease so a standby takes over at once.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from strata_operator.kube import Conflict, Kube, KubeError
from strata_operator.timeutil import format_micro, utcnow

__all__ = ["LeaderElector"]

log = logging.getLogger(__name__)


class LeaderElector:
    """Acquire, keep and release one Lease on behalf of ``identity``."""

    def __init__(
        self,
        kube: Kube,
        *,
        namespace: str,
        name: str,
        identity: str,
        duration: float,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration = duration
        self.clock = clock
        self.monotonic = monotonic
        self.renew_every = duration / 3
        self.renew_deadline = duration * 2 / 3
        self.retry_every = max(duration / 7, 0.2)
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._last_renewed = 0.0
        self.leading = False

    # -- one attempt ---------------------------------------------------------------------------

    def try_acquire_or_renew(self) -> bool:
        """One compare-and-swap on the Lease; True if we hold it afterwards."""
        now = self.clock()
        lease = self.kube.get_lease(self.namespace, self.name)
        if lease is None:
            return self._write(None, now, transitions=0)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        # Any write (a renewal included) changes resourceVersion: an unchanged one means
        # the holder has not renewed since we first saw this record.
        record = (holder, lease["metadata"].get("resourceVersion"), spec.get("renewTime"))
        if record != self._observed:
            self._observed, self._observed_at = record, self.monotonic()
        if holder == self.identity:
            return self._write(lease, now, transitions=spec.get("leaseTransitions") or 0)
        duration = spec.get("leaseDurationSeconds") or self.duration
        if holder and self.monotonic() - self._observed_at < duration:
            return False  # held by someone else, renewed within its duration
        return self._write(lease, now, transitions=(spec.get("leaseTransitions") or 0) + 1)

    def _write(self, lease: dict[str, Any] | None, now: datetime, transitions: int) -> bool:
        spec = dict((lease or {}).get("spec") or {})
        if spec.get("holderIdentity") != self.identity:
            spec["acquireTime"] = format_micro(now)
        spec.update(
            holderIdentity=self.identity,
            leaseDurationSeconds=math.ceil(self.duration),
            renewTime=format_micro(now),
            leaseTransitions=transitions,
        )
        try:
            if lease is None:
                body = {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": spec,
                }
                self.kube.create_lease(self.namespace, body)
            else:
                body = {**lease, "spec": spec}
                self.kube.replace_lease(self.namespace, self.name, body)
        except Conflict:
            return False  # someone else wrote first; look again next time
        self._last_renewed = self.monotonic()
        return True

    # -- the lifecycle ---------------------------------------------------------------------------

    def acquire(self, stop: threading.Event) -> bool:
        """Block until we lead (True) or ``stop`` is set (False)."""
        announced = False
        while not stop.is_set():
            try:
                if self.try_acquire_or_renew():
                    self.leading = True
                    log.info("leading: holding Lease %s/%s", self.namespace, self.name)
                    return True
            except KubeError as exc:
                log.info("cannot read Lease %s/%s yet: %s", self.namespace, self.name, exc)
            if not announced:
                log.info(
                    "standing by: Lease %s/%s is held by another replica", self.namespace, self.name
                )
                announced = True
            stop.wait(self.retry_every)
        return False

    def keep(self, stop: threading.Event, on_lost: Callable[[], None]) -> threading.Thread:
        """Renew in a daemon thread until ``stop``; call ``on_lost`` if the Lease slips."""

        def renew_loop() -> None:
            while not stop.wait(self.renew_every):
                try:
                    if self.try_acquire_or_renew():
                        continue
                except KubeError as exc:
                    log.info("renewing Lease %s/%s failed: %s", self.namespace, self.name, exc)
                if self.monotonic() - self._last_renewed >= self.renew_deadline:
                    self.leading = False
                    log.error("lost Lease %s/%s: stopping", self.namespace, self.name)
                    on_lost()
                    return

        thread = threading.Thread(target=renew_loop, name="strata-lease", daemon=True)
        thread.start()
        return thread

    def release(self) -> None:
        """Give the Lease up (if still ours) so a standby can take over immediately."""
        if not self.leading:
            return
        self.leading = False
        try:
            lease = self.kube.get_lease(self.namespace, self.name)
            spec = dict((lease or {}).get("spec") or {})
            if lease is None or spec.get("holderIdentity") != self.identity:
                return
            spec.update(holderIdentity=None, leaseDurationSeconds=1)
            self.kube.replace_lease(self.namespace, self.name, {**lease, "spec": spec})
            log.info("released Lease %s/%s", self.namespace, self.name)
        except KubeError as exc:
            log.info(
                "could not release Lease %s/%s (it will expire): %s", self.namespace, self.name, exc
            )
