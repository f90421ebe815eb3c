"""Reconcile one Volume: its store volume exists (empty or an O(1) fork), its settings
follow the spec, its status describes the store; deleting it removes it from the store.

Idempotent, so it runs on create, update, resume and from the mirror loop: the store
name is a pure function of namespace and name (and kept in ``status.storeVolume``), and
a store volume that already exists under that name is this Volume's (created by an
earlier run that died before writing status).

Finalizer ``strata.dev/volume`` (managed here, not by kopf, whose one finalizer name is
shared by every kind): a deleted Volume's VolumeVersion objects go first (there may be
no Kubernetes garbage collector, and their own finalizers would wait on versions the
volume deletion removes anyway), then the store volume (``force``: a live writer is
fenced). Versions another Volume's history needs stay in the store until that Volume
goes; chunks and trees are freed by the next GC.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import kopf

from strata.errors import VersionNotFound, VolumeExists, VolumeNotFound
from strata.meta.head import Settings as VolumeSettings
from strata.meta.head import update_head
from strata.meta.repo import Repository, VolumeInfo
from strata_operator import conditions
from strata_operator.deps import Deps
from strata_operator.kube import VERSION_PLURAL, VOLUME_PLURAL, Conflict, NotFound
from strata_operator.volumes.errors import store_errors
from strata_operator.volumes.naming import store_volume_name
from strata_operator.volumes.view import (
    VERSION_FINALIZER,
    VOLUME_FINALIZER,
    retention_of,
    version_id_of,
    volume_status,
)

__all__ = ["READY", "VolumeReconciler", "store_name_of"]

log = logging.getLogger(__name__)
READY = "Ready"
WAIT_DELAY = 5.0  # seconds before retrying a fork whose source is not ready yet

Obj = dict[str, Any]


def store_name_of(body: Mapping[str, Any]) -> str:
    """The store volume of a Volume: as recorded in status, else the naming rule."""
    meta = body["metadata"]
    recorded = (body.get("status") or {}).get("storeVolume")
    return str(recorded or store_volume_name(meta["namespace"], meta["name"]))


class _Waiting(Exception):
    """The Volume cannot be made yet (its source is missing or not ready)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class VolumeReconciler:
    """Brings one Volume's store volume and status in line with its spec."""

    def __init__(self, deps: Deps, repo: Repository) -> None:
        self.deps = deps
        self.kube = deps.kube
        self.events = deps.events
        self.repo = repo

    # -- entry points ----------------------------------------------------------------------

    def reconcile(self, namespace: str, name: str) -> None:
        """Reconcile from a fresh read (kopf's handlers call this)."""
        body = self.kube.get_volume(namespace, name)
        if body is not None:
            self.reconcile_body(body)

    def reconcile_body(self, body: Mapping[str, Any]) -> None:
        """Reconcile ``body`` as read; deletion if it is being deleted.

        Raises kopf.TemporaryError while a fork's source is not ready (shown as phase
        Pending) and for store outages; kopf retries.
        """
        if body["metadata"].get("deletionTimestamp"):
            self.finalize(body)
            return
        body = self._ensure_finalizer(body)
        store = store_name_of(body)
        what = f"Volume {body['metadata']['namespace']}/{body['metadata']['name']}"
        with store_errors(what):
            try:
                info = self.repo.volume(store)
            except VolumeNotFound:
                info = self._make(body, store)
            if info is None:
                return
            info = self._apply_settings(body, info)
            self._write_status(body, store, info)

    # -- creation --------------------------------------------------------------------------

    def _make(self, body: Mapping[str, Any], store: str) -> VolumeInfo | None:
        """Create or fork the store volume; None (and a TemporaryError) while waiting."""
        status = body.get("status") or {}
        if status.get("storeVolume") and status.get("phase") == "Ready":
            # It existed and is gone: deleted behind the operator's back. Re-creating an
            # empty volume would hide the loss; say so and let a human decide.
            self._set_phase(
                body,
                store,
                "Failed",
                False,
                "StoreVolumeMissing",
                f"store volume {store} no longer exists (deleted outside Kubernetes); "
                "delete this Volume, or restore the store",
                warn=True,
            )
            raise kopf.PermanentError(f"store volume {store} vanished")
        try:
            message = self._create(body, store)
        except _Waiting as wait:
            self._set_phase(body, store, "Pending", False, wait.reason, wait.message, warn=True)
            raise kopf.TemporaryError(wait.message, WAIT_DELAY) from wait
        except VolumeExists:
            message = None  # made by an earlier run that died before writing status
        info = self.repo.volume(store)
        if message:
            self.events.normal(body, "Created", message)
        return info

    def _create(self, body: Mapping[str, Any], store: str) -> str:
        """Create the store volume; the Event message that says how."""
        spec = body.get("spec") or {}
        namespace = body["metadata"]["namespace"]
        retention = retention_of(spec)
        fast = bool(spec.get("highThroughput", False))
        source = spec.get("source") or {}
        if not source:
            self.repo.create_volume(store, retention=retention, high_throughput=fast)
            return f"Created empty store volume {store}"
        if source.get("volumeVersion"):
            ref, described = self._version_source(namespace, source["volumeVersion"])
        else:
            ref, described = self._volume_source(namespace, source["volume"])
        try:
            head = self.repo.fork(ref, store, retention=retention, high_throughput=fast)
        except (VersionNotFound, VolumeNotFound) as exc:
            raise _Waiting("SourceNotReady", f"{described} is not in the store: {exc}") from exc
        at = head.version.partition("@")[2] if head.version else "an empty head"
        return f"Forked {described} into store volume {store} at {at} (O(1): no data copied)"

    def _version_source(self, namespace: str, name: str) -> tuple[str, str]:
        vv = self.kube.get_volume_version(namespace, name)
        if vv is None:
            raise _Waiting("SourceNotFound", f"VolumeVersion {name} does not exist (yet)")
        vid = version_id_of(vv)
        if vid is None or not (vv.get("status") or {}).get("readyToUse"):
            raise _Waiting("SourceNotReady", f"VolumeVersion {name} is not ready to use yet")
        volume = self.kube.get_volume(namespace, vv["spec"]["volume"])
        if volume is None:
            raise _Waiting("SourceNotFound", f"Volume {vv['spec']['volume']} of {name} is gone")
        return f"{store_name_of(volume)}@{vid}", f"VolumeVersion {name} ({vid})"

    def _volume_source(self, namespace: str, name: str) -> tuple[str, str]:
        volume = self.kube.get_volume(namespace, name)
        if volume is None:
            raise _Waiting("SourceNotFound", f"Volume {name} does not exist (yet)")
        if (volume.get("status") or {}).get("phase") != "Ready":
            raise _Waiting("SourceNotReady", f"Volume {name} is not ready yet")
        return store_name_of(volume), f"the head of Volume {name}"

    # -- settings and status ---------------------------------------------------------------

    def _apply_settings(self, body: Mapping[str, Any], info: VolumeInfo) -> VolumeInfo:
        """Retention and highThroughput follow the spec (the next GC applies retention)."""
        spec = body.get("spec") or {}
        wanted = VolumeSettings(retention_of(spec), bool(spec.get("highThroughput", False)))
        if info.settings == wanted:
            return info

        def change(cur: Any) -> Any:
            if cur is None or cur.deleted or cur.settings == wanted:
                return cur
            return replace(cur, settings=wanted)

        update_head(self.repo.store, info.name, change)
        self.events.normal(
            body,
            "SettingsChanged",
            f"Retention keepLast={wanted.retention.keep_last} "
            f"maxAge={wanted.retention.max_age}s, highThroughput={wanted.high_throughput}; "
            "retention applies at the next store GC",
        )
        return self.repo.volume(info.name)

    def _write_status(self, body: Mapping[str, Any], store: str, info: VolumeInfo) -> None:
        old = body.get("status") or {}
        fields = volume_status(info, self.repo.clock())
        head = fields["head"] or "none yet"
        message = f"store volume {store}, head {head}, {info.version_count} versions"
        conds = conditions.set_condition(
            old.get("conditions"),
            READY,
            True,
            "Ready",
            message,
            generation=body["metadata"].get("generation"),
            now=self.deps.clock(),
        )
        status = {
            **fields,
            "phase": "Ready",
            "storeVolume": store,
            "conditions": conds,
            "observedGeneration": body["metadata"].get("generation"),
        }
        if all(old.get(k) == v for k, v in status.items()):
            return
        self.kube.patch_volume_status(
            body["metadata"]["namespace"], body["metadata"]["name"], status
        )
        if old.get("phase") != "Ready":
            self.events.normal(body, "Ready", f"Volume is ready: {message}")
        elif old.get("head") != fields["head"] and fields["head"]:
            self.events.normal(body, "HeadMoved", f"Head is now version {fields['head']}")

    def _set_phase(
        self,
        body: Mapping[str, Any],
        store: str,
        phase: str,
        ready: bool,
        reason: str,
        message: str,
        *,
        warn: bool = False,
    ) -> None:
        old = body.get("status") or {}
        previous = conditions.find(old.get("conditions"), READY)
        conds = conditions.set_condition(
            old.get("conditions"),
            READY,
            ready,
            reason,
            message,
            generation=body["metadata"].get("generation"),
            now=self.deps.clock(),
        )
        status = {
            "phase": phase,
            "storeVolume": store,
            "conditions": conds,
            "observedGeneration": body["metadata"].get("generation"),
        }
        self.kube.patch_volume_status(
            body["metadata"]["namespace"], body["metadata"]["name"], status
        )
        if warn and (previous or {}).get("reason") != reason:
            self.events.warning(body, reason, message)

    # -- finalizer -------------------------------------------------------------------------

    def _ensure_finalizer(self, body: Mapping[str, Any]) -> Mapping[str, Any]:
        meta = body["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        if VOLUME_FINALIZER in finalizers:
            return body
        return self.kube.set_finalizers(
            VOLUME_PLURAL,
            meta["namespace"],
            meta["name"],
            [*finalizers, VOLUME_FINALIZER],
            meta["resourceVersion"],
        )

    def finalize(self, body: Mapping[str, Any]) -> None:
        """Delete the Volume's VolumeVersions and its store volume, then let it go."""
        meta = body["metadata"]
        if VOLUME_FINALIZER not in (meta.get("finalizers") or []):
            return
        namespace, name = meta["namespace"], meta["name"]
        store = store_name_of(body)
        if (body.get("status") or {}).get("phase") != "Deleting":
            try:
                self.kube.patch_volume_status(namespace, name, {"phase": "Deleting"})
            except NotFound:
                return
        removed = self._delete_versions(namespace, name)
        with store_errors(f"deleting Volume {namespace}/{name}"):
            kept = sorted(r for r in self.repo.needed_by_others(store) if r.startswith(f"{store}@"))
            self.repo.delete_volume(store, missing_ok=True, force=True)
        message = f"Deleted store volume {store} and {removed} VolumeVersions"
        if kept:
            message += (
                f"; {len(kept)} of its versions stay in the store because other Volumes "
                f"were forked from them ({', '.join(r.partition('@')[2] for r in kept[:5])}"
                f"{', …' if len(kept) > 5 else ''}) until those are deleted"
            )
        self.events.normal(body, "Deleted", message + "; space is freed by the next store GC")
        self._drop_finalizer(VOLUME_PLURAL, body, VOLUME_FINALIZER)

    def _delete_versions(self, namespace: str, volume: str) -> int:
        count = 0
        for vv in self.kube.list_volume_versions(namespace):
            if (vv.get("spec") or {}).get("volume") != volume:
                continue
            self._drop_finalizer(VERSION_PLURAL, vv, VERSION_FINALIZER)
            if self.kube.delete_custom(VERSION_PLURAL, namespace, vv["metadata"]["name"]):
                count += 1
        return count

    def _drop_finalizer(self, plural: str, body: Mapping[str, Any], finalizer: str) -> None:
        """Remove ``finalizer``, re-reading on conflicts; gone objects are fine."""
        meta = body["metadata"]
        for _ in range(5):
            finalizers = list(meta.get("finalizers") or [])
            if finalizer not in finalizers:
                return
            try:
                self.kube.set_finalizers(
                    plural,
                    meta["namespace"],
                    meta["name"],
                    [f for f in finalizers if f != finalizer],
                    meta["resourceVersion"],
                )
                return
            except NotFound:
                return
            except Conflict:
                getter = (
                    self.kube.get_volume
                    if plural == VOLUME_PLURAL
                    else (self.kube.get_volume_version)
                )
                fresh = getter(meta["namespace"], meta["name"])
                if fresh is None:
                    return
                meta = fresh["metadata"]
        raise kopf.TemporaryError(f"{meta['name']} kept changing while releasing it", 2)
