"""etcd + kube-apiserver, started the way controller-runtime's envtest does it.

There is no controller-manager, scheduler or kubelet: objects are stored and
validated (schemas, CEL, RBAC) but pods never run, namespaces never finish
terminating and ownerReference garbage collection never happens.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.harness.certs import make_pki
from tests.harness.process import Component, free_port, port_open
from tests.harness.tools import tool_path


def start_etcd(workdir: Path) -> tuple[Component, str]:
    client_port, peer_port = free_port(), free_port()
    url = f"http://127.0.0.1:{client_port}"
    etcd = Component(
        "etcd",
        [
            tool_path("etcd"),
            "--data-dir",
            workdir / "data",
            "--listen-client-urls",
            url,
            "--advertise-client-urls",
            url,
            "--listen-peer-urls",
            f"http://127.0.0.1:{peer_port}",
            "--initial-advertise-peer-urls",
            f"http://127.0.0.1:{peer_port}",
            "--initial-cluster",
            f"default=http://127.0.0.1:{peer_port}",
            "--unsafe-no-fsync",
            "--log-level",
            "warn",
        ],
        workdir,
    )
    etcd.wait_ready(lambda: _http_ok(f"{url}/health"), timeout=60, what="healthy")
    return etcd, url


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as resp:
            return resp.status == 200
    except OSError:
        return False


@dataclass
class KubeCluster:
    """A running apiserver: its URL, an admin kubeconfig, and a ready client."""

    server: str
    kubeconfig: str
    workdir: Path
    components: list[Component] = field(default_factory=list)
    _api_client: object | None = None

    @property
    def api_client(self):  # -> kubernetes.client.ApiClient
        if self._api_client is None:
            from kubernetes import config

            self._api_client = config.new_client_from_config(config_file=self.kubeconfig)
        return self._api_client

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this cluster; a failure shows its stderr."""
        argv = [str(tool_path("kubectl")), "--kubeconfig", self.kubeconfig, *args]
        proc = subprocess.run(argv, capture_output=True, text=True, input=input, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}"
            )
        return proc

    def stop(self) -> None:
        if self._api_client is not None:
            self._api_client.close()
        for component in reversed(self.components):
            component.stop()


def start_cluster(workdir: Path) -> KubeCluster:
    """Start etcd and kube-apiserver in ``workdir``; raise ComponentError on failure."""
    workdir.mkdir(parents=True, exist_ok=True)
    pki = make_pki(workdir / "pki")
    etcd, etcd_url = start_etcd(workdir / "etcd")
    port = free_port()
    server = f"https://127.0.0.1:{port}"
    try:
        apiserver = Component(
            "kube-apiserver",
            [
                tool_path("kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                f"--cert-dir={workdir / 'apiserver-certs'}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_cert}",
                f"--secure-port={port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true",
                "--disable-admission-plugins=ServiceAccount",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={pki.sa_public}",
                f"--service-account-signing-key-file={pki.sa_private}",
                "--enable-priority-and-fairness=false",
                "--v=1",
            ],
            workdir / "apiserver",
        )
    except BaseException:
        etcd.stop()
        raise
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    context.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    try:
        apiserver.wait_ready(
            lambda: port_open(port) and _http_ok(f"{server}/readyz", context),
            timeout=120,
            what="ready (/readyz)",
        )
    except BaseException:
        etcd.stop()
        raise
    kubeconfig = workdir / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "strata-test",
                        "cluster": {
                            "server": server,
                            "certificate-authority": str(pki.ca_cert),
                        },
                    }
                ],
                "users": [
                    {
                        "name": "admin",
                        "user": {
                            "client-certificate": str(pki.client_cert),
                            "client-key": str(pki.client_key),
                        },
                    }
                ],
                "contexts": [
                    {"name": "strata-test", "context": {"cluster": "strata-test", "user": "admin"}}
                ],
                "current-context": "strata-test",
            }
        )
    )
    return KubeCluster(server, str(kubeconfig), workdir, [etcd, apiserver])


def remove_workdir(workdir: Path) -> None:
    shutil.rmtree(workdir, ignore_errors=True)
