"""The small shared pieces: API error meaning, kopf login, the metrics/health server."""

from __future__ import annotations

import json
import urllib.request

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from strata_operator.handlers import classify
from strata_operator.kube import Conflict, Forbidden, Invalid, Kube, NotFound, Unavailable
from strata_operator.login import connection_info
from strata_operator.metrics import Metrics, MetricsServer


class Failing:
    """Stands in for a generated API method that fails with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        self.status, self.message = status, message

    def __call__(self, *args: object, **kwargs: object) -> object:
        exc = ApiException(status=self.status, reason="Reason")
        exc.body = json.dumps({"message": self.message})
        raise exc


@pytest.mark.parametrize(
    ("status", "kind", "retryable"),
    [
        (404, NotFound, False),
        (409, Conflict, True),
        (422, Invalid, False),
        (400, Invalid, False),
        (403, Forbidden, True),
        (500, Unavailable, True),
        (429, Unavailable, True),
    ],
)
def test_api_failures_are_born_with_their_meaning(status: int, kind: type, retryable: bool) -> None:
    kube = Kube(client.ApiClient())
    with pytest.raises(kind) as info:
        kube._json("get", "things", "ns", "x", Failing(status, "the server says why"))
    assert info.value.retryable is retryable
    assert str(info.value) == "the server says why"


def test_not_found_reads_as_none() -> None:
    kube = Kube(client.ApiClient())
    assert kube._get("things", "ns", "x", Failing(404, "not found")) is None


def test_every_request_is_seen_first() -> None:
    seen = []
    kube = Kube(client.ApiClient(), on_request=seen.append)
    with pytest.raises(Invalid):
        kube._json("create", "things", "ns", "x", Failing(422, "bad"))
    assert [(r.verb, r.resource, r.namespace, r.name) for r in seen] == [
        ("create", "things", "ns", "x")
    ]


def test_kopf_logs_in_with_the_operator_credentials() -> None:
    config = client.Configuration()
    config.host = "https://10.0.0.1:6443"
    config.ssl_ca_cert = "/ca.crt"
    config.cert_file, config.key_file = "/client.crt", "/client.key"
    config.api_key = {"authorization": "Bearer s3cr3t"}
    info = connection_info(client.ApiClient(config))
    assert info.server == "https://10.0.0.1:6443"
    assert (info.ca_path, info.certificate_path, info.private_key_path) == (
        "/ca.crt",
        "/client.crt",
        "/client.key",
    )
    assert (info.scheme, info.token) == ("Bearer", "s3cr3t")
    assert info.insecure is False


def test_metrics_and_health_endpoints() -> None:
    metrics = Metrics()
    with pytest.raises(RuntimeError), metrics.reconciling("StagingVolume", classify):
        raise RuntimeError("boom")
    with metrics.reconciling("StagingVolume", classify):
        pass
    state = {"healthy": True, "leader": False}
    server = MetricsServer(metrics, 0, lambda: dict(state)).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        with urllib.request.urlopen(f"{base}/metrics") as resp:
            text = resp.read().decode()
        assert 'strata_operator_reconcile_total{kind="StagingVolume"} 2.0' in text
        assert (
            'strata_operator_reconcile_errors_total{error="unexpected",kind="StagingVolume"} 1.0'
            in text
        )
        with urllib.request.urlopen(f"{base}/healthz") as resp:
            assert json.loads(resp.read()) == {"healthy": True, "leader": False}
        state["healthy"] = False
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"{base}/healthz")
        assert info.value.code == 503
    finally:
        server.stop()
