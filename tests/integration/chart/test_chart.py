"""The Helm chart, rendered by the real helm and checked by the real apiserver."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.helm

VALUES = [
    "--set",
    "store.url=s3://volumes/prod?region=eu-west-1",
    "--set",
    "store.credentialsSecret=strata-s3",
]


def _helm(tool, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("helm"), *args], capture_output=True, text=True, timeout=120)


def _render(tool, chart: Path, *extra: str) -> list[dict]:
    out = _helm(
        tool,
        "template",
        "strata",
        str(chart),
        "--namespace",
        "strata-system",
        "--kube-version",
        "1.36.3",
        *VALUES,
        *extra,
    )
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.fixture
def chart(repo_root: Path) -> Path:
    return repo_root / "charts" / "strata"


def test_chart_crds_are_the_repository_crds(chart: Path, repo_root: Path) -> None:
    """crds/ is the one source; the chart ships byte-identical copies."""
    source = {p.name: p.read_bytes() for p in (repo_root / "crds").glob("*.yaml")}
    shipped = {p.name: p.read_bytes() for p in (chart / "crds").glob("*.yaml")}
    assert source, "no CRDs in crds/"
    assert shipped == source, "chart CRDs differ from crds/: run `make chart-crds`"


def test_chart_lints_and_requires_a_store(tool, chart: Path) -> None:
    lint = _helm(tool, "lint", str(chart), *VALUES)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    missing = _helm(tool, "template", "strata", str(chart), "--kube-version", "1.36.3")
    assert missing.returncode != 0
    assert "store.url is required" in missing.stderr


def test_operator_runs_unprivileged_with_least_privilege(tool, chart: Path) -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for d in _render(tool, chart)}
    deployment = docs["Deployment", "strata-operator"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = pod["containers"][0]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert "privileged" not in str(container["securityContext"])
    # Credentials only from the Secret, as environment; the store URL carries none.
    assert container["envFrom"] == [{"secretRef": {"name": "strata-s3"}}]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["STRATA_OPERATOR_STORE"] == "s3://volumes/prod?region=eu-west-1"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"

    role = docs["ClusterRole", "strata-operator"]
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
        assert "secrets" not in rule["resources"], "the operator must not read Secrets"
    lease_role = docs["Role", "strata-operator-leader"]
    assert lease_role["metadata"]["namespace"] == "strata-system"
    assert lease_role["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "create", "update", "patch"],
        }
    ]


def test_rendered_chart_is_accepted_by_the_apiserver(tool, chart: Path, kube) -> None:
    """Server-side dry run: every object validates against the real API schemas."""
    out = _helm(
        tool,
        "template",
        "strata",
        str(chart),
        "--namespace",
        "default",
        "--kube-version",
        "1.36.3",
        "--include-crds",
        *VALUES,
    )
    assert out.returncode == 0, out.stderr
    applied = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=out.stdout)
    for kind in (
        "deployment.apps/strata-operator",
        "clusterrole.rbac.authorization.k8s.io/strata-operator",
        "customresourcedefinition.apiextensions.k8s.io/volumes.strata.dev",
    ):
        assert kind in applied.stdout, applied.stdout


def test_operator_accepts_the_settings_the_chart_renders(tool, chart: Path) -> None:
    """Every STRATA_OPERATOR_* value the chart sets parses in the operator itself."""
    from strata_operator.settings import ENV_PREFIX, Settings

    docs = {(d["kind"], d["metadata"]["name"]): d for d in _render(tool, chart)}
    container = docs["Deployment", "strata-operator"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env["POD_NAMESPACE"] = "strata-system"
    settings = Settings.from_env(env)
    assert settings.store == "s3://volumes/prod?region=eu-west-1"
    assert settings.gc_interval == 3600 and settings.mirror_interval == 5
    assert settings.lease_namespace == "strata-system"
    known = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.__dataclass_fields__}
    assert {k for k in env if k.startswith(ENV_PREFIX)} <= known
