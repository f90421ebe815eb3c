"""The one periodic loop for Volumes: mirror sealed versions, refresh status, retry
deferred deletions.

Commits made by mounts (or the CLI) change only the store, and nothing there tells
Kubernetes, so one loop per operator (like the staging sweeper: one task, not a timer
per object) polls every ``mirror_interval`` seconds. Per namespace in scope, each pass:

1. reads the log of every Ready Volume's store volume, *then* lists VolumeVersions
   (this order keeps a seal in flight from being mirrored twice, see
   :func:`~strata_operator.volumes.view.plan_mirror`);
2. refreshes each Volume's status (head, size, files, versions, writer) when changed;
3. creates a VolumeVersion ``<volume>-<versionid>`` for every version its Volume sealed
   that has none: labelled ``strata.dev/volume``, annotated ``strata.dev/mirrored``
   (never re-sealed), owned by the Volume, with the version's message;
4. deletes VolumeVersions whose version left the store (retention, GC), after reading
   the log again so a version sealed during the pass is never mistaken for a gone one;
5. retries deletions: Volumes and VolumeVersions being deleted that still carry the
   operator's finalizer (deferred ones, or ones whose Event-driven attempt failed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from strata.errors import StrataError, VolumeNotFound
from strata.meta.repo import Repository
from strata.meta.version import Version
from strata_operator.deps import Deps
from strata_operator.kube import GROUP, VERSION, VERSION_PLURAL, Conflict, KubeError
from strata_operator.volumes.naming import version_object_name
from strata_operator.volumes.reconcile import VolumeReconciler, store_name_of
from strata_operator.volumes.versions import VersionReconciler
from strata_operator.volumes.view import (
    ANN_MIRRORED,
    ANN_VERSION_ID,
    LABEL_VOLUME,
    VERSION_FINALIZER,
    VOLUME_FINALIZER,
    plan_mirror,
    version_id_of,
    version_status,
)

__all__ = ["SyncReport", "VolumeSync", "run_every"]

log = logging.getLogger(__name__)
MAX_MESSAGE = 4096

Obj = dict[str, Any]


@dataclass
class SyncReport:
    """What one pass did; tests and logs read it."""

    mirrored: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    finalized: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class VolumeSync:
    """One pass of the loop described in the module docstring."""

    def __init__(
        self,
        deps: Deps,
        repo: Repository,
        volumes: VolumeReconciler,
        versions: VersionReconciler,
    ) -> None:
        self.deps = deps
        self.kube = deps.kube
        self.repo = repo
        self.volumes = volumes
        self.versions = versions

    def sync(self) -> SyncReport:
        report = SyncReport()
        for namespace in self.deps.settings.namespaces or (None,):
            bodies = self.kube.list_volumes(namespace)
            by_ns: dict[str, list[Obj]] = {}
            for body in bodies:
                by_ns.setdefault(body["metadata"]["namespace"], []).append(body)
            for ns, items in by_ns.items():
                self._namespace(ns, items, report)
            self._retry_version_deletions(namespace, report)
        return report

    def _guard(self, report: SyncReport, what: str, step: Callable[[], object]) -> None:
        """One object's failure is logged and retried next pass, never the whole pass's."""
        try:
            step()
        except (KubeError, StrataError, kopf.TemporaryError, kopf.PermanentError) as exc:
            report.errors.append(f"{what}: {exc}")
            log.info("volume sync: %s: %s", what, exc)

    def _namespace(self, namespace: str, bodies: list[Obj], report: SyncReport) -> None:
        logs: dict[str, list[Version]] = {}
        live: list[Obj] = []
        for body in bodies:
            name = body["metadata"]["name"]
            if body["metadata"].get("deletionTimestamp"):
                if VOLUME_FINALIZER in (body["metadata"].get("finalizers") or []):
                    self._guard(
                        report, f"deleting Volume {name}", lambda b=body: self._finalize(b, report)
                    )
                continue
            if (body.get("status") or {}).get("phase") != "Ready":
                continue  # kopf's handler (with its retries) owns creation
            try:
                logs[name] = self.repo.log(store_name_of(body))
            except VolumeNotFound:
                pass  # the reconcile below reports it
            except StrataError as exc:
                report.errors.append(f"log of {name}: {exc}")
                continue
            live.append(body)
        versions = self.kube.list_volume_versions(namespace)  # after the logs: see above
        for body in live:
            name = body["metadata"]["name"]
            self._guard(report, f"Volume {name}", lambda b=body: self.volumes.reconcile_body(b))
            if name in logs:
                self._guard(
                    report,
                    f"mirroring {name}",
                    lambda b=body: self._mirror(b, logs[b["metadata"]["name"]], versions, report),
                )

    def _finalize(self, body: Mapping[str, Any], report: SyncReport) -> None:
        self.volumes.finalize(body)
        report.finalized.append(f"Volume {body['metadata']['name']}")

    def _retry_version_deletions(self, namespace: str | None, report: SyncReport) -> None:
        for vv in self.kube.list_volume_versions(namespace):
            meta = vv["metadata"]
            if meta.get("deletionTimestamp") and VERSION_FINALIZER in (
                meta.get("finalizers") or []
            ):

                def step(vv: Obj = vv) -> None:
                    if self.versions.finalize(vv):
                        report.finalized.append(f"VolumeVersion {vv['metadata']['name']}")

                self._guard(report, f"deleting VolumeVersion {meta['name']}", step)

    # -- mirroring ---------------------------------------------------------------------------

    def _mirror(
        self,
        body: Mapping[str, Any],
        log_: list[Version],
        versions: list[Obj],
        report: SyncReport,
    ) -> None:
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        store = store_name_of(body)
        plan = plan_mirror(store, log_, versions, name)
        for version in plan.create:
            if self._create(body, version):
                report.mirrored.append(f"{namespace}/{name}@{version.id}")
        if plan.prune:
            still = {v.id for v in self.repo.log(store)}  # fresh: sealed during this pass?
            by_name = {vv["metadata"]["name"]: vv for vv in versions}
            for vv_name in plan.prune:
                vid = version_id_of(by_name[vv_name])
                if vid in still:
                    continue
                self.kube.delete_custom(VERSION_PLURAL, namespace, vv_name)
                report.pruned.append(f"{namespace}/{vv_name}")
                self.deps.events.normal(
                    body,
                    "VersionExpired",
                    f"Version {vid} is no longer in the store (retention or deletion); "
                    f"deleted VolumeVersion {vv_name}",
                )

    def _create(self, volume: Mapping[str, Any], version: Version) -> bool:
        meta = volume["metadata"]
        namespace = meta["namespace"]
        name = version_object_name(meta["name"], version.id)
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "VolumeVersion",
            "metadata": {
                "name": name,
                "labels": {LABEL_VOLUME: meta["name"]},
                "annotations": {ANN_MIRRORED: "true", ANN_VERSION_ID: version.id},
                "finalizers": [VERSION_FINALIZER],
                "ownerReferences": [
                    {
                        "apiVersion": f"{GROUP}/{VERSION}",
                        "kind": "Volume",
                        "name": meta["name"],
                        "uid": meta["uid"],
                    }
                ],
            },
            "spec": {"volume": meta["name"], "message": version.message[:MAX_MESSAGE]},
        }
        try:
            created = self.kube.create_volume_version(namespace, body)
        except Conflict:
            existing = self.kube.get_volume_version(namespace, name)
            if existing is None or version_id_of(existing) != version.id:
                log.warning(
                    "cannot mirror %s@%s: %s exists and is not its mirror",
                    meta["name"],
                    version.id,
                    name,
                )
                return False
            created = existing
        self.kube.patch_volume_version_status(namespace, name, version_status(version))
        self.deps.metrics.versions_mirrored.inc()
        by = f" by {version.writer}" if version.writer else ""
        self.deps.events.normal(
            created, "Sealed", f"Version {version.id} of Volume {meta['name']} was sealed{by}"
        )
        return True


async def run_every(step: Callable[[], object], interval: float, what: str) -> None:
    """Run ``step`` in a worker thread every ``interval`` seconds until cancelled; a
    failed run is logged and never ends the loop (a stopped loop would silently stop
    mirroring, deleting or freeing space)."""
    while True:
        try:
            await asyncio.to_thread(step)
        except (KubeError, StrataError) as exc:
            log.warning("%s failed, retrying in %ss: %s", what, interval, exc)
        except Exception:
            log.exception("%s failed unexpectedly, retrying in %ss", what, interval)
        await asyncio.sleep(interval)
