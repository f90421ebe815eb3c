"""The CRD manifests in crds/: shape, documentation and validation rules, read as YAML.

The apiserver tests (tests/integration/operator) prove the rules behave; these prove the
manifests say what docs/crds.md promises, without a cluster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

CRDS = Path(__file__).resolve().parents[3] / "crds"
EXPECTED = {
    "volumes.yaml": ("Volume", "vol"),
    "volumeversions.yaml": ("VolumeVersion", "volver"),
    "stagingvolumes.yaml": ("StagingVolume", "stv"),
}


def load(file: str) -> dict[str, Any]:
    return yaml.safe_load((CRDS / file).read_text())


def schema(file: str) -> dict[str, Any]:
    return load(file)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def walk(node: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    found = [(path, node)]
    for name, child in (node.get("properties") or {}).items():
        found += walk(child, f"{path}.{name}")
    if "items" in node:
        found += walk(node["items"], f"{path}[]")
    return found


def test_one_file_per_crd() -> None:
    assert sorted(p.name for p in CRDS.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("file", sorted(EXPECTED))
def test_names_scope_and_version(file: str) -> None:
    crd = load(file)
    kind, short = EXPECTED[file]
    spec = crd["spec"]
    assert spec["group"] == "strata.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == kind
    assert spec["names"]["shortNames"] == [short]
    assert crd["metadata"]["name"] == f"{spec['names']['plural']}.strata.dev"
    [version] = spec["versions"]
    assert version["name"] == "v1alpha1"
    assert version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns[-1] == "Age"
    assert len(columns) >= 4


@pytest.mark.parametrize("file", sorted(EXPECTED))
def test_every_field_has_a_description(file: str) -> None:
    undocumented = [
        path
        for path, node in walk(schema(file), kind_of(file))
        if path != f"{kind_of(file)}.metadata" and not node.get("description")
    ]
    assert not undocumented, f"fields without description (kubectl explain): {undocumented}"


def kind_of(file: str) -> str:
    return EXPECTED[file][0]


def rules(node: dict[str, Any]) -> list[str]:
    return [r["rule"] for r in node.get("x-kubernetes-validations", [])]


def test_every_rule_has_a_human_message() -> None:
    for file in EXPECTED:
        for path, node in walk(schema(file), kind_of(file)):
            for rule in node.get("x-kubernetes-validations", []):
                assert len(rule.get("message", "")) > 20, f"{file} {path}: {rule['rule']}"


def test_volume_rules_and_defaults() -> None:
    root = schema("volumes.yaml")
    spec = root["properties"]["spec"]
    assert any("metadata.name" in r for r in rules(root))
    assert any("oldSelf.source" in r for r in rules(spec))
    assert any("volumeVersion" in r for r in rules(spec["properties"]["source"]))
    props = spec["properties"]
    assert props["highThroughput"]["default"] is False
    assert props["onUnmount"]["enum"] == ["commit", "keep"]
    assert props["onUnmount"]["default"] == "commit"
    mount = props["mountOptions"]["properties"]
    assert mount["maxUploads"]["default"] == 50
    for cache in ("attrCache", "entryCache", "dirEntryCache"):
        assert mount[cache]["default"] == 60
    assert props["retention"]["properties"]["keepLast"]["minimum"] == 1
    status = root["properties"]["status"]["properties"]
    for field in ("phase", "head", "size", "files", "writer", "conditions", "observedGeneration"):
        assert field in status


def test_volumeversion_spec_is_immutable() -> None:
    root = schema("volumeversions.yaml")
    assert rules(root["properties"]["spec"]) == ["self == oldSelf"]
    assert root["properties"]["spec"]["required"] == ["volume"]
    status = root["properties"]["status"]["properties"]
    assert set(status) == {"readyToUse", "versionId", "parent", "creationTime", "size", "error"}


def test_stagingvolume_rules_and_defaults() -> None:
    spec = schema("stagingvolumes.yaml")["properties"]["spec"]
    props = spec["properties"]
    assert spec["required"] == ["dagId", "runId"]
    assert rules(props["dagId"]) == ["self == oldSelf"]
    assert rules(props["runId"]) == ["self == oldSelf"]
    assert rules(props["ttlSecondsAfterFinished"]) == ["self >= 0"]
    assert props["ttlSecondsAfterFinished"]["default"] == 86400
    assert props["size"]["default"] == "1Gi"
    assert props["runPhase"]["enum"] == ["Running", "Succeeded", "Failed"]
    assert props["runPhase"]["default"] == "Running"
    assert "prefix" not in props  # an operator setting, not per object
    status = schema("stagingvolumes.yaml")["properties"]["status"]["properties"]
    assert status["phase"]["enum"] == ["Pending", "Bound", "Expired", "Failed"]
