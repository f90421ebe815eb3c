"""Pure logic of Volumes and VolumeVersions: store names, status, mirror plans."""

from __future__ import annotations

import re
from typing import Any

import pytest
from strata_operator.settings import Settings as OperatorSettings
from strata_operator.settings import SettingsError, redact_url
from strata_operator.volumes.naming import store_volume_name, version_object_name
from strata_operator.volumes.view import (
    ANN_MIRRORED,
    ANN_VERSION_ID,
    plan_mirror,
    retention_of,
    version_status,
    volume_status,
)

from strata.meta.head import Retention, Settings, WriterState
from strata.meta.repo import VolumeInfo
from strata.meta.version import Stats, Version

LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def test_store_name_is_namespace_and_name() -> None:
    assert store_volume_name("team-a", "datasets") == "team-a--datasets"


@pytest.mark.parametrize(
    ("ns", "name"),
    [("a" * 40, "b" * 40), ("x--y", "z"), ("x", "y--z"), ("n" * 63, "v" * 63), ("a-", "b")],
)
def test_hashed_store_names_are_labels(ns: str, name: str) -> None:
    result = store_volume_name(ns, name)
    assert len(result) <= 63 and LABEL.match(result)
    assert "---" in result
    assert store_volume_name(ns, name) == result  # deterministic


def test_store_names_never_collide() -> None:
    # "a--b"/"c" and "a"/"b--c" would both be "a--b--c" in the plain form.
    assert store_volume_name("a--b", "c") != store_volume_name("a", "b--c")
    assert store_volume_name("ns", "x" * 60) != store_volume_name("ns", "x" * 61)
    pairs = [(f"ns{i}", f"vol{j}") for i in range(30) for j in range(30)]
    assert len({store_volume_name(n, v) for n, v in pairs}) == len(pairs)


def test_version_object_names_fit() -> None:
    assert version_object_name("data", "abcdefghijklmnop") == "data-abcdefghijklmnop"
    long = version_object_name("v" * 63, "abcdefghijklmnop")
    assert len(long) == 63 and long.endswith("-abcdefghijklmnop")


def test_retention_from_spec() -> None:
    assert retention_of({}) == Retention()
    spec = {"retention": {"keepLast": 3, "maxAge": "1d12h"}}
    assert retention_of(spec) == Retention(keep_last=3, max_age=129600.0)


def _version(vid: str, parent: str | None = None, volume: str = "ns--v") -> Version:
    return Version(
        id=vid,
        volume=volume,
        root="r",
        parent=parent,
        message=f"m {vid}",
        created=1_800_000_000.0,
        stats=Stats(bytes=10, files=2, dirs=1),
    )


def test_status_from_engine_records() -> None:
    v2 = _version("v2", "ns--v@v1")
    writer = WriterState("pod-1", 3, 1_800_000_000.0, 1_800_000_100.0, 100.0)
    info = VolumeInfo("ns--v", v2, 2, Settings(), writer, 3, 0.0, None)
    assert volume_status(info, now=1_800_000_050.0) == {
        "head": "v2",
        "size": 10,
        "files": 3,
        "versionCount": 2,
        "writer": {"holder": "pod-1", "since": "2027-01-15T08:00:00Z"},
    }
    assert volume_status(info, now=1_800_000_200.0)["writer"] is None  # lapsed claim
    assert version_status(v2) == {
        "readyToUse": True,
        "versionId": "v2",
        "parent": "v1",
        "creationTime": "2027-01-15T08:00:00Z",
        "size": 10,
        "error": None,
    }


def _vv(name: str, volume: str, vid: str | None = None, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, **extra.pop("metadata", {})}
    if vid:
        meta["annotations"] = {ANN_MIRRORED: "true", ANN_VERSION_ID: vid}
    return {"metadata": meta, "spec": {"volume": volume}, "status": extra.get("status", {})}


def test_mirror_plan_creates_missing_own_versions_oldest_first() -> None:
    log = [_version("v3", "ns--v@v2"), _version("v2", "ns--v@v1"), _version("v1", "src@v0")]
    log.append(_version("v0", volume="src"))  # inherited from a fork's source
    plan = plan_mirror("ns--v", log, [_vv("v-v2", "v", "v2"), _vv("o-v3", "other", "v3")], "v")
    assert [v.id for v in plan.create] == ["v1", "v3"]
    assert plan.prune == [] and not plan.waiting


def test_mirror_plan_waits_for_pending_seals_and_prunes_gone_versions() -> None:
    log = [_version("v2")]
    pending = {"metadata": {"name": "mine"}, "spec": {"volume": "v"}}
    plan = plan_mirror("ns--v", log, [pending, _vv("v-v1", "v", "v1")], "v")
    assert plan.waiting and plan.create == []
    assert plan.prune == ["v-v1"]
    failed = {**pending, "status": {"error": {"message": "nothing to seal"}}}
    assert not plan_mirror("ns--v", log, [failed], "v").waiting
    deleting = _vv("v-v1", "v", "v1", metadata={"deletionTimestamp": "2026-01-01T00:00:00Z"})
    assert plan_mirror("ns--v", log, [deleting], "v").prune == []


def test_store_settings() -> None:
    env = {
        "STRATA_OPERATOR_STORE": "s3://b/p?endpoint=http://x:9000&region=r",
        "STRATA_OPERATOR_GC_INTERVAL": "6h",
        "STRATA_OPERATOR_GC_GRACE": "30m",
        "STRATA_OPERATOR_MIRROR_INTERVAL": "2",
    }
    settings = OperatorSettings.from_env(env)
    assert settings.store == env["STRATA_OPERATOR_STORE"]
    assert (settings.gc_interval, settings.gc_grace, settings.mirror_interval) == (
        21600.0,
        1800.0,
        2.0,
    )
    assert "s3://b" not in repr(settings)  # the URL stays out of reprs and logs
    with pytest.raises(SettingsError):
        OperatorSettings(gc_interval=0)


def test_redacted_store_urls_hide_credentials() -> None:
    assert redact_url("s3://key:secret@b/p?endpoint=http://x&token=t") == (
        "s3://b/p?endpoint=…&token=…"
    )
    assert redact_url("file:///var/strata") == "file:///var/strata"
