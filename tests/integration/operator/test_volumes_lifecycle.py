"""Volumes and VolumeVersions by the real operator (kopf in-process) on the real
apiserver, backed by a real Strata store (a ``file://`` store in tmp_path)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from strata.errors import VersionNotFound, VolumeNotFound
from strata.meta.repo import Repository
from strata.store import open_store
from tests.integration.operator.volume_helpers import (
    LiveWriter,
    Objects,
    commit,
    object_count,
)

pytestmark = pytest.mark.k8s

VOL, VV = "volumes", "volumeversions"


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"file://{tmp_path / 'store'}"


@pytest.fixture
def repo(store_url: str) -> Repository:
    """The test's own handle on the operator's store."""
    return Repository.open(open_store(store_url))


@pytest.fixture
def objects(api: Any) -> Objects:
    return Objects(api.custom)


@pytest.fixture
def volume_operator(operator_factory: Callable[..., Any], store_url: str) -> Callable[..., Any]:
    """``volume_operator(**settings)``: an operator on the test store, fast loops."""

    def start(**overrides: Any) -> Any:
        values = {"store": store_url, "mirror_interval": 0.3, "seal_timeout": 3.0}
        values.update(overrides)
        return operator_factory(**values)

    return start


def ready_version(objects: Objects, ns: str, name: str) -> dict[str, Any] | None:
    status = objects.status(ns, VV, name)
    return status if status.get("readyToUse") else None


def make_volume(objects: Objects, ns: str, name: str, wait_for: Any, **spec: Any) -> dict:
    objects.volume(ns, name, **spec)
    return wait_for(lambda: objects.ready_volume(ns, name), what=f"Volume {name} Ready")


def test_volume_is_created_empty_and_commits_are_mirrored(
    api: Any, ns: str, objects: Objects, repo: Repository, volume_operator: Any, wait_for: Any
) -> None:
    volume_operator()
    status = make_volume(objects, ns, "data", wait_for)
    store = f"{ns}--data"
    assert status["storeVolume"] == store
    assert status.get("head") is None and status["versionCount"] == 0
    assert status["conditions"][0]["type"] == "Ready"
    assert status["observedGeneration"] == 1
    assert repo.volume(store).head is None
    assert "strata.dev/volume" in objects.get(ns, VOL, "data")["metadata"]["finalizers"]

    v1 = commit(repo, store, {"a.txt": b"hello"}, "first")
    name1 = f"data-{v1.id}"
    vv1 = wait_for(lambda: ready_version(objects, ns, name1), what="mirrored v1")
    assert vv1["versionId"] == v1.id and vv1.get("parent") is None and vv1["size"] == 5
    v2 = commit(repo, store, {"a.txt": b"hello", "b.txt": b"world!"}, "second")
    vv2 = wait_for(lambda: ready_version(objects, ns, f"data-{v2.id}"), what="mirrored v2")
    assert vv2["versionId"] == v2.id and vv2["parent"] == v1.id and vv2["size"] == 11
    body = objects.get(ns, VV, f"data-{v2.id}")
    assert body["spec"] == {"volume": "data", "message": "second"}
    assert body["metadata"]["labels"]["strata.dev/volume"] == "data"
    assert body["metadata"]["annotations"]["strata.dev/mirrored"] == "true"
    assert body["metadata"]["ownerReferences"][0]["name"] == "data"

    status = wait_for(
        lambda: (s := objects.status(ns, VOL, "data")).get("head") == v2.id and s,
        what="Volume head v2",
    )
    assert (status["size"], status["files"], status["versionCount"]) == (11, 3, 2)
    wait_for(lambda: "Sealed" in api.event_reasons(ns, f"data-{v2.id}"), what="Sealed event")
    assert {"Created", "Ready"} <= set(api.event_reasons(ns, "data"))


def test_forks_from_a_version_and_a_volume_copy_nothing(
    ns: str, objects: Objects, repo: Repository, volume_operator: Any, wait_for: Any
) -> None:
    volume_operator()
    make_volume(objects, ns, "src", wait_for)
    store = f"{ns}--src"
    v1 = commit(repo, store, {f"f{i}": bytes([i]) * 1000 for i in range(20)}, "one")
    wait_for(lambda: ready_version(objects, ns, f"src-{v1.id}"), what="mirrored v1")
    v2 = commit(repo, store, {"only": b"x" * 100}, "two")
    wait_for(lambda: objects.status(ns, VOL, "src").get("head") == v2.id, what="src at v2")
    before = object_count(repo)

    objects.volume(ns, "from-version", source={"volumeVersion": f"src-{v1.id}"})
    objects.volume(ns, "from-volume", source={"volume": "src"})
    a = wait_for(lambda: objects.ready_volume(ns, "from-version"), what="fork from version")
    b = wait_for(lambda: objects.ready_volume(ns, "from-volume"), what="fork from volume")
    assert a["head"] == v1.id and a["versionCount"] == 1 and a["size"] == 20_000
    assert b["head"] == v2.id and b["versionCount"] == 2
    assert repo.volume(f"{ns}--from-version").head == v1
    assert object_count(repo) == before  # O(1): no chunk or tree written
    # A fork's inherited history belongs to its source: nothing mirrored for it.
    assert objects.versions(ns, "from-version") == []


def test_fork_waits_for_its_source(
    ns: str, objects: Objects, repo: Repository, volume_operator: Any, wait_for: Any
) -> None:
    volume_operator()
    objects.volume(ns, "early", source={"volume": "later"})
    wait_for(
        lambda: objects.status(ns, VOL, "early").get("phase") == "Pending",
        what="Pending while the source is missing",
    )
    make_volume(objects, ns, "later", wait_for)
    status = wait_for(lambda: objects.ready_volume(ns, "early"), timeout=30, what="fork done")
    assert status.get("head") is None


def test_user_version_of_an_idle_volume_binds_to_head(
    api: Any, ns: str, objects: Objects, repo: Repository, volume_operator: Any, wait_for: Any
) -> None:
    volume_operator()
    make_volume(objects, ns, "idle", wait_for)
    objects.version(ns, "too-early", "idle", "nothing here")
    error = wait_for(
        lambda: objects.status(ns, VV, "too-early").get("error"), what="nothing to seal"
    )
    assert "nothing to seal" in error["message"]
    assert objects.status(ns, VV, "too-early")["readyToUse"] is False

    head = commit(repo, f"{ns}--idle", {"x": b"12345"}, "work")
    wait_for(lambda: ready_version(objects, ns, f"idle-{head.id}"), what="mirrored head")
    objects.version(ns, "release-1", "idle", "release 1")
    status = wait_for(lambda: ready_version(objects, ns, "release-1"), what="bound")
    assert status["versionId"] == head.id and status["size"] == 5
    assert repo.log(f"{ns}--idle") == [head]  # no new commit for an idle head
    wait_for(lambda: "BoundToHead" in api.event_reasons(ns, "release-1"), what="event")
    # Deleting one of the two objects for the version keeps the version for the other.
    objects.delete(ns, VV, "release-1")
    wait_for(lambda: objects.get(ns, VV, "release-1") is None, what="release-1 gone")
    assert repo.version(f"{ns}--idle@{head.id}") == head


def test_user_version_is_sealed_by_the_live_writer(
    ns: str, objects: Objects, repo: Repository, volume_operator: Any, wait_for: Any
) -> None:
    operator = volume_operator()
    make_volume(objects, ns, "busy", wait_for)
    store = f"{ns}--busy"
    with LiveWriter(repo, store) as writer:
        status = wait_for(
            lambda: (s := objects.status(ns, VOL, "busy")).get("writer") and s, what="writer"
        )
        assert status["writer"]["holder"] == "pod-writer"
        objects.version(ns, "checkpoint", "busy", "nightly checkpoint")
        sealed = wait_for(lambda: ready_version(objects, ns, "checkpoint"), what="sealed")
        [version] = writer.sealed
        assert sealed["versionId"] == version.id
        assert repo.version(version.ref).message == "nightly checkpoint"
        assert repo.volume(store).writer.holder == "pod-writer"  # still mounted
        # Mirror passes later, still exactly one VolumeVersion for that version.
        wait_for(lambda: objects.status(ns, VOL, "busy").get("head") == version.id)
        operator.sync_passes(wait_for, 2)
        ids = [v.get("status", {}).get("versionId") for v in objects.versions(ns, "busy")]
        assert ids.count(version.id) == 1


def test_retention_and_gc_remove_old_versions(
    ns: str,
    objects: Objects,
    repo: Repository,
    store_url: str,
    volume_operator: Any,
    wait_for: Any,
) -> None:
    volume_operator(gc_interval=0.5, gc_grace=0.0)
    make_volume(objects, ns, "kept", wait_for, retention={"keepLast": 2})
    store = f"{ns}--kept"
    versions = [commit(repo, store, {"v": f"version {i}".encode() * 100}) for i in range(4)]

    def log_ids() -> list[str]:
        # A fresh handle: a Repository caches manifests, so another process's deletions
        # are not seen by one that read them before (the operator's own GC is).
        return [v.id for v in Repository.open(open_store(store_url)).log(store)]

    wait_for(lambda: len(log_ids()) == 2, timeout=30, what="retention applied")
    assert log_ids() == [versions[3].id, versions[2].id]

    def mirrored() -> set[str]:
        items = objects.versions(ns, "kept")
        return {(v.get("status") or {}).get("versionId") for v in items}

    wait_for(
        lambda: mirrored() == {versions[3].id, versions[2].id},
        timeout=30,
        what="VolumeVersions of expired versions gone",
    )
    status = wait_for(lambda: (s := objects.status(ns, VOL, "kept"))["versionCount"] == 2 and s)
    assert status["head"] == versions[3].id


def test_deleting_a_volume_removes_it_from_the_store(
    ns: str,
    objects: Objects,
    repo: Repository,
    store_url: str,
    volume_operator: Any,
    wait_for: Any,
) -> None:
    volume_operator()
    make_volume(objects, ns, "doomed", wait_for)
    store = f"{ns}--doomed"
    v1 = commit(repo, store, {"a": b"1"})
    v2 = commit(repo, store, {"a": b"2"})
    wait_for(lambda: len(objects.versions(ns, "doomed")) == 2, what="two mirrored")
    objects.delete(ns, VOL, "doomed")
    wait_for(lambda: objects.get(ns, VOL, "doomed") is None, what="Volume gone")
    wait_for(lambda: objects.versions(ns, "doomed") == [], what="its VolumeVersions gone")
    fresh = Repository.open(open_store(store_url))
    with pytest.raises(VolumeNotFound):
        fresh.volume(store)
    for v in (v1, v2):
        with pytest.raises(VersionNotFound):
            fresh.version(v.ref)


def test_deleting_the_source_version_of_a_fork_is_deferred(
    api: Any,
    ns: str,
    objects: Objects,
    repo: Repository,
    store_url: str,
    volume_operator: Any,
    wait_for: Any,
) -> None:
    volume_operator()
    make_volume(objects, ns, "base", wait_for)
    store = f"{ns}--base"
    v1 = commit(repo, store, {"a": b"1"})
    source = f"base-{v1.id}"
    wait_for(lambda: ready_version(objects, ns, source), what="mirrored v1")
    objects.volume(ns, "child", source={"volumeVersion": source})
    wait_for(lambda: objects.ready_volume(ns, "child"), what="child forked")
    v2 = commit(repo, store, {"a": b"2"})  # v1 is no longer base's head, only child's
    wait_for(lambda: ready_version(objects, ns, f"base-{v2.id}"), what="mirrored v2")

    objects.delete(ns, VV, source)
    wait_for(lambda: "DeletionDeferred" in api.event_reasons(ns, source), what="deferred")
    body = objects.get(ns, VV, source)
    assert body is not None and body["metadata"].get("deletionTimestamp")
    assert repo.version(v1.ref) == v1

    objects.delete(ns, VOL, "child")
    wait_for(lambda: objects.get(ns, VV, source) is None, timeout=30, what="deferred done")
    fresh = Repository.open(open_store(store_url))
    with pytest.raises(VersionNotFound):
        fresh.version(v1.ref)
    assert fresh.version(v2.ref) == v2
