"""Fixtures for the operator against the real kube-apiserver (``kube`` from tests/conftest.py).

There is no controller-manager, scheduler or kubelet behind that apiserver: PVCs never
bind (tests patch ``status.phase`` themselves), pods never start (but a Pending pod
still counts as using its PVC), ownerReference GC never runs and namespaces never
finish terminating, so every test works in a fresh namespace of its own.

Waiting is always polling the API against a deadline (``wait_for``), never a fixed sleep.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kopf.testing import KopfRunner
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from strata_operator import Deps, Settings, build_registry, kopf_settings
from strata_operator.kube import Request

REPO = Path(__file__).resolve().parents[3]
CRDS = REPO / "crds"
EXAMPLES = REPO / "examples"
GROUP, VERSION = "strata.dev", "v1alpha1"
T = TypeVar("T")


def poll(
    predicate: Callable[[], T], timeout: float = 60.0, interval: float = 0.1, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail with the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what or predicate}; last: {last!r}"
            )
        time.sleep(interval)


class Api:
    """The test's own (independent of the operator's) view of the cluster."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.storage = client.StorageV1Api(api_client)
        self.coordination = client.CoordinationV1Api(api_client)

    # StagingVolumes
    def create_sv(self, ns: str, name: str, **spec: Any) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "StagingVolume",
            "metadata": {"name": name},
            "spec": spec,
        }
        return self.custom.create_namespaced_custom_object(
            GROUP, VERSION, ns, "stagingvolumes", body
        )

    def get_sv(self, ns: str, name: str) -> dict[str, Any] | None:
        try:
            return self.custom.get_namespaced_custom_object(
                GROUP, VERSION, ns, "stagingvolumes", name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def sv_status(self, ns: str, name: str) -> dict[str, Any]:
        return (self.get_sv(ns, name) or {}).get("status") or {}

    def patch_sv(self, ns: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return self.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            ns,
            "stagingvolumes",
            name,
            {"spec": spec},
            _content_type="application/merge-patch+json",
        )

    def delete_sv(self, ns: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, "stagingvolumes", name)

    # PVCs
    def get_pvc(self, ns: str, name: str) -> client.V1PersistentVolumeClaim | None:
        try:
            return self.core.read_namespaced_persistent_volume_claim(name, ns)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def live_pvc(self, ns: str, name: str) -> client.V1PersistentVolumeClaim | None:
        """The PVC if it exists and nobody asked to delete it."""
        pvc = self.get_pvc(ns, name)
        return pvc if pvc is not None and pvc.metadata.deletion_timestamp is None else None

    def pvc_deleted(self, ns: str, name: str) -> bool:
        """Gone, or deletion requested (the pvc-protection finalizer is never removed here,
        because its controller is part of the controller-manager that does not run)."""
        return self.live_pvc(ns, name) is None

    def staging_pvcs(self, ns: str) -> list[client.V1PersistentVolumeClaim]:
        selector = "app.kubernetes.io/managed-by=strata,app.kubernetes.io/component=staging"
        return self.core.list_namespaced_persistent_volume_claim(ns, label_selector=selector).items

    # Pods, events, classes
    def create_pod_using(self, ns: str, name: str, claim: str) -> None:
        self.core.create_namespaced_pod(
            ns,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name},
                "spec": {
                    "containers": [
                        {
                            "name": "task",
                            "image": "busybox",
                            "env": [{"name": "STRATA_STAGING_DIR", "value": "/staging"}],
                            "volumeMounts": [{"name": "staging", "mountPath": "/staging"}],
                        }
                    ],
                    "volumes": [{"name": "staging", "persistentVolumeClaim": {"claimName": claim}}],
                },
            },
        )

    def delete_pod(self, ns: str, name: str) -> None:
        # Never scheduled, so the apiserver deletes it at once (no kubelet to wait for).
        self.core.delete_namespaced_pod(name, ns, grace_period_seconds=0)

    def events(self, ns: str, involved: str | None = None) -> list[client.CoreV1Event]:
        items = self.core.list_namespaced_event(ns).items
        return [e for e in items if involved is None or e.involved_object.name == involved]

    def event_reasons(self, ns: str, involved: str | None = None) -> list[str]:
        return [e.reason for e in self.events(ns, involved)]


@dataclass
class Classes:
    """StorageClasses a test creates (cluster-scoped, so they are deleted afterwards)."""

    api: Api
    created: list[str] = field(default_factory=list)

    def make(
        self,
        provisioner: str,
        *,
        default: bool = False,
        rwx: str | None = None,
        name: str | None = None,
    ) -> str:
        name = name or f"op-sc-{uuid.uuid4().hex[:8]}"
        annotations = {}
        if default:
            annotations["storageclass.kubernetes.io/is-default-class"] = "true"
        if rwx is not None:
            annotations["strata.dev/rwx"] = rwx
        self.api.storage.create_storage_class(
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {"name": name, "annotations": annotations},
                "provisioner": provisioner,
            }
        )
        self.created.append(name)
        return name

    def cleanup(self) -> None:
        for name in self.created:
            try:
                self.api.storage.delete_storage_class(name)
            except ApiException as exc:
                if exc.status != 404:
                    raise


class Operator:
    """One in-process operator (kopf in a thread via KopfRunner) for one namespace.

    ``requests`` records every API call the operator's ``kube`` module makes, so tests
    can assert what it did (e.g. that a restart never creates a second PVC).
    """

    def __init__(self, api_client: client.ApiClient, settings: Settings) -> None:
        self.api_client = api_client
        self.settings = settings
        self.requests: list[tuple[float, Request]] = []
        self._lock = threading.Lock()
        self.deps: Deps | None = None
        self._runner: KopfRunner | None = None
        self.started_at = 0.0  # time.monotonic() of the latest start

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append((time.monotonic(), request))

    def calls(self, verb: str, resource: str, since: float = 0.0) -> list[Request]:
        with self._lock:
            return [
                r
                for t, r in self.requests
                if t >= since and r.verb == verb and r.resource == resource
            ]

    def start(self) -> Operator:
        assert self._runner is None, "already running"
        self.started_at = time.monotonic()
        self.deps = Deps.build(self.api_client, self.settings, on_request=self._record)
        args = ["run", "--standalone", "--log-format=plain"]
        for ns in self.settings.namespaces:
            args += ["--namespace", ns]
        self._runner = KopfRunner(
            args,
            registry=build_registry(self.deps),
            settings=kopf_settings(self.settings),
            timeout=60,
        )
        self._runner.__enter__()
        return self

    def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            runner.__exit__(None, None, None)
            assert runner.exit_code == 0, runner.output

    def report(self) -> str:
        """The operator's last API calls, for a failing test's report (kopf's log is
        already in pytest's captured log)."""
        with self._lock:
            recent = self.requests[-80:]
        return "\n".join(
            f"{t - self.started_at:8.3f}s {r.verb} {r.resource} {r.namespace or ''}/{r.name or ''}"
            for t, r in recent
        )

    def restart(self) -> Operator:
        self.stop()
        return self.start()

    def sync_passes(self, wait_for: Callable[..., Any], count: int) -> None:
        """Wait until ``count`` more Volume sync passes began (each lists Volumes)."""
        moment = time.monotonic()
        wait_for(
            lambda: len(self.calls("list", "volumes", since=moment)) >= count,
            what=f"{count} volume sync passes",
        )

    def sweeps_since(self, moment: float) -> int:
        """How many sweeps began after ``moment`` (each starts by listing StagingVolumes)."""
        return len(self.calls("list", "stagingvolumes", since=moment))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failing test's report shows what each of its operators asked the API server."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for index, op in enumerate(getattr(item, "strata_operators", [])):
            report.sections.append(
                (f"operator {index} API calls (seconds since start)", op.report())
            )


@pytest.fixture(name="wait_for", scope="session")
def wait_for_fixture() -> Callable[..., Any]:
    """``wait_for(predicate, timeout=30, what=...)``: poll the API until true."""
    return poll


@pytest.fixture(scope="session")
def crds(kube: Any) -> None:
    """Install the three CRDs from crds/ with the real kubectl, once per session."""
    kube.kubectl("apply", "-f", str(CRDS))
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRDS))
    # Established is not yet published in OpenAPI (which kubectl explain reads).
    for kind in ("volume", "volumeversion", "stagingvolume"):
        poll(
            lambda kind=kind: kube.kubectl("explain", f"{kind}.spec", check=False).returncode == 0,
            timeout=60,
            interval=0.5,
            what=f"the {kind} schema in the apiserver's OpenAPI",
        )


@pytest.fixture
def api(kube: Any) -> Api:
    return Api(kube.api_client)


@pytest.fixture
def ns(kube: Any, crds: None, api: Api) -> Iterator[str]:
    """A fresh namespace (it never finishes terminating here, so names are unique)."""
    name = f"op-{uuid.uuid4().hex[:10]}"
    api.core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    api.core.delete_namespace(name)


@pytest.fixture
def classes(api: Api) -> Iterator[Classes]:
    made = Classes(api)
    yield made
    made.cleanup()


@pytest.fixture
def rwx_class(classes: Classes) -> str:
    """An RWX-capable class (NFS CSI provisioner) for tests that name their class."""
    return classes.make("nfs.csi.k8s.io")


@pytest.fixture
def operator_factory(
    kube: Any, ns: str, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Operator]]:
    """``operator_factory(**settings)`` starts an operator for ``ns``; all stop at teardown."""
    started: list[Operator] = []

    def start(**overrides: Any) -> Operator:
        values: dict[str, Any] = {
            "namespaces": (ns,),
            "sweep_interval": 1.0,
            "metrics_port": None,
            "leader_election": False,
            "lease_namespace": ns,
        }
        values.update(overrides)
        op = Operator(kube.api_client, Settings(**values)).start()
        started.append(op)
        return op

    request.node.strata_operators = started  # for pytest_runtest_makereport below
    yield start
    for op in reversed(started):
        op.stop()


@pytest.fixture
def operator(operator_factory: Callable[..., Operator]) -> Operator:
    return operator_factory()
