"""Choose a ReadWriteMany-capable StorageClass for a staging PVC, or say why not.

Kubernetes does not say which provisioners can serve ReadWriteMany: a PVC asking for
RWX from a block-storage class just stays Pending (or, worse, some provisioners hand
out RWO volumes). So the operator decides up front, from an allow-list of provisioners
known to serve shared filesystems, and an admin can override the verdict for any class
with the annotation ``strata.dev/rwx: "true"`` or ``"false"``. When nothing fits, the
result lists every class examined and why each was rejected, so the failure condition
tells the user exactly what to fix: never a silent fallback to RWO.

This module is pure: it takes StorageClass objects (dicts as the API returns them) and
returns a :class:`Resolution`; fetching the classes is the caller's job.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_CLASS_ANNOTATIONS",
    "RWX_ANNOTATION",
    "RWX_PROVISIONERS",
    "Examined",
    "Resolution",
    "is_default",
    "resolve",
    "rwx_verdict",
]

RWX_ANNOTATION = "strata.dev/rwx"
DEFAULT_CLASS_ANNOTATIONS = (
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
)

#: Provisioners that serve shared (ReadWriteMany) filesystems with any parameters.
RWX_PROVISIONERS: frozenset[str] = frozenset(
    {
        "nfs.csi.k8s.io",  # kubernetes-csi/csi-driver-nfs
        "k8s-sigs.io/nfs-subdir-external-provisioner",  # nfs-subdir-external-provisioner
        "cluster.local/nfs-subdir-external-provisioner",  # its Helm chart's default name
        "openebs.io/nfsrwx",  # OpenEBS dynamic NFS provisioner
        "smb.csi.k8s.io",  # kubernetes-csi/csi-driver-smb
        "cephfs.csi.ceph.com",  # ceph-csi CephFS
        "kubernetes.io/cephfs",  # in-tree CephFS (legacy)
        "kubernetes.io/glusterfs",  # in-tree GlusterFS (legacy)
        "efs.csi.aws.com",  # AWS EFS
        "filestore.csi.storage.gke.io",  # GCP Filestore
        "file.csi.azure.com",  # Azure Files
        "kubernetes.io/azure-file",  # in-tree Azure Files (legacy)
        "fss.csi.oraclecloud.com",  # OCI File Storage
        "driver.longhorn.io",  # Longhorn serves RWX through its NFS share manager
        "csi.juicefs.com",  # JuiceFS
    }
)
#: Provisioner name suffixes: Rook names its CephFS driver ``<namespace>.cephfs.csi.ceph.com``.
RWX_PROVISIONER_SUFFIXES: tuple[str, ...] = (".cephfs.csi.ceph.com",)

_OVERRIDE_HINT = f'annotate a class with {RWX_ANNOTATION}: "true" to override'


@dataclass(frozen=True)
class Examined:
    """One StorageClass looked at during resolution, and the verdict on it."""

    name: str
    provisioner: str
    default: bool
    rwx: bool
    why: str

    def describe(self) -> str:
        default = ", default" if self.default else ""
        return f"{self.name} ({self.provisioner}{default}): {self.why}"


@dataclass(frozen=True)
class Resolution:
    """The chosen class (``None`` on failure), every class examined, and a summary."""

    class_name: str | None
    examined: tuple[Examined, ...]
    message: str
    reason: str

    @property
    def ok(self) -> bool:
        return self.class_name is not None


def _annotations(sc: Mapping[str, Any]) -> Mapping[str, str]:
    return sc.get("metadata", {}).get("annotations") or {}


def is_default(sc: Mapping[str, Any]) -> bool:
    """Whether the class carries the (GA or beta) is-default-class annotation."""
    annotations = _annotations(sc)
    return any(annotations.get(key) == "true" for key in DEFAULT_CLASS_ANNOTATIONS)


def rwx_verdict(sc: Mapping[str, Any]) -> tuple[bool, str]:
    """(RWX-capable?, why) for one class: the admin annotation first, then the allow-list."""
    provisioner = sc.get("provisioner", "")
    override = _annotations(sc).get(RWX_ANNOTATION)
    if override == "true":
        return True, f'{RWX_ANNOTATION}="true" marks it RWX-capable'
    if override == "false":
        return False, f'{RWX_ANNOTATION}="false" marks it not RWX-capable'
    note = ""
    if override is not None:
        note = f' ({RWX_ANNOTATION}="{override}" ignored: use "true" or "false")'
    if provisioner in RWX_PROVISIONERS or provisioner.endswith(RWX_PROVISIONER_SUFFIXES):
        return True, f"provisioner {provisioner} serves ReadWriteMany{note}"
    return False, f"provisioner {provisioner} is not in the RWX allow-list{note}"


def _examine(sc: Mapping[str, Any]) -> Examined:
    rwx, why = rwx_verdict(sc)
    return Examined(
        name=sc["metadata"]["name"],
        provisioner=sc.get("provisioner", ""),
        default=is_default(sc),
        rwx=rwx,
        why=why,
    )


def _failure(examined: list[Examined], reason: str, lead: str, advice: str) -> Resolution:
    listing = "; ".join(e.describe() for e in examined) or "no StorageClass exists"
    message = f"{lead}. Examined: {listing}. {advice}"
    return Resolution(None, tuple(examined), message, reason)


def resolve(requested: str, classes: Iterable[Mapping[str, Any]]) -> Resolution:
    """Pick the class for a staging PVC.

    ``requested`` non-empty: that class, if it exists and is RWX-capable.
    ``requested`` empty: the cluster default class if it is RWX-capable (the newest
    default wins, as in Kubernetes), else the only RWX-capable class; with none, or
    with several and none of them the default, fail and list them all.
    """
    by_age = sorted(
        classes,
        key=lambda sc: (sc["metadata"].get("creationTimestamp", ""), sc["metadata"]["name"]),
        reverse=True,
    )
    examined = [_examine(sc) for sc in by_age]
    if requested:
        match = [e for e in examined if e.name == requested]
        if not match:
            return _failure(
                examined,
                "StorageClassNotFound",
                f'StorageClass "{requested}" does not exist',
                "Create it or set spec.storageClassName to an existing RWX-capable class.",
            )
        chosen = match[0]
        if chosen.rwx:
            return Resolution(chosen.name, (chosen,), f"requested class: {chosen.why}", "Chosen")
        return _failure(
            [chosen],
            "StorageClassNotRWX",
            f'StorageClass "{requested}" cannot provide ReadWriteMany volumes',
            f"Use an RWX-capable class, or {_OVERRIDE_HINT}.",
        )
    # Newest first, defaults before the rest: the order Kubernetes picks defaults in.
    examined.sort(key=lambda e: not e.default)
    for candidate in examined:
        if candidate.default and candidate.rwx:
            return Resolution(
                candidate.name, tuple(examined), f"cluster default class: {candidate.why}", "Chosen"
            )
    capable = [e for e in examined if e.rwx]
    if len(capable) == 1:
        only = capable[0]
        return Resolution(
            only.name,
            tuple(examined),
            f"the only RWX-capable class (the default class is not): {only.why}",
            "Chosen",
        )
    if capable:
        names = ", ".join(e.name for e in capable)
        return _failure(
            examined,
            "AmbiguousStorageClass",
            f"Several RWX-capable classes ({names}) and none is the cluster default",
            "Set spec.storageClassName to one of them.",
        )
    return _failure(
        examined,
        "NoRWXStorageClass",
        "No StorageClass can provide ReadWriteMany volumes",
        f"Install an RWX provisioner (NFS, CephFS, EFS, ...) or {_OVERRIDE_HINT}.",
    )
