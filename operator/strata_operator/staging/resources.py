"""The staging PVC: its labels, annotations and body, and the pods that use it.

Labels are for selecting (sanitised, at most 63 characters); annotations keep the raw
ids and the owning StagingVolume's name, which may be longer than any label value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from strata_operator.kube import GROUP, VERSION
from strata_operator.staging import naming

__all__ = [
    "ANN_DAG",
    "ANN_OWNER",
    "ANN_RUN",
    "LABEL_DAG",
    "LABEL_RUN",
    "SELECTOR",
    "STAGING_LABELS",
    "TERMINAL",
    "StagingView",
    "controller_owner",
    "desired_pvc",
    "is_terminating",
    "pods_using",
    "same_run",
]

LABEL_DAG = "strata.dev/dag"
LABEL_RUN = "strata.dev/run"
ANN_DAG = "strata.dev/dag-id"
ANN_RUN = "strata.dev/run-id"
ANN_OWNER = "strata.dev/staging-volume"
#: Every staging PVC carries these; the sweeper selects on them.
STAGING_LABELS = {
    "app.kubernetes.io/managed-by": "strata",
    "app.kubernetes.io/component": "staging",
}
SELECTOR = ",".join(f"{k}={v}" for k, v in STAGING_LABELS.items())
TERMINAL = frozenset({"Succeeded", "Failed"})
KIND = "StagingVolume"

Obj = dict[str, Any]


@dataclass(frozen=True)
class StagingView:
    """The fields of a StagingVolume the operator reads (defaults as in the CRD)."""

    body: Mapping[str, Any]
    name: str
    namespace: str
    uid: str
    generation: int | None
    resource_version: str | None
    dag_id: str
    run_id: str
    size: str
    storage_class: str
    ttl: int
    run_phase: str
    status: Mapping[str, Any]

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> StagingView:
        meta, spec = body["metadata"], body.get("spec") or {}
        return cls(
            body=body,
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta["uid"],
            generation=meta.get("generation"),
            resource_version=meta.get("resourceVersion"),
            dag_id=spec["dagId"],
            run_id=spec["runId"],
            size=str(spec.get("size", "1Gi")),
            storage_class=spec.get("storageClassName") or "",
            ttl=int(spec.get("ttlSecondsAfterFinished", 86400)),
            run_phase=spec.get("runPhase", "Running"),
            status=body.get("status") or {},
        )

    @property
    def terminal(self) -> bool:
        return self.run_phase in TERMINAL

    @property
    def being_deleted(self) -> bool:
        return bool(self.body["metadata"].get("deletionTimestamp"))

    def pvc_name(self, prefix: str) -> str:
        return naming.pvc_name(prefix, self.dag_id, self.run_id)

    def owner_reference(self) -> Obj:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def desired_pvc(sv: StagingView, name: str, storage_class: str) -> Obj:
    """The PVC for ``sv``: RWX, owned by it, labelled for selection by run and DAG."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": name,
            "namespace": sv.namespace,
            "labels": {
                **STAGING_LABELS,
                LABEL_DAG: naming.label_value(sv.dag_id),
                LABEL_RUN: naming.label_value(sv.run_id),
            },
            "annotations": {ANN_DAG: sv.dag_id, ANN_RUN: sv.run_id, ANN_OWNER: sv.name},
            "ownerReferences": [sv.owner_reference()],
        },
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "volumeMode": "Filesystem",
            "storageClassName": storage_class,
            "resources": {"requests": {"storage": sv.size}},
        },
    }


def same_run(pvc: Mapping[str, Any], sv: StagingView) -> bool:
    """Whether ``pvc`` is a Strata staging PVC made for ``sv``'s dagId and runId."""
    meta = pvc["metadata"]
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    return (
        all(labels.get(k) == v for k, v in STAGING_LABELS.items())
        and annotations.get(ANN_DAG) == sv.dag_id
        and annotations.get(ANN_RUN) == sv.run_id
    )


def controller_owner(pvc: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The StagingVolume ownerReference that controls ``pvc``, if any."""
    for ref in pvc["metadata"].get("ownerReferences") or ():
        if ref.get("kind") == KIND and ref.get("apiVersion", "").startswith(f"{GROUP}/"):
            return ref
    return None


def is_terminating(obj: Mapping[str, Any]) -> bool:
    """Deletion was requested (it may linger behind finalizers such as pvc-protection)."""
    return bool(obj["metadata"].get("deletionTimestamp"))


def pods_using(pods: Iterable[Mapping[str, Any]], claim: str) -> list[str]:
    """Names of pods that mount ``claim`` and have not finished.

    Finished pods (Succeeded/Failed) no longer hold the volume, the same rule the
    pvc-protection controller applies.
    """
    users = []
    for pod in pods:
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        for volume in (pod.get("spec") or {}).get("volumes") or ():
            if (volume.get("persistentVolumeClaim") or {}).get("claimName") == claim:
                users.append(pod["metadata"]["name"])
                break
    return sorted(users)
