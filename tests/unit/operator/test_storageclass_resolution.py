"""Choosing an RWX StorageClass: the allow-list, the admin override, defaults, failures."""

from __future__ import annotations

from typing import Any

import pytest
from strata_operator.staging.storageclass import RWX_ANNOTATION, resolve, rwx_verdict


def sc(
    name: str,
    provisioner: str,
    *,
    default: bool = False,
    rwx: str | None = None,
    created: str = "2026-01-01T00:00:00Z",
    beta_default: bool = False,
) -> dict[str, Any]:
    annotations: dict[str, str] = {}
    if default:
        annotations["storageclass.kubernetes.io/is-default-class"] = "true"
    if beta_default:
        annotations["storageclass.beta.kubernetes.io/is-default-class"] = "true"
    if rwx is not None:
        annotations[RWX_ANNOTATION] = rwx
    return {
        "metadata": {"name": name, "annotations": annotations, "creationTimestamp": created},
        "provisioner": provisioner,
    }


NFS = sc("nfs", "nfs.csi.k8s.io")
EBS_DEFAULT = sc("gp3", "ebs.csi.aws.com", default=True)
EFS = sc("efs", "efs.csi.aws.com")
LOCAL_DEFAULT = sc("standard", "rancher.io/local-path", default=True)


@pytest.mark.parametrize(
    ("provisioner", "capable"),
    [
        ("nfs.csi.k8s.io", True),
        ("k8s-sigs.io/nfs-subdir-external-provisioner", True),
        ("cephfs.csi.ceph.com", True),
        ("rook-ceph.cephfs.csi.ceph.com", True),
        ("efs.csi.aws.com", True),
        ("filestore.csi.storage.gke.io", True),
        ("file.csi.azure.com", True),
        ("kubernetes.io/glusterfs", True),
        ("ebs.csi.aws.com", False),
        ("pd.csi.storage.gke.io", False),
        ("disk.csi.azure.com", False),
        ("rancher.io/local-path", False),
        ("rook-ceph.rbd.csi.ceph.com", False),
    ],
)
def test_allow_list(provisioner: str, capable: bool) -> None:
    assert rwx_verdict(sc("c", provisioner))[0] is capable


def test_annotation_overrides_the_allow_list_both_ways() -> None:
    assert rwx_verdict(sc("c", "example.com/fancy", rwx="true"))[0] is True
    assert rwx_verdict(sc("c", "nfs.csi.k8s.io", rwx="false"))[0] is False


def test_unparseable_annotation_is_ignored_and_said_so() -> None:
    capable, why = rwx_verdict(sc("c", "ebs.csi.aws.com", rwx="yes"))
    assert not capable
    assert "ignored" in why


# (requested, classes, chosen class or None, reason)
TABLE = [
    ("", [NFS, EBS_DEFAULT], "nfs", "Chosen"),  # default not RWX, the only RWX class
    ("", [sc("nfs", "nfs.csi.k8s.io", default=True), EFS], "nfs", "Chosen"),  # RWX default wins
    ("", [NFS, EFS, EBS_DEFAULT], None, "AmbiguousStorageClass"),
    ("", [EBS_DEFAULT, LOCAL_DEFAULT], None, "NoRWXStorageClass"),
    ("", [], None, "NoRWXStorageClass"),
    ("", [sc("fancy", "example.com/fancy", rwx="true"), EBS_DEFAULT], "fancy", "Chosen"),
    ("", [sc("nfs", "nfs.csi.k8s.io", default=True, rwx="false")], None, "NoRWXStorageClass"),
    ("", [sc("old", "nfs.csi.k8s.io", beta_default=True), EFS], "old", "Chosen"),
    ("efs", [NFS, EFS, EBS_DEFAULT], "efs", "Chosen"),
    ("gp3", [NFS, EBS_DEFAULT], None, "StorageClassNotRWX"),
    ("missing", [NFS], None, "StorageClassNotFound"),
    ("fancy", [sc("fancy", "example.com/fancy", rwx="true")], "fancy", "Chosen"),
]


@pytest.mark.parametrize(("requested", "classes", "chosen", "reason"), TABLE)
def test_resolution_table(
    requested: str, classes: list[dict[str, Any]], chosen: str | None, reason: str
) -> None:
    result = resolve(requested, classes)
    assert result.class_name == chosen
    assert result.reason == reason
    assert result.ok is (chosen is not None)


def test_newest_rwx_default_wins() -> None:
    older = sc("a-nfs", "nfs.csi.k8s.io", default=True, created="2026-01-01T00:00:00Z")
    newer = sc("b-nfs", "nfs.csi.k8s.io", default=True, created="2026-02-01T00:00:00Z")
    assert resolve("", [older, newer]).class_name == "b-nfs"


def test_failure_lists_every_class_examined_and_why() -> None:
    result = resolve("", [EBS_DEFAULT, LOCAL_DEFAULT, sc("nope", "nfs.csi.k8s.io", rwx="false")])
    assert not result.ok
    for name in ("gp3", "standard", "nope"):
        assert name in result.message
    assert "ebs.csi.aws.com is not in the RWX allow-list" in result.message
    assert f'{RWX_ANNOTATION}="false"' in result.message
    assert {e.name for e in result.examined} == {"gp3", "standard", "nope"}
    assert RWX_ANNOTATION in result.message  # tells the admin how to override


def test_named_class_failure_says_which_and_how_to_fix() -> None:
    result = resolve("gp3", [EBS_DEFAULT])
    assert 'StorageClass "gp3" cannot provide ReadWriteMany' in result.message
    assert "ebs.csi.aws.com" in result.message
