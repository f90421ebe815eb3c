"""The CRDs on the real apiserver, through the real kubectl: discovery, explain,
defaults, printer columns, and invalid objects rejected with readable messages."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytestmark = pytest.mark.k8s


def apply(kube: Any, ns: str, manifest: str, check: bool = True) -> Any:
    return kube.kubectl("apply", "-n", ns, "-f", "-", input=manifest, check=check)


def rejected(kube: Any, ns: str, manifest: str) -> str:
    proc = apply(kube, ns, manifest, check=False)
    assert proc.returncode != 0, f"accepted but should be rejected:\n{manifest}"
    return proc.stderr


def sv(name: str = "run", **spec: Any) -> str:
    spec = {"dagId": "etl", "runId": "r1", **spec}
    return json.dumps(
        {
            "apiVersion": "strata.dev/v1alpha1",
            "kind": "StagingVolume",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def vol(name: str = "data", **spec: Any) -> str:
    return json.dumps(
        {
            "apiVersion": "strata.dev/v1alpha1",
            "kind": "Volume",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def volver(name: str = "data-v1", **spec: Any) -> str:
    return json.dumps(
        {
            "apiVersion": "strata.dev/v1alpha1",
            "kind": "VolumeVersion",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def test_discovery_short_names_and_category(kube: Any, crds: None) -> None:
    out = kube.kubectl("api-resources", "--api-group=strata.dev", "-o", "wide").stdout
    for plural, short, kind in [
        ("volumes", "vol", "Volume"),
        ("volumeversions", "volver", "VolumeVersion"),
        ("stagingvolumes", "stv", "StagingVolume"),
    ]:
        line = next(line for line in out.splitlines() if line.startswith(plural + " "))
        assert f" {short} " in line and kind in line and "true" in line  # namespaced
        assert "strata" in line  # category: `kubectl get strata` lists all three


def test_explain_stagingvolume_spec_reads_well(kube: Any, crds: None) -> None:
    out = kube.kubectl("explain", "stagingvolume.spec").stdout
    assert "The run this volume belongs to" in out
    for field in (
        "dagId",
        "runId",
        "size",
        "storageClassName",
        "ttlSecondsAfterFinished",
        "runPhase",
    ):
        assert field in out
    assert "Seconds to keep the PVC after the run becomes terminal" in out
    assert "enum: Running, Succeeded, Failed" in out
    assert "-required-" in out
    deep = kube.kubectl("explain", "stv.status.conditions.reason").stdout
    assert "reason for the last transition" in deep


@pytest.mark.parametrize(
    ("resource", "needle"),
    [
        ("volume.spec.source", "Fork this Volume"),
        ("volume.spec.mountOptions.maxUploads", "concurrent block uploads"),
        ("volumeversion.spec", "The whole spec is immutable"),
        ("volumeversion.status.readyToUse", "sealed in the store"),
    ],
)
def test_explain_other_kinds(kube: Any, crds: None, resource: str, needle: str) -> None:
    assert needle in kube.kubectl("explain", resource).stdout


def test_defaults_are_filled_in(kube: Any, api: Any, ns: str) -> None:
    apply(kube, ns, sv())
    apply(kube, ns, vol())
    stv = json.loads(kube.kubectl("get", "-n", ns, "stv", "run", "-o", "json").stdout)["spec"]
    assert stv["size"] == "1Gi"
    assert stv["ttlSecondsAfterFinished"] == 86400
    assert stv["runPhase"] == "Running"
    volume = json.loads(kube.kubectl("get", "-n", ns, "vol", "data", "-o", "json").stdout)["spec"]
    assert volume["highThroughput"] is False
    assert volume["onUnmount"] == "commit"
    assert volume["mountOptions"] == {
        "maxUploads": 50,
        "attrCache": 60,
        "entryCache": 60,
        "dirEntryCache": 60,
    }


def test_printer_columns(kube: Any, ns: str) -> None:
    apply(kube, ns, sv(runId="scheduled__2026-11-20T00:00:00+00:00"))
    header, row = kube.kubectl("get", "-n", ns, "stv").stdout.splitlines()[:2]
    assert header.split() == ["NAME", "DAG", "RUN", "RUN-PHASE", "PHASE", "PVC", "EXPIRES", "AGE"]
    assert "scheduled__2026-11-20T00:00:00+00:00" in row
    wide = kube.kubectl("get", "-n", ns, "stv", "-o", "wide").stdout.splitlines()[0].split()
    assert "SIZE" in wide and "CLASS" in wide
    apply(kube, ns, vol())
    assert kube.kubectl("get", "-n", ns, "vol").stdout.split()[:6] == [
        "NAME",
        "PHASE",
        "HEAD",
        "VERSIONS",
        "SIZE",
        "WRITER",
    ]
    apply(kube, ns, volver(volume="data"))
    assert kube.kubectl("get", "-n", ns, "volver").stdout.split()[:5] == [
        "NAME",
        "VOLUME",
        "READY",
        "VERSION",
        "SIZE",
    ]


# (manifest, words the error must contain)
CREATE_REJECTIONS = [
    (
        sv(ttlSecondsAfterFinished=-1),
        "spec.ttlSecondsAfterFinished must be 0 or more seconds",
    ),
    (sv(dagId=""), "spec.dagId in body should be at least 1 chars long"),
    (sv(runPhase="Done"), 'supported values: "Running", "Succeeded", "Failed"'),
    (sv(size="lots"), "spec.size in body should match"),
    (vol(name="my.volume"), "metadata.name must be a DNS-1123 label"),
    (vol(name="v" * 64), "metadata.name must be a DNS-1123 label"),
    (vol(name="My_Volume"), "RFC 1123"),
    (
        vol(source={"volume": "a", "volumeVersion": "b"}),
        "must set exactly one of volumeVersion or volume",
    ),
    (vol(source={}), "must set exactly one of volumeVersion or volume"),
    (
        vol(retention={"keepLast": 0}),
        "spec.retention.keepLast in body should be greater than or equal to 1",
    ),
    (vol(retention={"maxAge": "a month"}), "spec.retention.maxAge in body should match"),
    (vol(onUnmount="discard"), 'supported values: "commit", "keep"'),
    (volver(message="no volume"), "spec.volume: Required value"),
    (volver(name="v1.0", volume="data"), "metadata.name must be a DNS-1123 label"),
    (volver(volume="Not_A_Label"), "spec.volume in body should match"),
]


@pytest.mark.parametrize(("manifest", "message"), CREATE_REJECTIONS)
def test_invalid_objects_are_rejected_readably(
    kube: Any, ns: str, manifest: str, message: str
) -> None:
    assert message in rejected(kube, ns, manifest)


# (original, edited, words the error must contain)
UPDATE_REJECTIONS = [
    (sv(), sv(dagId="other"), "spec.dagId is immutable"),
    (sv(), sv(runId="r2"), "spec.runId is immutable"),
    (sv(size="2Gi"), sv(size="1Gi"), "spec.size can only grow"),
    (volver(volume="data"), volver(volume="other"), "spec is immutable"),
    (volver(volume="data", message="a"), volver(volume="data", message="b"), "spec is immutable"),
    (vol(source={"volume": "a"}), vol(source={"volume": "b"}), "spec.source is immutable"),
    (vol(source={"volume": "a"}), vol(), "spec.source is immutable"),
    (vol(), vol(source={"volumeVersion": "a-v1"}), "spec.source is immutable"),
]


@pytest.mark.parametrize(("original", "edited", "message"), UPDATE_REJECTIONS)
def test_immutable_fields(kube: Any, ns: str, original: str, edited: str, message: str) -> None:
    apply(kube, ns, original)
    assert message in rejected(kube, ns, edited)


def test_allowed_edits(kube: Any, ns: str) -> None:
    apply(kube, ns, sv())
    apply(kube, ns, sv(size="5Gi", ttlSecondsAfterFinished=0, runPhase="Succeeded"))
    apply(kube, ns, sv(size="5Gi", runPhase="Running", storageClassName="nfs"))
    apply(kube, ns, vol(source={"volumeVersion": "base-v1"}, highThroughput=False))
    apply(kube, ns, vol(source={"volumeVersion": "base-v1"}, highThroughput=True, onUnmount="keep"))


def test_volume_examples_apply_as_documented(kube: Any, ns: str) -> None:
    from pathlib import Path

    examples = Path(__file__).resolve().parents[3] / "examples"
    out = kube.kubectl("apply", "-n", ns, "-f", str(examples / "volume.yaml")).stdout
    assert "volume.strata.dev/datasets created" in out
    out = kube.kubectl("apply", "-n", ns, "-f", str(examples / "volumeversion.yaml")).stdout
    assert "volumeversion.strata.dev/datasets-initial-import created" in out

    volume = json.loads(kube.kubectl("get", "-n", ns, "vol", "datasets", "-o", "json").stdout)
    assert volume["spec"]["retention"] == {"keepLast": 10, "maxAge": "30d"}
    assert volume["spec"]["mountOptions"] == {
        "maxUploads": 32,
        "uploadDelay": "5s",
        "cacheSize": "20Gi",
        "attrCache": 60,
        "entryCache": 60,
        "dirEntryCache": 60,
    }
    assert volume["spec"]["onUnmount"] == "commit"
    assert volume["spec"]["highThroughput"] is False
    version = json.loads(
        kube.kubectl("get", "-n", ns, "volver", "datasets-initial-import", "-o", "json").stdout
    )
    assert version["spec"] == {
        "volume": "datasets",
        "message": "Initial import of the 2026-11 snapshot",
    }
    # Re-applying unchanged examples is a no-op; editing the version is refused.
    again = kube.kubectl(
        "apply",
        "-n",
        ns,
        "-f",
        str(examples / "volume.yaml"),
        "-f",
        str(examples / "volumeversion.yaml"),
    ).stdout
    assert again.count("unchanged") == 2
    edit = kube.kubectl(
        "patch",
        "-n",
        ns,
        "volver",
        "datasets-initial-import",
        "--type=merge",
        "-p",
        '{"spec":{"message":"rewritten"}}',
        check=False,
    )
    assert edit.returncode != 0 and "spec is immutable" in edit.stderr
