"""The pure parts of StagingVolume handling: expiry, conditions, PVC shape, pod usage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from strata_operator import conditions
from strata_operator.staging.reconcile import expiry_schedule
from strata_operator.staging.resources import (
    StagingView,
    controller_owner,
    desired_pvc,
    pods_using,
    same_run,
)

NOW = datetime(2026, 11, 20, 12, 0, 0, 500000, tzinfo=UTC)


def body(**spec: Any) -> dict[str, Any]:
    status = spec.pop("status", {})
    return {
        "apiVersion": "strata.dev/v1alpha1",
        "kind": "StagingVolume",
        "metadata": {"name": "sv", "namespace": "ns", "uid": "u-1", "generation": 3},
        "spec": {"dagId": "etl", "runId": "r1", **spec},
        "status": status,
    }


def test_running_has_no_expiry() -> None:
    assert expiry_schedule(StagingView.from_body(body()), NOW) == (None, None)


def test_terminal_starts_the_countdown_from_now() -> None:
    view = StagingView.from_body(body(runPhase="Succeeded", ttlSecondsAfterFinished=60))
    finished, expires = expiry_schedule(view, NOW)
    assert finished == NOW.replace(microsecond=0)
    assert expires == finished + timedelta(seconds=60)


def test_finished_at_is_kept_and_ttl_changes_move_expiry() -> None:
    status = {"finishedAt": "2026-11-20T10:00:00Z"}
    view = StagingView.from_body(
        body(runPhase="Failed", ttlSecondsAfterFinished=7200, status=status)
    )
    finished, expires = expiry_schedule(view, NOW)
    assert finished == datetime(2026, 11, 20, 10, tzinfo=UTC)
    assert expires == datetime(2026, 11, 20, 12, tzinfo=UTC)


def test_defaults_match_the_crd() -> None:
    view = StagingView.from_body(body())
    assert (view.size, view.ttl, view.run_phase, view.storage_class) == (
        "1Gi",
        86400,
        "Running",
        "",
    )


def test_desired_pvc() -> None:
    view = StagingView.from_body(body(runId="scheduled__2026-11-20T00:00:00+00:00", size="5Gi"))
    pvc = desired_pvc(view, "pvc-name", "nfs")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["spec"]["storageClassName"] == "nfs"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "5Gi"
    meta = pvc["metadata"]
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "strata"
    assert meta["labels"]["strata.dev/dag"] == "etl"
    assert meta["labels"]["strata.dev/run"].startswith("scheduled-2026-11-20t00-00-00-00-00-")
    assert meta["annotations"]["strata.dev/run-id"] == "scheduled__2026-11-20T00:00:00+00:00"
    assert controller_owner(pvc) == view.owner_reference()
    assert same_run(pvc, view)
    other = StagingView.from_body(body(runId="r2"))
    assert not same_run(pvc, other)


def pod(name: str, claim: str, phase: str = "Pending") -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": claim}}]},
        "status": {"phase": phase},
    }


def test_pods_using_counts_only_unfinished_pods_of_that_claim() -> None:
    pods = [
        pod("b", "c1"),
        pod("a", "c1", "Running"),
        pod("done", "c1", "Succeeded"),
        pod("failed", "c1", "Failed"),
        pod("other", "c2"),
        {"metadata": {"name": "novol"}, "spec": {}},
    ]
    assert pods_using(pods, "c1") == ["a", "b"]
    assert pods_using(pods, "c3") == []


def test_condition_transition_time_moves_only_when_status_flips() -> None:
    first = conditions.set_condition(None, "Ready", False, "Pending", "m1", generation=1, now=NOW)
    later = NOW + timedelta(minutes=5)
    same = conditions.set_condition(
        first, "Ready", False, "StillPending", "m2", generation=2, now=later
    )
    assert same[0]["lastTransitionTime"] == first[0]["lastTransitionTime"]
    assert same[0]["reason"] == "StillPending" and same[0]["observedGeneration"] == 2
    flipped = conditions.set_condition(same, "Ready", True, "Bound", "m3", generation=2, now=later)
    assert flipped[0]["lastTransitionTime"] == "2026-11-20T12:05:00Z"
    both = conditions.set_condition(flipped, "Other", True, "X", "y", generation=2, now=later)
    assert [c["type"] for c in both] == ["Ready", "Other"]
    assert [c["type"] for c in conditions.remove(both, "Ready")] == ["Other"]
