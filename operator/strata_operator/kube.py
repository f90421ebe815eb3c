"""Every Kubernetes API call the operator makes (kopf's own watching aside).

One small module of verbs over an injected :class:`kubernetes.client.ApiClient`:

* objects go in and come out as plain dicts (the shape kopf hands to handlers), so
  the logic above never touches generated model classes;
* failures are born with their meaning: :class:`NotFound` becomes ``None`` for reads,
  and everything else raises a :class:`KubeError` subclass that says whether a retry
  can help (:attr:`KubeError.retryable`), which the handlers turn into kopf's
  temporary or permanent errors;
* an optional ``on_request`` hook sees every call (verb, resource, namespace, name)
  before it is sent, so tests can watch exactly what the operator asks for.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import urllib3.exceptions
from kubernetes import client
from kubernetes.client.exceptions import ApiException

__all__ = [
    "GROUP",
    "STAGING_PLURAL",
    "VERSION",
    "VERSION_PLURAL",
    "VOLUME_PLURAL",
    "Conflict",
    "Forbidden",
    "Invalid",
    "Kube",
    "KubeError",
    "NotFound",
    "Request",
    "Unavailable",
]

GROUP = "strata.dev"
VERSION = "v1alpha1"
STAGING_PLURAL = "stagingvolumes"
VOLUME_PLURAL = "volumes"
VERSION_PLURAL = "volumeversions"
MERGE_PATCH = "application/merge-patch+json"

Obj = dict[str, Any]


class KubeError(Exception):
    """An API call failed; ``retryable`` says whether trying again later can help."""

    retryable = False

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Conflict(KubeError):
    """409: the object changed since it was read, or already exists. Re-read and retry."""

    retryable = True


class Invalid(KubeError):
    """400/422: the API server rejected the request itself; repeating it cannot help."""


class Forbidden(KubeError):
    """401/403: missing RBAC. Retryable because an admin may fix the Role."""

    retryable = True


class Unavailable(KubeError):
    """5xx, 429 or no connection: the API server is busy or away for a moment."""

    retryable = True


class NotFound(KubeError):
    """404: the object (or its namespace) is gone. Reads return ``None`` instead."""


@dataclass(frozen=True)
class Request:
    """What ``on_request`` sees: one API call about to be made."""

    verb: str
    resource: str
    namespace: str | None
    name: str | None


def _message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except ValueError:
        return str(exc.reason)


def _translate(exc: ApiException) -> KubeError:
    status = exc.status or 0
    text = _message(exc)
    if status == 404:
        return NotFound(text, status)
    if status == 409:
        return Conflict(text, status)
    if status in (400, 422):
        return Invalid(text, status)
    if status in (401, 403):
        return Forbidden(text, status)
    return Unavailable(text, status)


class Kube:
    """The operator's verbs on the Kubernetes API."""

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        on_request: Callable[[Request], None] | None = None,
    ) -> None:
        self.api_client = api_client
        self.on_request = on_request
        self._core = client.CoreV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)
        self._storage = client.StorageV1Api(api_client)
        self._coordination = client.CoordinationV1Api(api_client)

    # -- plumbing --------------------------------------------------------------------

    def _json(
        self,
        verb: str,
        resource: str,
        namespace: str | None,
        name: str | None,
        method: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> Obj:
        """Call a generated-client method for its raw JSON reply, translating failures."""
        if self.on_request is not None:
            self.on_request(Request(verb, resource, namespace, name))
        try:
            response = method(*args, _preload_content=False, **kwargs)
        except ApiException as exc:
            raise _translate(exc) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unavailable(f"cannot reach the API server: {exc}") from exc
        return json.loads(response.data) if response.data else {}

    def _get(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        method: Callable[..., Any],
        *args: Any,
    ) -> Obj | None:
        try:
            return self._json("get", resource, namespace, name, method, *args)
        except NotFound:
            return None

    # -- StagingVolumes ----------------------------------------------------------------

    def get_staging_volume(self, namespace: str, name: str) -> Obj | None:
        return self._custom_get(STAGING_PLURAL, namespace, name)

    def list_staging_volumes(self, namespace: str | None) -> list[Obj]:
        """All StagingVolumes in ``namespace``, or in every namespace for ``None``."""
        if namespace is None:
            method, args = self._custom.list_cluster_custom_object, ()
        else:
            method, args = self._custom.list_namespaced_custom_object, (namespace,)
        reply = self._json(
            "list", STAGING_PLURAL, namespace, None, method, GROUP, VERSION, *args, STAGING_PLURAL
        )
        return list(reply.get("items", []))

    def patch_staging_volume_status(
        self,
        namespace: str,
        name: str,
        status: Mapping[str, Any],
        resource_version: str | None = None,
    ) -> Obj:
        """Merge-patch ``status``; with ``resource_version``, fail with Conflict if stale."""
        body: Obj = {"status": dict(status)}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        return self._json(
            "patch-status",
            STAGING_PLURAL,
            namespace,
            name,
            self._custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            STAGING_PLURAL,
            name,
            body,
            _content_type=MERGE_PATCH,
        )

    # -- Volumes and VolumeVersions -----------------------------------------------------

    def _custom_get(self, plural: str, namespace: str, name: str) -> Obj | None:
        return self._get(
            plural,
            namespace,
            name,
            self._custom.get_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            plural,
            name,
        )

    def _custom_list(self, plural: str, namespace: str | None) -> list[Obj]:
        if namespace is None:
            method, args = self._custom.list_cluster_custom_object, ()
        else:
            method, args = self._custom.list_namespaced_custom_object, (namespace,)
        reply = self._json("list", plural, namespace, None, method, GROUP, VERSION, *args, plural)
        return list(reply.get("items", []))

    def _custom_patch(
        self,
        plural: str,
        namespace: str,
        name: str,
        body: Any,
        *,
        status: bool = False,
    ) -> Obj:
        method = (
            self._custom.patch_namespaced_custom_object_status
            if status
            else self._custom.patch_namespaced_custom_object
        )
        return self._json(
            "patch-status" if status else "patch",
            plural,
            namespace,
            name,
            method,
            GROUP,
            VERSION,
            namespace,
            plural,
            name,
            body,
            _content_type=MERGE_PATCH,
        )

    def get_volume(self, namespace: str, name: str) -> Obj | None:
        return self._custom_get(VOLUME_PLURAL, namespace, name)

    def list_volumes(self, namespace: str | None) -> list[Obj]:
        """All Volumes in ``namespace``, or in every namespace for ``None``."""
        return self._custom_list(VOLUME_PLURAL, namespace)

    def patch_volume_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> Obj:
        return self._custom_patch(
            VOLUME_PLURAL, namespace, name, {"status": dict(status)}, status=True
        )

    def get_volume_version(self, namespace: str, name: str) -> Obj | None:
        return self._custom_get(VERSION_PLURAL, namespace, name)

    def list_volume_versions(self, namespace: str | None) -> list[Obj]:
        return self._custom_list(VERSION_PLURAL, namespace)

    def create_volume_version(self, namespace: str, body: Mapping[str, Any]) -> Obj:
        return self._json(
            "create",
            VERSION_PLURAL,
            namespace,
            body["metadata"]["name"],
            self._custom.create_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            VERSION_PLURAL,
            dict(body),
        )

    def patch_volume_version_status(
        self, namespace: str, name: str, status: Mapping[str, Any]
    ) -> Obj:
        return self._custom_patch(
            VERSION_PLURAL, namespace, name, {"status": dict(status)}, status=True
        )

    def patch_metadata(
        self, plural: str, namespace: str, name: str, metadata: Mapping[str, Any]
    ) -> Obj:
        """Merge-patch labels/annotations (with ``resourceVersion``: conditional)."""
        return self._custom_patch(plural, namespace, name, {"metadata": dict(metadata)})

    def set_finalizers(
        self, plural: str, namespace: str, name: str, finalizers: list[str], resource_version: str
    ) -> Obj:
        """Replace ``metadata.finalizers``, only if the object is still at
        ``resource_version`` (Conflict otherwise), so another controller's finalizer
        added meanwhile is never dropped."""
        patch = {"metadata": {"resourceVersion": resource_version, "finalizers": finalizers}}
        return self._custom_patch(plural, namespace, name, patch)

    def delete_custom(self, plural: str, namespace: str, name: str) -> bool:
        """Ask to delete a Volume or VolumeVersion; False if it is already gone."""
        try:
            self._json(
                "delete",
                plural,
                namespace,
                name,
                self._custom.delete_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
            )
        except NotFound:
            return False
        return True

    # -- PersistentVolumeClaims --------------------------------------------------------

    def get_pvc(self, namespace: str, name: str) -> Obj | None:
        return self._get(
            "persistentvolumeclaims",
            namespace,
            name,
            self._core.read_namespaced_persistent_volume_claim,
            name,
            namespace,
        )

    def list_pvcs(self, namespace: str | None, label_selector: str) -> list[Obj]:
        """PVCs matching ``label_selector`` in ``namespace`` (``None``: all namespaces)."""
        if namespace is None:
            method, args = self._core.list_persistent_volume_claim_for_all_namespaces, ()
        else:
            method, args = self._core.list_namespaced_persistent_volume_claim, (namespace,)
        reply = self._json(
            "list",
            "persistentvolumeclaims",
            namespace,
            None,
            method,
            *args,
            label_selector=label_selector,
        )
        return list(reply.get("items", []))

    def create_pvc(self, namespace: str, body: Mapping[str, Any]) -> Obj:
        return self._json(
            "create",
            "persistentvolumeclaims",
            namespace,
            body["metadata"]["name"],
            self._core.create_namespaced_persistent_volume_claim,
            namespace,
            dict(body),
        )

    def patch_pvc(self, namespace: str, name: str, patch: Mapping[str, Any]) -> Obj:
        """Merge-patch a PVC (include metadata.resourceVersion to make it conditional)."""
        return self._json(
            "patch",
            "persistentvolumeclaims",
            namespace,
            name,
            self._core.patch_namespaced_persistent_volume_claim,
            name,
            namespace,
            dict(patch),
            _content_type=MERGE_PATCH,
        )

    def delete_pvc(self, namespace: str, name: str, uid: str) -> bool:
        """Delete exactly the PVC with ``uid`` (never a same-named successor).

        Returns False if it is already gone; Conflict means another PVC now has the name.
        """
        options = {"preconditions": {"uid": uid}, "propagationPolicy": "Background"}
        try:
            self._json(
                "delete",
                "persistentvolumeclaims",
                namespace,
                name,
                self._core.delete_namespaced_persistent_volume_claim,
                name,
                namespace,
                body=options,
            )
        except NotFound:
            return False
        return True

    # -- Pods ----------------------------------------------------------------------------

    def list_pods(self, namespace: str) -> list[Obj]:
        reply = self._json(
            "list", "pods", namespace, None, self._core.list_namespaced_pod, namespace
        )
        return list(reply.get("items", []))

    # -- StorageClasses ------------------------------------------------------------------

    def get_storage_class(self, name: str) -> Obj | None:
        return self._get("storageclasses", None, name, self._storage.read_storage_class, name)

    def list_storage_classes(self) -> list[Obj]:
        reply = self._json("list", "storageclasses", None, None, self._storage.list_storage_class)
        return list(reply.get("items", []))

    # -- Events ------------------------------------------------------------------------

    def create_event(self, namespace: str, body: Mapping[str, Any]) -> Obj:
        return self._json(
            "create",
            "events",
            namespace,
            None,
            self._core.create_namespaced_event,
            namespace,
            dict(body),
        )

    # -- Leases (leader election) --------------------------------------------------------

    def get_lease(self, namespace: str, name: str) -> Obj | None:
        return self._get(
            "leases", namespace, name, self._coordination.read_namespaced_lease, name, namespace
        )

    def create_lease(self, namespace: str, body: Mapping[str, Any]) -> Obj:
        return self._json(
            "create",
            "leases",
            namespace,
            body["metadata"]["name"],
            self._coordination.create_namespaced_lease,
            namespace,
            dict(body),
        )

    def replace_lease(self, namespace: str, name: str, body: Mapping[str, Any]) -> Obj:
        """Replace a Lease; body.metadata.resourceVersion makes it compare-and-swap."""
        return self._json(
            "replace",
            "leases",
            namespace,
            name,
            self._coordination.replace_namespaced_lease,
            name,
            namespace,
            dict(body),
        )
