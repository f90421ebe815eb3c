"""Reconcile one VolumeVersion: seal it (a user's) or fill in its status (a mirrored
one); on deletion, delete its version from the store unless something still needs it.

Sealing a user's VolumeVersion (no version bound yet):

* a live writer holds the Volume (a mount anywhere): ask it through the store
  (:func:`strata.meta.seal.request_seal`) and wait for its answer; it commits what is
  mounted, without unmounting, with the VolumeVersion's message;
* no live writer: the head is already sealed, so the head version *is* the answer and
  the VolumeVersion is bound to it (no empty commit is made; its message is not
  recorded in the store). An empty Volume fails with "nothing to seal";
* a writer holds a live claim but does not answer within ``seal_timeout`` (busy, or
  a client that does not poll for requests): binding the head would silently leave its
  uncommitted changes out, so the VolumeVersion reports the error and is retried.

Blocking store calls run in a worker thread (the handler awaits them), never on kopf's
event loop.

Deletion (finalizer ``strata.dev/volume-version``): the store version is deleted only
if it was sealed by this VolumeVersion's own Volume and no other VolumeVersion names
it. While it is a head, in another Volume's history, or the source of a Volume still
being forked, deletion is deferred: the finalizer stays, a ``DeletionDeferred`` Event
says why, and the mirror loop retries every pass.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from strata.errors import VersionNotFound, VolumeNotFound
from strata.meta.repo import Repository
from strata.meta.seal import SealFailed, SealTimeout, request_seal, wait_seal
from strata.meta.version import Version, VersionInUse
from strata_operator.deps import Deps
from strata_operator.kube import VERSION_PLURAL, NotFound
from strata_operator.timeutil import format_time
from strata_operator.volumes.errors import store_errors
from strata_operator.volumes.reconcile import VolumeReconciler, store_name_of
from strata_operator.volumes.view import (
    LABEL_VOLUME,
    VERSION_FINALIZER,
    is_mirrored,
    version_id_of,
    version_status,
)

__all__ = ["VersionReconciler"]

log = logging.getLogger(__name__)
RETRY = 10.0  # seconds before retrying a seal that cannot happen yet

Obj = dict[str, Any]


class _SealError(Exception):
    """A seal that did not happen; ``permanent`` when retrying cannot help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class VersionReconciler:
    """Seals, mirrors the status of, and deletes VolumeVersions."""

    def __init__(self, deps: Deps, repo: Repository, volumes: VolumeReconciler) -> None:
        self.deps = deps
        self.kube = deps.kube
        self.events = deps.events
        self.repo = repo
        self.volumes = volumes
        # Deferred deletions already announced, with the reason: one Event per change.
        self._deferred: dict[tuple[str, str], str] = {}

    # -- create / resume -------------------------------------------------------------------

    def reconcile(self, namespace: str, name: str) -> None:
        """Bring one VolumeVersion to ready (sealing it if it is a user's request)."""
        vv = self.kube.get_volume_version(namespace, name)
        if vv is None:
            return
        if vv["metadata"].get("deletionTimestamp"):
            self.finalize(vv)
            return
        vv = self._adopt(vv)
        vid = version_id_of(vv)
        status = vv.get("status") or {}
        if vid is not None and status.get("readyToUse") and status.get("versionId") == vid:
            return
        try:
            version = self._version_of(vv, vid) if vid else self._seal(vv)
        except _SealError as exc:
            self._fail(vv, str(exc))
            if exc.permanent:
                raise kopf.PermanentError(str(exc)) from exc
            raise kopf.TemporaryError(str(exc), RETRY) from exc
        self.kube.patch_volume_version_status(namespace, name, version_status(version))

    def _adopt(self, vv: Mapping[str, Any]) -> Mapping[str, Any]:
        """Our finalizer and the volume label (for ``kubectl get volver -l``)."""
        meta = vv["metadata"]
        volume = vv["spec"]["volume"]
        finalizers = list(meta.get("finalizers") or [])
        labels = meta.get("labels") or {}
        if VERSION_FINALIZER in finalizers and labels.get(LABEL_VOLUME) == volume:
            return vv
        if VERSION_FINALIZER not in finalizers:
            finalizers.append(VERSION_FINALIZER)
        patch = {
            "resourceVersion": meta["resourceVersion"],
            "finalizers": finalizers,
            "labels": {LABEL_VOLUME: volume},
        }
        return self.kube.patch_metadata(VERSION_PLURAL, meta["namespace"], meta["name"], patch)

    def _volume_store(self, vv: Mapping[str, Any]) -> str:
        namespace = vv["metadata"]["namespace"]
        volume = self.kube.get_volume(namespace, vv["spec"]["volume"])
        if volume is None:
            raise _SealError(f"Volume {vv['spec']['volume']} does not exist (yet)")
        if (volume.get("status") or {}).get("phase") != "Ready":
            raise _SealError(f"Volume {vv['spec']['volume']} is not ready yet")
        return store_name_of(volume)

    def _version_of(self, vv: Mapping[str, Any], vid: str) -> Version:
        """The store version a mirrored (or already bound) VolumeVersion stands for."""
        store = self._volume_store(vv)
        with store_errors(f"VolumeVersion {vv['metadata']['name']}"):
            try:
                return self.repo.version(f"{store}@{vid}")
            except (VersionNotFound, VolumeNotFound) as exc:
                raise _SealError(f"version {vid} is not in the store: {exc}") from exc

    def _seal(self, vv: Mapping[str, Any]) -> Version:
        """Seal the Volume's head: through its live writer, or bind an idle head."""
        meta = vv["metadata"]
        if is_mirrored(vv):
            raise _SealError("mirrored VolumeVersion without a version id", permanent=True)
        store = self._volume_store(vv)
        volume = vv["spec"]["volume"]
        with store_errors(f"sealing VolumeVersion {meta['name']}"):
            info = self.repo.volume(store)
            writer = info.writer
            if writer is not None and writer.live(self.repo.clock()):
                version = self._ask_writer(vv, store, writer.holder)
                if version is not None:
                    self.deps.metrics.seals.labels(how="writer").inc()
                    self.events.normal(
                        vv,
                        "Sealed",
                        f"The live writer {writer.holder} sealed Volume {volume} as "
                        f"version {version.id} without unmounting",
                    )
                    return version
                info = self.repo.volume(store)
            if info.head is None:
                raise _SealError(
                    f"nothing to seal: Volume {volume} has no version yet and no live writer",
                    permanent=True,
                )
            self.deps.metrics.seals.labels(how="idle").inc()
            self.events.normal(
                vv,
                "BoundToHead",
                f"No live writer holds Volume {volume}: its head is already sealed, so "
                f"this VolumeVersion is version {info.head.id}",
            )
            return info.head

    def _ask_writer(self, vv: Mapping[str, Any], store: str, holder: str) -> Version | None:
        """The writer's new version; None if it is gone (its claim lapsed meanwhile)."""
        meta = vv["metadata"]
        timeout = self.deps.settings.seal_timeout
        request = request_seal(
            self.repo.store,
            store,
            (vv.get("spec") or {}).get("message", ""),
            f"kubernetes:{meta['namespace']}/{meta['name']}",
        )
        try:
            ref = wait_seal(self.repo.store, request, timeout)
        except SealFailed as exc:
            raise _SealError(str(exc)) from exc
        except SealTimeout as exc:
            writer = self.repo.volume(store).writer
            if writer is not None and writer.live(self.repo.clock()):
                raise _SealError(
                    f"writer {holder} holds Volume {vv['spec']['volume']} but did not answer "
                    f"the seal request within {timeout:.0f}s; retrying"
                ) from exc
            return None
        return self.repo.version(ref)

    def _fail(self, vv: Mapping[str, Any], message: str) -> None:
        meta = vv["metadata"]
        old = ((vv.get("status") or {}).get("error") or {}).get("message")
        status = {
            "readyToUse": False,
            "error": {"message": message, "time": format_time(self.deps.clock())},
        }
        try:
            self.kube.patch_volume_version_status(meta["namespace"], meta["name"], status)
        except NotFound:
            return
        if old != message:
            self.events.warning(vv, "SealFailed", message)

    # -- deletion --------------------------------------------------------------------------

    def finalize(self, vv: Mapping[str, Any]) -> bool:
        """Delete the version from the store if nothing needs it; True once released."""
        meta = vv["metadata"]
        if VERSION_FINALIZER not in (meta.get("finalizers") or []):
            return True
        namespace, name = meta["namespace"], meta["name"]
        blocker = self._delete_version(vv)
        if blocker is not None:
            key = (namespace, name)
            if self._deferred.get(key) != blocker:
                self._deferred[key] = blocker
                self.events.warning(
                    vv,
                    "DeletionDeferred",
                    f"Deletion deferred: {blocker}; retrying until it is not",
                )
            return False
        self._deferred.pop((namespace, name), None)
        self.volumes._drop_finalizer(VERSION_PLURAL, vv, VERSION_FINALIZER)
        return True

    def _delete_version(self, vv: Mapping[str, Any]) -> str | None:
        """Delete the store version if it is this VolumeVersion's to delete; else None,
        or the reason it must wait."""
        meta = vv["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        vid = version_id_of(vv)
        volume_name = vv["spec"]["volume"]
        volume = self.kube.get_volume(namespace, volume_name)
        if vid is None or volume is None or volume["metadata"].get("deletionTimestamp"):
            return None  # nothing sealed, or the Volume's deletion removes its versions
        forking = [
            v["metadata"]["name"]
            for v in self.kube.list_volumes(namespace)
            if ((v.get("spec") or {}).get("source") or {}).get("volumeVersion") == name
            and (v.get("status") or {}).get("phase") != "Ready"
            and not v["metadata"].get("deletionTimestamp")
        ]
        if forking:
            return f"Volume {', '.join(sorted(forking))} is being forked from this version"
        others = [
            o
            for o in self.kube.list_volume_versions(namespace)
            if o["metadata"]["name"] != name
            and (o.get("spec") or {}).get("volume") == volume_name
            and version_id_of(o) == vid
            and not o["metadata"].get("deletionTimestamp")
        ]
        if others:
            return None  # another VolumeVersion still names this version: keep it
        store = store_name_of(volume)
        with store_errors(f"deleting VolumeVersion {namespace}/{name}"):
            try:
                version = self.repo.version(f"{store}@{vid}")
            except (VersionNotFound, VolumeNotFound):
                return None  # already gone (retention, GC)
            if version.volume != store:
                return None  # inherited from a fork's source: that Volume's to delete
            needed = self.repo.needed_by_others(store)
            if version.ref in needed:
                return f"version {vid} is in the history of another Volume forked from it"
            try:
                self.repo.delete_version(version.ref)
            except VersionInUse as exc:
                return f"version {vid} is still in use ({exc})"
            except VersionNotFound:
                return None
        self.events.normal(
            volume,
            "VersionDeleted",
            f"Deleted version {vid} (VolumeVersion {name}); its data is freed by the next "
            "store GC unless other versions share it",
        )
        return None
