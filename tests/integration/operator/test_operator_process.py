"""The operator as it is deployed: ``strata-operator`` as a process, leader election over
a real Lease, /healthz and /metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from kubernetes.client.exceptions import ApiException
from strata_operator import Deps, Settings, app

from tests.harness.process import free_port

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from conftest import Api

pytestmark = pytest.mark.k8s


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except OSError:
        return 0, ""


def lease_holder(api: Api, ns: str, name: str = "strata-operator") -> str | None:
    try:
        return api.coordination.read_namespaced_lease(name, ns).spec.holder_identity
    except ApiException as exc:
        if exc.status == 404:  # not created yet: no holder
            return None
        raise


class Replica:
    """One operator replica: ``app.run`` (leader election on) in a thread."""

    def __init__(self, kube: Any, ns: str, identity: str) -> None:
        self.settings = Settings(
            namespaces=(ns,),
            sweep_interval=1.0,
            metrics_port=0,
            leader_election=True,
            lease_namespace=ns,
            lease_duration=6.0,  # generous: a loaded CI machine must not lose it
            identity=identity,
        )
        self.deps = Deps.build(kube.api_client, self.settings)
        self.stop = threading.Event()
        self.exit_code: int | None = None
        self.thread = threading.Thread(target=self._run, name=f"replica-{identity}")

    def _run(self) -> None:
        self.exit_code = app.run(
            self.settings, self.deps.kube.api_client, stop=self.stop, deps=self.deps
        )

    def leading(self) -> bool:
        return self.deps.metrics.registry.get_sample_value("strata_operator_leader") == 1

    def __enter__(self) -> Replica:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "replica did not stop"


def test_only_the_lease_holder_acts_and_a_standby_takes_over(
    kube: Any, api: Api, ns: str, rwx_class: str, wait_for: Callable[..., Any]
) -> None:
    with Replica(kube, ns, "replica-a") as first:
        wait_for(first.leading, what="replica-a to lead")
        assert lease_holder(api, ns) == "replica-a"
        with Replica(kube, ns, "replica-b") as second:
            api.create_sv(ns, "r1", dagId="etl", runId="r1", storageClassName=rwx_class)
            wait_for(lambda: api.sv_status(ns, "r1").get("pvcName"), what="r1 reconciled")
            # The standby renews nothing and reconciles nothing.
            assert not second.leading()
            assert second.deps.metrics.registry.get_sample_value(
                "strata_operator_reconcile_total", {"kind": "StagingVolume"}
            ) in (None, 0.0)
            first.stop.set()  # a clean stop releases the Lease ...
            first.thread.join(timeout=60)
            assert first.exit_code == 0
            wait_for(second.leading, timeout=15, what="replica-b to take over")  # ... at once
            assert lease_holder(api, ns) == "replica-b"
            api.create_sv(ns, "r2", dagId="etl", runId="r2", storageClassName=rwx_class)
            wait_for(lambda: api.sv_status(ns, "r2").get("pvcName"), what="r2 reconciled by b")
        assert second.exit_code == 0


@pytest.fixture
def operator_process(
    kube: Any, ns: str, tmp_path: Path
) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(*extra: str) -> subprocess.Popen[str]:
        script = Path(sys.executable).with_name("strata-operator")
        log = open(tmp_path / f"operator-{len(procs)}.log", "w")  # noqa: SIM115 - closed by the process
        env = {**os.environ, "STRATA_OPERATOR_SWEEP_INTERVAL": "1"}
        proc = subprocess.Popen(
            [str(script), "--kubeconfig", kube.kubeconfig, "--namespace", ns, *extra],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def test_console_script_serves_health_metrics_and_stops_on_sigterm(
    api: Api,
    ns: str,
    rwx_class: str,
    operator_process: Callable[..., subprocess.Popen[str]],
    wait_for: Callable[..., Any],
    tmp_path: Path,
) -> None:
    port = free_port()
    proc = operator_process("--metrics-port", str(port), "--lease-namespace", ns)
    healthz = f"http://127.0.0.1:{port}/healthz"
    body = wait_for(lambda: (reply := http_get(healthz))[0] == 200 and reply[1], what=healthz)
    health = json.loads(body)
    assert health["healthy"] is True
    wait_for(lambda: lease_holder(api, ns) == health["identity"], what="the process to lead")

    api.create_sv(ns, "r", dagId="etl", runId="r1", storageClassName=rwx_class)
    name = wait_for(lambda: api.sv_status(ns, "r").get("pvcName"), what="reconciled")
    assert api.live_pvc(ns, name) is not None
    metrics = wait_for(
        lambda: (
            (text := http_get(f"http://127.0.0.1:{port}/metrics")[1])
            and 'strata_operator_reconcile_total{kind="StagingVolume"}' in text
            and text
        )
    )
    assert "strata_operator_leader 1.0" in metrics
    assert "strata_operator_staging_pvcs_live" in metrics

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, (tmp_path / "operator-0.log").read_text()
    assert not lease_holder(api, ns), "a clean stop releases the Lease"


def test_console_script_rejects_bad_settings(
    operator_process: Callable[..., subprocess.Popen[str]],
) -> None:
    proc = operator_process("--prefix", "Not_Valid")
    assert proc.wait(timeout=60) == 2
