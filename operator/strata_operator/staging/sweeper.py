"""The one periodic sweeper of staging PVCs: expiry and orphans.

One loop per operator (not a timer per object, which would cost a task and a watch
slot per StagingVolume), run only by the replica holding the leader Lease. Each sweep
lists StagingVolumes and labelled staging PVCs in scope and:

* deletes the PVC of every StagingVolume whose ``status.expiresAt`` has passed while
  ``spec.runPhase`` is still terminal, then marks it Expired; while a pod still mounts
  the PVC it waits, shows an ``ExpiryBlocked`` condition and posts one Event;
* deletes labelled staging PVCs whose StagingVolume is gone (orphans). Kubernetes'
  garbage collector normally does this through the ownerReference, but not where no
  controller-manager runs (our test apiserver) or when someone removed the reference;
  a PVC still mounted by a pod is left alone and retried on the next sweep.

Every deletion carries the PVC's uid as a precondition, so a PVC re-created under the
same name in between is never deleted by mistake.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from strata_operator import conditions
from strata_operator.deps import Deps
from strata_operator.kube import Conflict, KubeError
from strata_operator.staging.reconcile import BLOCKED, READY, StagingReconciler, expired_message
from strata_operator.staging.resources import (
    ANN_DAG,
    ANN_OWNER,
    ANN_RUN,
    SELECTOR,
    StagingView,
    controller_owner,
    is_terminating,
    pods_using,
)
from strata_operator.timeutil import parse_time

__all__ = ["SweepReport", "Sweeper", "run_periodically"]

log = logging.getLogger(__name__)

Obj = dict[str, Any]


@dataclass
class SweepReport:
    """What one sweep did; the tests and the metrics read it."""

    expired: list[str] = field(default_factory=list)
    orphans_deleted: list[str] = field(default_factory=list)
    kept_in_use: list[str] = field(default_factory=list)
    live_pvcs: int = 0
    expired_volumes: int = 0


class Sweeper:
    """Deletes expired and orphaned staging PVCs; see the module docstring."""

    def __init__(self, deps: Deps, reconciler: StagingReconciler) -> None:
        self.deps = deps
        self.kube = deps.kube
        self.reconciler = reconciler
        # Orphans kept alive by pods, with the pods last announced: one Event per change.
        self._orphans_in_use: dict[tuple[str, str], list[str]] = {}

    def sweep(self) -> SweepReport:
        """One pass over every namespace in scope."""
        report = SweepReport()
        volumes: dict[str, list[StagingView]] = defaultdict(list)
        pvcs: dict[str, list[Obj]] = defaultdict(list)
        for namespace in self.deps.settings.namespaces or (None,):
            for body in self.kube.list_staging_volumes(namespace):
                volumes[body["metadata"]["namespace"]].append(StagingView.from_body(body))
            for pvc in self.kube.list_pvcs(namespace, SELECTOR):
                pvcs[pvc["metadata"]["namespace"]].append(pvc)
        with self.deps.metrics.sweep_seconds.time():
            for namespace in sorted(set(volumes) | set(pvcs)):
                _Pass(self, namespace, volumes[namespace], pvcs[namespace], report).run()
        self.deps.metrics.staging_pvcs_live.set(report.live_pvcs)
        self.deps.metrics.staging_volumes_expired.set(report.expired_volumes)
        return report


class _Pass:
    """One namespace of one sweep (pods listed at most once, only if needed)."""

    def __init__(
        self,
        sweeper: Sweeper,
        namespace: str,
        volumes: list[StagingView],
        pvcs: list[Obj],
        report: SweepReport,
    ) -> None:
        self.sweeper = sweeper
        self.deps = sweeper.deps
        self.kube = sweeper.kube
        self.namespace = namespace
        self.volumes = volumes
        self.pvcs = {p["metadata"]["name"]: p for p in pvcs}
        self.report = report
        self.now = self.deps.clock()
        self._pods: list[Obj] | None = None
        self._deleted: set[str] = set()  # PVC names deleted by this pass
        self._now_expired: set[str] = set()  # StagingVolumes marked Expired by this pass

    def run(self) -> None:
        for sv in self.volumes:
            try:
                self._expire(sv)
            except KubeError as exc:
                log.info(
                    "sweep: StagingVolume %s/%s left for later: %s", sv.namespace, sv.name, exc
                )
        for pvc in list(self.pvcs.values()):
            try:
                self._orphan(pvc)
            except KubeError as exc:
                log.info("sweep: PVC %s/%s left for later: %s", self.namespace, _name(pvc), exc)
        self.report.live_pvcs += sum(not is_terminating(p) for p in self.pvcs.values())
        self.report.expired_volumes += sum(
            sv.status.get("phase") == "Expired" for sv in self.volumes
        )

    def _users(self, claim: str) -> list[str]:
        if self._pods is None:
            self._pods = self.kube.list_pods(self.namespace)
        return pods_using(self._pods, claim)

    # -- expiry ----------------------------------------------------------------------------

    def _expire(self, sv: StagingView) -> None:
        expires = parse_time(sv.status.get("expiresAt"))
        # The spec is checked too: runPhase may already be Running again while the
        # reconcile that clears expiresAt has not run yet.
        if not sv.terminal or expires is None or expires > self.now or sv.being_deleted:
            return
        name = sv.status.get("pvcName") or sv.pvc_name(self.deps.settings.prefix)
        pvc = self.pvcs.get(name)
        owner = controller_owner(pvc) if pvc is not None else None
        if pvc is not None and not is_terminating(pvc) and owner and owner.get("uid") == sv.uid:
            users = self._users(name)
            if users:
                self._block(sv, name, users)
                return
            if self.kube.delete_pvc(self.namespace, name, pvc["metadata"]["uid"]):
                self._deleted.add(name)
                self.deps.metrics.staging_pvcs_deleted.labels(cause="expired").inc()
                self.deps.events.normal(
                    sv.body,
                    "Expired",
                    f"Deleted PVC {name}: the run finished at {sv.status.get('finishedAt')} "
                    f"and ttlSecondsAfterFinished={sv.ttl} elapsed",
                )
        if sv.status.get("phase") != "Expired":
            self._mark_expired(sv, name)
        self.report.expired.append(f"{self.namespace}/{sv.name}")

    def _mark_expired(self, sv: StagingView, pvc_name: str) -> None:
        conds = conditions.set_condition(
            conditions.remove(sv.status.get("conditions"), BLOCKED),
            READY,
            False,
            "Expired",
            expired_message(pvc_name, sv.status.get("finishedAt"), sv.ttl),
            generation=sv.generation,
            now=self.now,
        )
        try:
            self.kube.patch_staging_volume_status(
                sv.namespace,
                sv.name,
                {"phase": "Expired", "conditions": conds},
                resource_version=sv.resource_version,
            )
        except Conflict:
            return  # changed meanwhile (maybe back to Running): the next sweep decides
        self._now_expired.add(sv.name)

    def _block(self, sv: StagingView, pvc_name: str, users: list[str]) -> None:
        message = (
            f"PVC {pvc_name} expired at {sv.status.get('expiresAt')} but is still used by "
            f"pod(s) {', '.join(users)}; it is deleted once they finish"
        )
        old = conditions.find(sv.status.get("conditions"), BLOCKED)
        self.report.kept_in_use.append(f"{self.namespace}/{pvc_name}")
        if old is not None and old.get("message") == message:
            return
        conds = conditions.set_condition(
            sv.status.get("conditions"),
            BLOCKED,
            True,
            "PodsStillRunning",
            message,
            generation=sv.generation,
            now=self.now,
        )
        try:
            self.kube.patch_staging_volume_status(
                sv.namespace, sv.name, {"conditions": conds}, resource_version=sv.resource_version
            )
        except Conflict:
            return
        self.deps.events.normal(sv.body, "ExpiryDeferred", message)

    # -- orphans -----------------------------------------------------------------------------

    def _orphan(self, pvc: Obj) -> None:
        if is_terminating(pvc) or _name(pvc) in self._deleted:
            return
        name = _name(pvc)
        annotations = pvc["metadata"].get("annotations") or {}
        if ANN_DAG not in annotations or ANN_RUN not in annotations:
            return  # labelled like ours but not made by us: never delete on a label alone
        owner = controller_owner(pvc)
        owner_name = (owner or {}).get("name") or annotations.get(ANN_OWNER)
        prefix = self.deps.settings.prefix
        claimants = [sv for sv in self.volumes if sv.pvc_name(prefix) == name]
        if any(owner and sv.uid == owner.get("uid") for sv in claimants):
            return
        if claimants:
            # The owner is gone but a StagingVolume for the same run exists (clear and
            # re-run): hand the PVC over instead of deleting its data.
            self._hand_over(claimants[0])
            return
        if owner_name and self._owner_alive(owner_name, owner):
            return
        users = self._users(name)
        key = (self.namespace, name)
        if users:
            if self.sweeper._orphans_in_use.get(key) != users:
                self.sweeper._orphans_in_use[key] = users
                self.deps.events.normal(
                    pvc,
                    "OrphanInUse",
                    f"StagingVolume {owner_name} is gone but pod(s) {', '.join(users)} still "
                    "use this PVC; it is deleted once they finish",
                )
            self.report.kept_in_use.append(f"{self.namespace}/{name}")
            return
        self.sweeper._orphans_in_use.pop(key, None)
        if self.kube.delete_pvc(self.namespace, name, pvc["metadata"]["uid"]):
            self._deleted.add(name)
            self.deps.metrics.staging_pvcs_deleted.labels(cause="orphan").inc()
            self.report.orphans_deleted.append(f"{self.namespace}/{name}")
            self.deps.events.normal(
                pvc,
                "OrphanDeleted",
                f"Deleted staging PVC {name}: StagingVolume {owner_name} is gone",
            )

    def _owner_alive(self, owner_name: str, owner: Mapping[str, Any] | None) -> bool:
        """A live re-read: the listing may predate a StagingVolume created since."""
        current = self.kube.get_staging_volume(self.namespace, owner_name)
        if current is None:
            return False
        return owner is None or current["metadata"]["uid"] == owner.get("uid")

    def _hand_over(self, sv: StagingView) -> None:
        try:
            self.sweeper.reconciler.reconcile(sv.namespace, sv.name)
        except (kopf.TemporaryError, kopf.PermanentError) as exc:
            log.info(
                "sweep: StagingVolume %s/%s cannot take its PVC yet: %s", sv.namespace, sv.name, exc
            )


def _name(obj: Mapping[str, Any]) -> str:
    return str(obj["metadata"]["name"])


async def run_periodically(sweeper: Sweeper, interval: float) -> None:
    """Sweep every ``interval`` seconds until cancelled; a failed sweep never ends the loop."""
    while True:
        try:
            await asyncio.to_thread(sweeper.sweep)
        except KubeError as exc:
            log.warning("sweep failed, retrying in %ss: %s", interval, exc)
        except Exception:
            # The loop supervises itself: log the bug with its traceback and keep going,
            # a stuck sweeper would silently stop freeing storage.
            log.exception("sweep failed unexpectedly, retrying in %ss", interval)
        await asyncio.sleep(interval)
