"""Reconcile one StagingVolume: make sure its one RWX PVC exists, and report status.

Idempotent by construction, so it can run on create, update, resume after a restart
and on any event of the PVC it owns: the PVC name is a pure function of the run's ids,
so the PVC is found again by name, never created twice. A PVC left from an earlier
StagingVolume for the same run (clear and re-run) is re-attached, data intact.

Expiry bookkeeping lives here too: when ``spec.runPhase`` turns terminal, the first
reconcile stamps ``status.finishedAt`` and ``status.expiresAt = finishedAt + ttl``;
``runPhase`` back to ``Running`` clears both. Deleting the PVC at ``expiresAt`` is the
sweeper's job (one periodic loop, see :mod:`strata_operator.staging.sweeper`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import kopf
from kubernetes.utils import parse_quantity

from strata_operator import conditions
from strata_operator.deps import Deps
from strata_operator.kube import Conflict, Forbidden, Invalid, NotFound
from strata_operator.staging import storageclass
from strata_operator.staging.resources import (
    ANN_OWNER,
    StagingView,
    controller_owner,
    desired_pvc,
    is_terminating,
    same_run,
)
from strata_operator.timeutil import format_time, parse_time

__all__ = ["StagingReconciler", "expiry_schedule"]

log = logging.getLogger(__name__)
ATTEMPTS = 4  # re-reads after a write conflict before handing the retry to kopf
READY = "Ready"
RESIZED = "Resized"
BLOCKED = "ExpiryBlocked"

Obj = dict[str, Any]


def expiry_schedule(sv: StagingView, now: datetime) -> tuple[datetime | None, datetime | None]:
    """(finishedAt, expiresAt) for ``sv``'s runPhase: kept once set, None while running."""
    if not sv.terminal:
        return None, None
    finished = parse_time(sv.status.get("finishedAt")) or now.replace(microsecond=0)
    return finished, finished + timedelta(seconds=sv.ttl)


class _Failed(Exception):
    """A reason the PVC cannot be made that the user must fix (becomes phase Failed)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class StagingReconciler:
    """Brings one StagingVolume's PVC and status in line with its spec."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.kube = deps.kube
        self.events = deps.events

    def reconcile(self, namespace: str, name: str) -> None:
        """Reconcile from a fresh read; write conflicts re-read and try again.

        Raises kopf.PermanentError for problems only the user can fix (already shown as
        phase Failed, a Ready=False condition and a Warning Event), and
        kopf.TemporaryError for ones that pass on their own.
        """
        for _ in range(ATTEMPTS):
            body = self.kube.get_staging_volume(namespace, name)
            if body is None:
                return  # deleted: ownerReference GC and the orphan sweep take the PVC
            sv = StagingView.from_body(body)
            if sv.being_deleted:
                return
            try:
                self._reconcile(sv)
                return
            except (Conflict, NotFound) as exc:
                # Something changed or vanished under us (the StagingVolume itself, or its
                # PVC): look again; a vanished StagingVolume ends the loop above.
                log.debug("%s/%s changed while reconciling, re-reading: %s", namespace, name, exc)
        raise kopf.TemporaryError(
            f"StagingVolume {namespace}/{name} kept changing while being reconciled", delay=2
        )

    # -- one pass ------------------------------------------------------------------------

    def _reconcile(self, sv: StagingView) -> None:
        now = self.deps.clock()
        pvc_name = sv.pvc_name(self.deps.settings.prefix)
        finished, expires = expiry_schedule(sv, now)
        status: Obj = {
            "pvcName": pvc_name,
            "finishedAt": format_time(finished) if finished else None,
            "expiresAt": format_time(expires) if expires else None,
            "observedGeneration": sv.generation,
        }
        conds = sv.status.get("conditions") or []
        if not sv.terminal:
            conds = conditions.remove(conds, BLOCKED)
        # Once Expired, a terminal run stays so (even if its TTL is raised afterwards):
        # only runPhase back to Running brings a PVC again.
        expired = (expires is not None and expires <= now) or (
            sv.terminal and sv.status.get("phase") == "Expired"
        )

        pvc = self.kube.get_pvc(sv.namespace, pvc_name)
        if pvc is None or is_terminating(pvc):
            if expired:
                # The TTL is over: the sweeper deleted the PVC (or will); never re-create.
                self._write_expired(sv, status, conds, now)
                return
            if pvc is not None:
                raise kopf.TemporaryError(
                    f"PVC {pvc_name} is still being deleted; it is re-created once gone",
                    delay=5,
                )
        created = False
        try:
            if pvc is None:
                pvc, created = self._create(sv, pvc_name)
            else:
                self._claim(sv, pvc)
        except _Failed as failure:
            self._write_failed(sv, status, conds, failure, now)
            raise kopf.PermanentError(failure.message) from None
        conds = self._grow(sv, pvc, conds, now)

        pvc_phase = (pvc.get("status") or {}).get("phase", "Pending")
        phase, ready, reason, message = _phase_of(pvc_name, pvc_phase)
        status["phase"] = phase
        status["storageClassName"] = pvc["spec"].get("storageClassName")
        status["conditions"] = conditions.set_condition(
            conds, READY, ready, reason, message, generation=sv.generation, now=now
        )
        self.kube.patch_staging_volume_status(
            sv.namespace, sv.name, status, resource_version=sv.resource_version
        )
        self._announce(sv, status, created=created)

    def _announce(self, sv: StagingView, status: Mapping[str, Any], *, created: bool) -> None:
        """Events for the transitions this pass made (after its status write succeeded)."""
        old = sv.status
        pvc = status["pvcName"]
        if status["phase"] == "Bound" and old.get("phase") != "Bound":
            self.events.normal(sv.body, "Bound", f"PVC {pvc} is bound and ready to mount")
        if status["finishedAt"] and not old.get("finishedAt"):
            self.events.normal(
                sv.body,
                "RunFinished",
                f"Run {sv.run_phase}; PVC {pvc} will be deleted after {status['expiresAt']} "
                f"(ttlSecondsAfterFinished={sv.ttl}) once no pod uses it",
            )
        elif not status["finishedAt"] and old.get("finishedAt"):
            verb = "re-created" if created else "kept"
            self.events.normal(
                sv.body,
                "ExpiryCancelled",
                f"Run is Running again: expiry cancelled, PVC {pvc} {verb}",
            )

    # -- the PVC -------------------------------------------------------------------------

    def _create(self, sv: StagingView, name: str) -> tuple[Obj, bool]:
        """Create the PVC in an RWX class; (pvc, True), or (existing pvc, False) on a race."""
        resolution = storageclass.resolve(sv.storage_class, self.kube.list_storage_classes())
        if not resolution.ok:
            raise _Failed(resolution.reason, resolution.message)
        assert resolution.class_name is not None
        body = desired_pvc(sv, name, resolution.class_name)
        try:
            pvc = self.kube.create_pvc(sv.namespace, body)
        except Conflict:
            # Created meanwhile (another reconcile of the same run): use that one.
            existing = self.kube.get_pvc(sv.namespace, name)
            if existing is None:
                raise
            self._claim(sv, existing)
            return existing, False
        except Invalid as exc:
            raise _Failed("PVCRejected", f"the API server rejected PVC {name}: {exc}") from exc
        self.events.normal(
            sv.body,
            "Created",
            f"Created PVC {name}: {sv.size}, ReadWriteMany, StorageClass "
            f"{resolution.class_name} ({resolution.message})",
        )
        return pvc, True

    def _claim(self, sv: StagingView, pvc: Mapping[str, Any]) -> None:
        """Check an existing PVC is this run's; re-attach it if its old owner is gone."""
        name = pvc["metadata"]["name"]
        if not same_run(pvc, sv):
            raise _Failed(
                "PVCConflict",
                f"PVC {name} already exists but is not the Strata staging PVC of dagId "
                f"{sv.dag_id!r} runId {sv.run_id!r}; delete or rename it",
            )
        owner = controller_owner(pvc)
        if owner is not None and owner.get("uid") == sv.uid:
            return
        if owner is not None and owner.get("name") != sv.name:
            other = self.kube.get_staging_volume(sv.namespace, owner["name"])
            if other is not None and other["metadata"]["uid"] == owner.get("uid"):
                raise _Failed(
                    "PVCConflict",
                    f"PVC {name} belongs to StagingVolume {owner['name']} for the same dagId "
                    "and runId; use that StagingVolume, or delete it first",
                )
        # The previous owner is gone (clear + re-run): adopt the PVC and its data.
        refs = [ref for ref in pvc["metadata"].get("ownerReferences") or () if ref != owner]
        self.kube.patch_pvc(
            sv.namespace,
            name,
            {
                "metadata": {
                    "resourceVersion": pvc["metadata"]["resourceVersion"],
                    "ownerReferences": [*refs, sv.owner_reference()],
                    "annotations": {ANN_OWNER: sv.name},
                }
            },
        )
        self.events.normal(
            sv.body, "Adopted", f"Re-attached existing PVC {name} of the same run (data kept)"
        )

    def _grow(
        self, sv: StagingView, pvc: Mapping[str, Any], conds: list[Obj], now: datetime
    ) -> list[Obj]:
        """Ask the PVC to expand when spec.size grew; report refusal as a condition."""
        name = pvc["metadata"]["name"]
        have = ((pvc["spec"].get("resources") or {}).get("requests") or {}).get("storage")
        if have is None or parse_quantity(sv.size) <= parse_quantity(have):
            return conditions.remove(conds, RESIZED)
        try:
            self.kube.patch_pvc(
                sv.namespace, name, {"spec": {"resources": {"requests": {"storage": sv.size}}}}
            )
        except (Invalid, Forbidden) as exc:
            # 422 for an unbound claim, 403 from the resize admission plugin when the
            # class has no allowVolumeExpansion: only the user can change either.
            message = f"PVC {name} cannot grow from {have} to {sv.size}: {exc}"
            old = conditions.find(conds, RESIZED)
            if old is None or old.get("message") != message:
                self.events.warning(sv.body, "ResizeRejected", message)
            return conditions.set_condition(
                conds, RESIZED, False, "ResizeRejected", message, generation=sv.generation, now=now
            )
        self.events.normal(
            sv.body, "Resizing", f"Asked PVC {name} to grow from {have} to {sv.size}"
        )
        return conditions.remove(conds, RESIZED)

    # -- terminal states -------------------------------------------------------------------

    def _write_failed(
        self, sv: StagingView, status: Obj, conds: list[Obj], failure: _Failed, now: datetime
    ) -> None:
        old = conditions.find(conds, READY)
        status["phase"] = "Failed"
        status["conditions"] = conditions.set_condition(
            conds, READY, False, failure.reason, failure.message, generation=sv.generation, now=now
        )
        self.kube.patch_staging_volume_status(
            sv.namespace, sv.name, status, resource_version=sv.resource_version
        )
        if old is None or old.get("message") != failure.message:
            self.events.warning(sv.body, failure.reason, failure.message)

    def _write_expired(self, sv: StagingView, status: Obj, conds: list[Obj], now: datetime) -> None:
        status["phase"] = "Expired"
        status["conditions"] = conditions.set_condition(
            conditions.remove(conds, BLOCKED),
            READY,
            False,
            "Expired",
            expired_message(status["pvcName"], status["finishedAt"], sv.ttl),
            generation=sv.generation,
            now=now,
        )
        self.kube.patch_staging_volume_status(
            sv.namespace, sv.name, status, resource_version=sv.resource_version
        )


def expired_message(pvc: str, finished_at: str | None, ttl: int) -> str:
    return (
        f"PVC {pvc} was deleted: the run finished at {finished_at} and "
        f"ttlSecondsAfterFinished={ttl} elapsed. Set spec.runPhase to Running to get a new, "
        "empty PVC"
    )


def _phase_of(pvc_name: str, pvc_phase: str) -> tuple[str, bool, str, str]:
    """(status.phase, Ready, reason, message) from the PVC's own phase."""
    if pvc_phase == "Bound":
        return "Bound", True, "Bound", f"PVC {pvc_name} is bound; mount it at /staging"
    if pvc_phase == "Lost":
        return "Failed", False, "PVCLost", f"PVC {pvc_name} lost its PersistentVolume"
    return (
        "Pending",
        False,
        "PVCPending",
        f"PVC {pvc_name} is waiting for its StorageClass to provision a volume",
    )
