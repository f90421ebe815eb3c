"""StagingVolume reconciliation by the real operator (kopf in-process) on the real apiserver."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from strata_operator.staging.naming import label_value, pvc_name

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import Api, Classes, Operator

pytestmark = pytest.mark.k8s

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
AIRFLOW_RUN = "scheduled__2026-11-20T00:00:00+00:00"
AIRFLOW_PVC = "strata-staging-etl-scheduled-2026-11-20t00-00-00-00-00-51bb95f0"


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def condition(status: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions") or () if c["type"] == kind), None)


def pvc_of(api: Api, ns: str, sv: str, wait_for: Callable[..., Any]) -> Any:
    """Wait until the StagingVolume reports its PVC and the PVC exists; return the PVC."""
    name = wait_for(lambda: api.sv_status(ns, sv).get("pvcName"), what=f"{sv} status.pvcName")
    return wait_for(lambda: api.live_pvc(ns, name), what=f"PVC {name}")


def test_example_creates_the_documented_pvc(
    kube: Any,
    api: Api,
    ns: str,
    classes: Classes,
    operator: Operator,
    wait_for: Callable[..., Any],
) -> None:
    default_rwx = classes.make("nfs.csi.k8s.io", default=True)
    kube.kubectl("apply", "-n", ns, "-f", str(EXAMPLES / "stagingvolume.yaml"))

    pvc = pvc_of(api, ns, "etl-2026-11-20", wait_for)
    assert pvc.metadata.name == AIRFLOW_PVC
    assert pvc.spec.access_modes == ["ReadWriteMany"]
    assert pvc.spec.storage_class_name == default_rwx
    assert pvc.spec.resources.requests["storage"] == "20Gi"
    assert pvc.metadata.labels == {
        "app.kubernetes.io/managed-by": "strata",
        "app.kubernetes.io/component": "staging",
        "strata.dev/dag": "etl",
        "strata.dev/run": label_value(AIRFLOW_RUN),
    }
    assert pvc.metadata.annotations["strata.dev/dag-id"] == "etl"
    assert pvc.metadata.annotations["strata.dev/run-id"] == AIRFLOW_RUN
    sv = api.get_sv(ns, "etl-2026-11-20")
    assert sv is not None
    [owner] = pvc.metadata.owner_references
    assert (owner.kind, owner.name, owner.uid, owner.controller) == (
        "StagingVolume",
        "etl-2026-11-20",
        sv["metadata"]["uid"],
        True,
    )
    status = wait_for(
        lambda: (
            api.sv_status(ns, "etl-2026-11-20").get("phase") and api.sv_status(ns, "etl-2026-11-20")
        )
    )
    assert status["phase"] == "Pending"  # nothing provisions volumes in this cluster
    assert status["storageClassName"] == default_rwx
    assert condition(status, "Ready")["reason"] == "PVCPending"
    assert status.get("finishedAt") is None and status.get("expiresAt") is None
    assert "Created" in wait_for(lambda: api.event_reasons(ns, "etl-2026-11-20"))
    row = kube.kubectl("get", "-n", ns, "stv", "etl-2026-11-20", "--no-headers").stdout
    assert AIRFLOW_PVC in row and "Pending" in row


def test_bound_pvc_makes_the_volume_ready(
    api: Api, ns: str, rwx_class: str, operator: Operator, wait_for: Callable[..., Any]
) -> None:
    api.create_sv(ns, "r", dagId="etl", runId="r1", storageClassName=rwx_class)
    pvc = pvc_of(api, ns, "r", wait_for)
    # Play the PV controller: bind the claim.
    api.core.patch_namespaced_persistent_volume_claim_status(
        pvc.metadata.name, ns, {"status": {"phase": "Bound"}}
    )
    wait_for(lambda: api.sv_status(ns, "r").get("phase") == "Bound", what="phase Bound")
    ready = condition(api.sv_status(ns, "r"), "Ready")
    assert ready is not None and ready["status"] == "True"
    assert "Bound" in wait_for(lambda: api.event_reasons(ns, "r"))


NASTY = [
    ("etl", AIRFLOW_RUN),
    ("Daily_ETL.v2", "manual__2026-01-01T12:34:56.789+05:30"),
    ("données", "exécution d'été"),
    ("d" * 300, "r" * 300),
]


@pytest.mark.parametrize(("dag", "run"), NASTY)
def test_nasty_ids_get_deterministic_names(
    api: Api,
    ns: str,
    rwx_class: str,
    operator: Operator,
    wait_for: Callable[..., Any],
    dag: str,
    run: str,
) -> None:
    api.create_sv(ns, "nasty", dagId=dag, runId=run, storageClassName=rwx_class)
    pvc = pvc_of(api, ns, "nasty", wait_for)
    assert pvc.metadata.name == pvc_name("strata", dag, run)
    assert len(pvc.metadata.name) <= 63
    assert pvc.metadata.labels["strata.dev/dag"] == label_value(dag)
    assert pvc.metadata.labels["strata.dev/run"] == label_value(run)
    assert pvc.metadata.annotations["strata.dev/dag-id"] == dag
    assert pvc.metadata.annotations["strata.dev/run-id"] == run


def test_similar_runs_never_share_a_pvc(
    api: Api, ns: str, rwx_class: str, operator: Operator, wait_for: Callable[..., Any]
) -> None:
    api.create_sv(ns, "a", dagId="etl", runId="run_1", storageClassName=rwx_class)
    api.create_sv(ns, "b", dagId="etl", runId="run-1", storageClassName=rwx_class)
    first, second = pvc_of(api, ns, "a", wait_for), pvc_of(api, ns, "b", wait_for)
    assert first.metadata.name != second.metadata.name
    assert len(api.staging_pvcs(ns)) == 2


def test_idempotent_across_operator_restarts(
    api: Api, ns: str, rwx_class: str, operator: Operator, wait_for: Callable[..., Any]
) -> None:
    api.create_sv(ns, "r", dagId="etl", runId=AIRFLOW_RUN, storageClassName=rwx_class)
    pvc = pvc_of(api, ns, "r", wait_for)
    assert len(operator.calls("create", "persistentvolumeclaims")) == 1

    for _ in range(2):
        operator.restart()
        # The resumed operator looks the PVC up again by its deterministic name ...
        since = operator.started_at
        wait_for(
            lambda since=since: any(
                r.name == pvc.metadata.name
                for r in operator.calls("get", "persistentvolumeclaims", since=since)
            ),
            what="the restarted operator to re-check the PVC",
        )
        # ... and sweeps, without creating or deleting anything.
        moment = time.monotonic()
        wait_for(lambda moment=moment: operator.sweeps_since(moment) >= 2, what="two sweeps")
        assert operator.calls("create", "persistentvolumeclaims", since=since) == []
        assert operator.calls("delete", "persistentvolumeclaims", since=since) == []
        [same] = api.staging_pvcs(ns)
        assert same.metadata.uid == pvc.metadata.uid


def test_clear_and_rerun_reattaches_the_same_pvc(
    api: Api,
    ns: str,
    rwx_class: str,
    operator_factory: Callable[..., Operator],
    wait_for: Callable[..., Any],
) -> None:
    # Long sweep interval: this test is about adoption by the reconciler, not the sweeper.
    operator = operator_factory(sweep_interval=3600)
    api.create_sv(ns, "r", dagId="etl", runId="r1", storageClassName=rwx_class)
    pvc = pvc_of(api, ns, "r", wait_for)
    api.delete_sv(ns, "r")  # the orchestrator clears the run ...
    api.create_sv(ns, "r-again", dagId="etl", runId="r1", storageClassName=rwx_class)
    new_uid = wait_for(lambda: (api.get_sv(ns, "r-again") or {}).get("metadata", {}).get("uid"))

    def adopted() -> bool:
        current = api.live_pvc(ns, pvc.metadata.name)
        refs = current.metadata.owner_references if current else []
        return bool(refs) and refs[0].uid == new_uid

    wait_for(adopted, what="the PVC to be re-attached to the new StagingVolume")
    [same] = api.staging_pvcs(ns)
    assert same.metadata.uid == pvc.metadata.uid
    assert same.metadata.annotations["strata.dev/staging-volume"] == "r-again"
    assert "Adopted" in wait_for(lambda: api.event_reasons(ns, "r-again"))
    assert operator.calls("create", "persistentvolumeclaims")[-1].name == pvc.metadata.name
    assert len(operator.calls("create", "persistentvolumeclaims")) == 1


def test_ttl_expiry_deletes_the_pvc(
    api: Api, ns: str, rwx_class: str, operator: Operator, wait_for: Callable[..., Any]
) -> None:
    api.create_sv(
        ns, "r", dagId="etl", runId="r1", storageClassName=rwx_class, ttlSecondsAfterFinished=2
    )
    pvc = pvc_of(api, ns, "r", wait_for)
    api.patch_sv(ns, "r", {"runPhase": "Succeeded"})
    status = wait_for(lambda: api.sv_status(ns, "r").get("expiresAt") and api.sv_status(ns, "r"))
    assert (ts(status["expiresAt"]) - ts(status["finishedAt"])).total_seconds() == 2

    wait_for(lambda: api.pvc_deleted(ns, pvc.metadata.name), timeout=20, what="PVC deleted")
    wait_for(lambda: api.sv_status(ns, "r").get("phase") == "Expired", what="phase Expired")
    ready = condition(api.sv_status(ns, "r"), "Ready")
    assert ready is not None and ready["reason"] == "Expired"
    reasons = wait_for(
        lambda: (
            {"RunFinished", "Expired"} <= set(api.event_reasons(ns, "r"))
            and api.event_reasons(ns, "r")
        )
    )
    assert "RunFinished" in reasons
    assert operator.deps is not None
    registry = operator.deps.metrics.registry
    deleted = registry.get_sample_value(
        "strata_operator_staging_pvcs_deleted_total", {"cause": "expired"}
    )
    assert deleted == 1


def test_running_again_cancels_expiry(
    api: Api, ns: str, rwx_class: str, operator: Operator, wait_for: Callable[..., Any]
) -> None:
    api.create_sv(
        ns, "r", dagId="etl", runId="r1", storageClassName=rwx_class, ttlSecondsAfterFinished=5
    )
    pvc = pvc_of(api, ns, "r", wait_for)
    api.patch_sv(ns, "r", {"runPhase": "Failed"})
    expires = ts(wait_for(lambda: api.sv_status(ns, "r").get("expiresAt")))
    api.patch_sv(ns, "r", {"runPhase": "Running"})  # a retry of the run
    wait_for(
        lambda: (
            not api.sv_status(ns, "r").get("expiresAt")
            and not api.sv_status(ns, "r").get("finishedAt")
        ),
        what="expiry cleared",
    )
    # Let the old expiry time pass by a few sweeps: the PVC must survive.
    wait_for(lambda: datetime.now(expires.tzinfo) > expires, timeout=15)
    moment = time.monotonic()
    wait_for(lambda: operator.sweeps_since(moment) >= 3, what="three sweeps after expiry")
    same = api.live_pvc(ns, pvc.metadata.name)
    assert same is not None and same.metadata.uid == pvc.metadata.uid
    assert api.sv_status(ns, "r")["phase"] == "Pending"
    assert operator.calls("delete", "persistentvolumeclaims") == []
    assert "ExpiryCancelled" in wait_for(lambda: api.event_reasons(ns, "r"))


def test_pvc_in_use_survives_expiry_until_the_pod_is_gone(
    api: Api, ns: str, rwx_class: str, operator: Operator, wait_for: Callable[..., Any]
) -> None:
    api.create_sv(
        ns, "r", dagId="etl", runId="r1", storageClassName=rwx_class, ttlSecondsAfterFinished=1
    )
    pvc = pvc_of(api, ns, "r", wait_for)
    api.create_pod_using(ns, "task-1", pvc.metadata.name)
    api.patch_sv(ns, "r", {"runPhase": "Succeeded"})

    blocked = wait_for(
        lambda: condition(api.sv_status(ns, "r"), "ExpiryBlocked"), what="ExpiryBlocked"
    )
    assert blocked["status"] == "True"
    assert "task-1" in blocked["message"]
    assert "ExpiryDeferred" in wait_for(lambda: api.event_reasons(ns, "r"))
    moment = time.monotonic()
    wait_for(lambda: operator.sweeps_since(moment) >= 2, what="two more sweeps")
    assert api.live_pvc(ns, pvc.metadata.name) is not None
    assert api.event_reasons(ns, "r").count("ExpiryDeferred") == 1  # one Event, not one per sweep

    api.delete_pod(ns, "task-1")
    wait_for(lambda: api.pvc_deleted(ns, pvc.metadata.name), what="PVC deleted after the pod")
    wait_for(lambda: api.sv_status(ns, "r").get("phase") == "Expired")
    assert condition(api.sv_status(ns, "r"), "ExpiryBlocked") is None


def test_orphaned_pvc_is_swept(
    api: Api, ns: str, rwx_class: str, operator: Operator, wait_for: Callable[..., Any]
) -> None:
    api.create_sv(ns, "r", dagId="etl", runId="r1", storageClassName=rwx_class)
    pvc = pvc_of(api, ns, "r", wait_for)
    api.create_pod_using(ns, "straggler", pvc.metadata.name)
    api.delete_sv(ns, "r")  # no garbage collector runs here: the sweeper must do it
    wait_for(lambda: "OrphanInUse" in api.event_reasons(ns, pvc.metadata.name))
    assert api.live_pvc(ns, pvc.metadata.name) is not None
    api.delete_pod(ns, "straggler")
    wait_for(lambda: api.pvc_deleted(ns, pvc.metadata.name), what="orphan deleted")
    assert "OrphanDeleted" in wait_for(lambda: api.event_reasons(ns, pvc.metadata.name))


def test_foreign_pvc_with_the_same_name_is_never_touched(
    api: Api, ns: str, rwx_class: str, operator: Operator, wait_for: Callable[..., Any]
) -> None:
    name = pvc_name("strata", "etl", "r1")
    api.core.create_namespaced_persistent_volume_claim(
        ns,
        {
            "metadata": {"name": name},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    api.create_sv(ns, "r", dagId="etl", runId="r1", storageClassName=rwx_class)
    wait_for(lambda: api.sv_status(ns, "r").get("phase") == "Failed", what="phase Failed")
    ready = condition(api.sv_status(ns, "r"), "Ready")
    assert ready is not None and ready["reason"] == "PVCConflict"
    assert "not the Strata staging PVC" in ready["message"]
    assert api.live_pvc(ns, name).spec.access_modes == ["ReadWriteOnce"]
    assert operator.calls("patch", "persistentvolumeclaims") == []


def test_two_staging_volumes_for_one_run_conflict(
    api: Api, ns: str, rwx_class: str, operator: Operator, wait_for: Callable[..., Any]
) -> None:
    api.create_sv(ns, "first", dagId="etl", runId="r1", storageClassName=rwx_class)
    pvc = pvc_of(api, ns, "first", wait_for)
    api.create_sv(ns, "second", dagId="etl", runId="r1", storageClassName=rwx_class)
    wait_for(lambda: api.sv_status(ns, "second").get("phase") == "Failed")
    ready = condition(api.sv_status(ns, "second"), "Ready")
    assert ready is not None and "belongs to StagingVolume first" in ready["message"]
    assert api.live_pvc(ns, pvc.metadata.name).metadata.owner_references[0].name == "first"


def test_growing_an_unbound_claim_is_reported(
    api: Api, ns: str, rwx_class: str, operator: Operator, wait_for: Callable[..., Any]
) -> None:
    api.create_sv(ns, "r", dagId="etl", runId="r1", storageClassName=rwx_class)
    pvc = pvc_of(api, ns, "r", wait_for)
    api.patch_sv(ns, "r", {"size": "2Gi"})
    resized = wait_for(lambda: condition(api.sv_status(ns, "r"), "Resized"), what="Resized")
    assert resized["status"] == "False"
    assert "cannot grow from 1Gi to 2Gi" in resized["message"]
    assert "ResizeRejected" in wait_for(lambda: api.event_reasons(ns, "r"))
    assert api.live_pvc(ns, pvc.metadata.name).spec.resources.requests["storage"] == "1Gi"


# -- storage classes ------------------------------------------------------------------------


def test_named_class_without_rwx_fails_fast(
    api: Api, ns: str, classes: Classes, operator: Operator, wait_for: Callable[..., Any]
) -> None:
    block = classes.make("ebs.csi.aws.com")
    api.create_sv(ns, "r", dagId="etl", runId="r1", storageClassName=block)
    wait_for(lambda: api.sv_status(ns, "r").get("phase") == "Failed", what="phase Failed")
    ready = condition(api.sv_status(ns, "r"), "Ready")
    assert ready is not None and ready["reason"] == "StorageClassNotRWX"
    assert block in ready["message"] and "ebs.csi.aws.com" in ready["message"]
    assert "StorageClassNotRWX" in wait_for(lambda: api.event_reasons(ns, "r"))
    warnings = [e for e in api.events(ns, "r") if e.reason == "StorageClassNotRWX"]
    assert warnings[0].type == "Warning"
    assert api.staging_pvcs(ns) == []
    assert operator.calls("create", "persistentvolumeclaims") == []


def test_no_rwx_class_at_all_fails_listing_every_class(
    api: Api, ns: str, classes: Classes, operator: Operator, wait_for: Callable[..., Any]
) -> None:
    from strata_operator.staging.storageclass import rwx_verdict

    block_default = classes.make("ebs.csi.aws.com", default=True)
    vetoed = classes.make("nfs.csi.k8s.io", rwx="false")
    existing = api.storage.list_storage_class().items
    others = [
        sc.metadata.name
        for sc in existing
        if sc.metadata.name not in classes.created
        and rwx_verdict(api.storage.api_client.sanitize_for_serialization(sc))[0]
    ]
    assert not others, f"precondition: no other RWX-capable classes, found {others}"

    api.create_sv(ns, "r", dagId="etl", runId="r1")  # no class: the default RWX one, if any
    wait_for(lambda: api.sv_status(ns, "r").get("phase") == "Failed", what="phase Failed")
    ready = condition(api.sv_status(ns, "r"), "Ready")
    assert ready is not None and ready["reason"] == "NoRWXStorageClass"
    for sc in existing:
        assert sc.metadata.name in ready["message"]
    assert f"{block_default} (ebs.csi.aws.com, default): provisioner" in ready["message"]
    assert f'{vetoed} (nfs.csi.k8s.io): strata.dev/rwx="false"' in ready["message"]
    assert api.staging_pvcs(ns) == []

    # The admin fixes it; editing the StagingVolume (or a restart) reconciles again.
    fixed = classes.make("example.com/fancy-nfs", rwx="true")
    api.patch_sv(ns, "r", {"storageClassName": fixed})
    pvc = pvc_of(api, ns, "r", wait_for)
    assert pvc.spec.storage_class_name == fixed
    wait_for(lambda: api.sv_status(ns, "r").get("phase") == "Pending")


def test_annotation_override_makes_a_class_rwx(
    api: Api, ns: str, classes: Classes, operator: Operator, wait_for: Callable[..., Any]
) -> None:
    fancy = classes.make("example.com/fancy-nfs", rwx="true")
    api.create_sv(ns, "r", dagId="etl", runId="r1", storageClassName=fancy)
    pvc = pvc_of(api, ns, "r", wait_for)
    assert pvc.spec.storage_class_name == fancy
    created = [e for e in api.events(ns, "r") if e.reason == "Created"]
    assert created and 'strata.dev/rwx="true"' in created[0].message


def expire(api: Api, ns: str, name: str, wait_for: Callable[..., Any]) -> Any:
    """Create a 1-second-TTL StagingVolume, finish its run and wait until it expired."""
    pvc = pvc_of(api, ns, name, wait_for)
    api.patch_sv(ns, name, {"runPhase": "Succeeded"})
    wait_for(lambda: api.sv_status(ns, name).get("phase") == "Expired", what="phase Expired")
    return pvc


def test_expired_stays_expired_when_the_ttl_is_raised(
    api: Api, ns: str, rwx_class: str, operator: Operator, wait_for: Callable[..., Any]
) -> None:
    api.create_sv(
        ns, "r", dagId="etl", runId="r1", storageClassName=rwx_class, ttlSecondsAfterFinished=1
    )
    expire(api, ns, "r", wait_for)
    api.patch_sv(ns, "r", {"ttlSecondsAfterFinished": 3600})
    wait_for(
        lambda: (
            api.sv_status(ns, "r").get("observedGeneration")
            == api.get_sv(ns, "r")["metadata"]["generation"]
        ),
        what="the TTL edit to be seen",
    )
    status = api.sv_status(ns, "r")
    assert status["phase"] == "Expired"
    assert (ts(status["expiresAt"]) - ts(status["finishedAt"])).total_seconds() == 3600
    assert len(operator.calls("create", "persistentvolumeclaims")) == 1


def test_running_again_after_expiry_brings_a_new_empty_pvc(
    api: Api, ns: str, rwx_class: str, operator: Operator, wait_for: Callable[..., Any]
) -> None:
    api.create_sv(
        ns, "r", dagId="etl", runId="r1", storageClassName=rwx_class, ttlSecondsAfterFinished=1
    )
    old = expire(api, ns, "r", wait_for)
    api.patch_sv(ns, "r", {"runPhase": "Running"})
    # Play the pvc-protection controller (not running here) so the deletion completes.
    api.core.patch_namespaced_persistent_volume_claim(
        old.metadata.name, ns, {"metadata": {"finalizers": None}}
    )
    new = wait_for(
        lambda: (
            (pvc := api.live_pvc(ns, old.metadata.name))
            and pvc.metadata.uid != old.metadata.uid
            and pvc
        ),
        what="a new PVC of the same name",
    )
    assert new.metadata.name == old.metadata.name
    wait_for(lambda: api.sv_status(ns, "r").get("phase") == "Pending", what="phase Pending")
    assert not api.sv_status(ns, "r").get("expiresAt")


def test_labels_alone_never_get_a_pvc_deleted(
    api: Api, ns: str, operator: Operator, wait_for: Callable[..., Any]
) -> None:
    api.core.create_namespaced_persistent_volume_claim(
        ns,
        {
            "metadata": {
                "name": "lookalike",
                "labels": {
                    "app.kubernetes.io/managed-by": "strata",
                    "app.kubernetes.io/component": "staging",
                },
            },
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    moment = time.monotonic()
    wait_for(lambda: operator.sweeps_since(moment) >= 3, what="three sweeps")
    assert api.live_pvc(ns, "lookalike") is not None
    assert operator.calls("delete", "persistentvolumeclaims") == []
