"""GC (INVARIANT 7): space comes back; nothing live or young is ever swept."""

from __future__ import annotations

import pytest

from strata.chunks.layout import CHUNKS, TREES, chunk_key, tree_key, version_key
from strata.meta.gc import GcError, collect_garbage
from strata.meta.head import Retention
from strata.meta.repo import Repository
from strata.meta.version import Stats, manifest_body, write_manifest
from strata.store.base import ObjectInfo, StoreWrapper
from strata.store.memory import MemoryStore

from .conftest import Builder, FakeClock

GRACE = 3600.0


def age_all(memory: MemoryStore, clock: FakeClock) -> None:
    """Make every object older than the grace window."""
    for info in list(memory.list()):
        memory.set_mtime(info.key, clock.now - 2 * GRACE)


def keys(memory: MemoryStore, prefix: str = "") -> set[str]:
    return {i.key for i in memory.list(prefix)}


def assert_readable(repo: Repository, ref: str) -> None:
    """Every tree and chunk of a version is still in the store."""
    root = repo.version(ref).root
    for _, e in repo.trees.walk(root):
        for b in repo.trees.iter_blocks(e.content):
            assert repo.store.exists(chunk_key(b.hash)), b


def chunk_of(data: bytes) -> str:
    from strata.chunks.hashing import content_hash

    return chunk_key(content_hash(data))


def test_deleted_volume_is_freed_and_others_are_kept(
    repo: Repository, build: Builder, memory: MemoryStore, clock: FakeClock
) -> None:
    repo.create_volume("a")
    repo.create_volume("b")
    build.commit("a", [build.dir("d", [build.file("x", b"only in a"), build.file("s", b"shared")])])
    build.commit("b", [build.file("y", b"only in b"), build.file("s", b"shared")])
    repo.delete_volume("a")
    age_all(memory, clock)
    report = collect_garbage(repo, grace=GRACE)
    assert not memory.exists(chunk_of(b"only in a"))
    assert memory.exists(chunk_of(b"only in b")) and memory.exists(chunk_of(b"shared"))
    assert report.chunks_freed == 1 and report.trees_freed == 2  # a's root and d
    assert report.bytes_freed > 0 and report.chunks_live == 2
    assert_readable(repo, "b")
    again = collect_garbage(repo, grace=GRACE)
    assert again.objects_freed == 0


def test_deleted_version_is_freed(
    repo: Repository, build: Builder, memory: MemoryStore, clock: FakeClock
) -> None:
    repo.create_volume("a")
    v1 = build.commit("a", [build.file("x", b"old")])
    clock.advance(1)
    build.commit("a", [build.file("x", b"new")])
    age_all(memory, clock)
    assert collect_garbage(repo, grace=GRACE).objects_freed == 0  # v1 still exists
    repo.delete_version(v1.ref)
    collect_garbage(repo, grace=GRACE)
    assert not memory.exists(chunk_of(b"old"))
    assert memory.exists(chunk_of(b"new"))
    assert_readable(repo, "a")


def test_fork_keeps_its_source_alive(
    repo: Repository, build: Builder, memory: MemoryStore, clock: FakeClock
) -> None:
    repo.create_volume("a")
    v1 = build.commit("a", [build.file("x", b"base")])
    clock.advance(1)
    build.commit("a", [build.file("x", b"later")])
    repo.fork(v1.ref, "f")
    repo.delete_volume("a")
    age_all(memory, clock)
    collect_garbage(repo, grace=GRACE)
    assert memory.exists(chunk_of(b"base")) and memory.exists(version_key("a", v1.id))
    assert not memory.exists(chunk_of(b"later"))
    assert_readable(repo, "f")
    repo.delete_volume("f")
    clock.advance(1)
    report = collect_garbage(repo, grace=GRACE)
    assert report.versions_expired == [v1.ref]  # a leftover nobody needs any more
    assert not memory.exists(chunk_of(b"base"))


def test_young_objects_are_never_swept(
    repo: Repository, build: Builder, memory: MemoryStore, clock: FakeClock
) -> None:
    repo.create_volume("a")
    build.commit("a", [build.file("x", b"data")])
    repo.delete_volume("a")
    age_all(memory, clock)
    in_flight = build.root([build.file("new", b"uploading, not committed yet")])
    for key in (tree_key(in_flight), chunk_of(b"uploading, not committed yet")):
        memory.set_mtime(key, clock.now - GRACE + 1)
    report = collect_garbage(repo, grace=GRACE)
    assert report.kept_young == 2 and report.objects_freed == 2
    assert memory.exists(tree_key(in_flight))
    assert memory.exists(chunk_of(b"uploading, not committed yet"))


def test_dry_run_changes_nothing(
    repo: Repository, build: Builder, memory: MemoryStore, clock: FakeClock
) -> None:
    repo.create_volume("a", retention=Retention(keep_last=1))
    build.commit("a", [build.file("x", b"1")])
    clock.advance(1)
    build.commit("a", [build.file("x", b"2")])
    repo.create_volume("b")
    build.commit("b", [build.file("y", b"3")])
    repo.delete_volume("b")
    age_all(memory, clock)
    before = {i.key: memory.get(i.key) for i in memory.list()}
    dry = collect_garbage(repo, grace=GRACE, dry_run=True)
    assert {i.key: memory.get(i.key) for i in memory.list()} == before
    assert dry.dry_run and len(dry.versions_expired) == 1 and dry.chunks_freed == 2
    real = collect_garbage(repo, grace=GRACE)
    assert (real.versions_expired, real.chunks_freed, real.trees_freed, real.bytes_freed) == (
        dry.versions_expired,
        dry.chunks_freed,
        dry.trees_freed,
        dry.bytes_freed,
    )


def test_retention_keep_last(
    repo: Repository, build: Builder, memory: MemoryStore, clock: FakeClock
) -> None:
    repo.create_volume("a", retention=Retention(keep_last=2))
    vs = []
    for i in range(5):
        clock.advance(10)
        vs.append(build.commit("a", [build.file("x", f"v{i}".encode())]))
    repo.fork(vs[0].ref, "fork-of-oldest")  # another volume's history needs vs[0]
    age_all(memory, clock)
    report = collect_garbage(repo, grace=GRACE)
    assert sorted(report.versions_expired) == sorted(v.ref for v in vs[1:3])
    assert [v.ref for v in repo.log("a")] == [vs[4].ref, vs[3].ref, vs[0].ref]
    assert not memory.exists(chunk_of(b"v1")) and not memory.exists(chunk_of(b"v2"))
    assert memory.exists(chunk_of(b"v0"))
    assert_readable(repo, "fork-of-oldest")


def test_retention_max_age(
    repo: Repository, build: Builder, memory: MemoryStore, clock: FakeClock
) -> None:
    repo.create_volume("a", retention=Retention(max_age=1000))
    old = build.commit("a", [build.file("x", b"old")])
    clock.advance(500)
    mid = build.commit("a", [build.file("x", b"mid")])
    clock.advance(600)
    head = build.commit("a", [build.file("x", b"head")])
    clock.advance(5000)  # everything is old now, but the head is never expired
    age_all(memory, clock)
    report = collect_garbage(repo, grace=GRACE)
    assert sorted(report.versions_expired) == sorted([old.ref, mid.ref])
    assert repo.log("a") == [head]


def test_orphan_manifest_of_a_crashed_commit(
    repo: Repository, build: Builder, memory: MemoryStore, clock: FakeClock
) -> None:
    repo.create_volume("a")
    root = build.root([build.file("x", b"crashed")])
    body = manifest_body(
        volume="a", root=root, parent=None, message="", author="", writer="w", epoch=1,
        created=clock.now, stats=Stats(),
    )  # fmt: skip
    orphan = write_manifest(memory, "a", body)
    assert collect_garbage(repo, grace=GRACE).versions_expired == []  # young: maybe landing
    age_all(memory, clock)
    report = collect_garbage(repo, grace=GRACE)
    assert report.versions_expired == [orphan.ref]
    assert not memory.exists(chunk_of(b"crashed"))


def test_missing_tree_stops_the_sweep(
    repo: Repository, build: Builder, memory: MemoryStore, clock: FakeClock
) -> None:
    repo.create_volume("a")
    sub = build.dir("d", [build.file("x", b"x")])
    build.commit("a", [sub])
    repo.create_volume("b")
    build.commit("b", [build.file("garbage", b"g")])
    repo.delete_volume("b")
    memory.delete(tree_key(sub.tree))
    repo.trees.cache = type(repo.trees.cache)()  # forget parsed nodes
    age_all(memory, clock)
    before = keys(memory)
    with pytest.raises(GcError, match="missing"):
        collect_garbage(repo, grace=GRACE)
    assert keys(memory) == before


class CommitDuringListing(StoreWrapper):
    """Runs a callback when GC lists trees/ (a commit landing mid-run)."""

    def __init__(self, inner: MemoryStore) -> None:
        super().__init__(inner)
        self.hook: list[object] = []

    def list(self, prefix: str = ""):  # type: ignore[override]
        items: list[ObjectInfo] = list(super().list(prefix))
        if prefix == TREES and self.hook:
            self.hook.pop()()  # type: ignore[operator]
        return iter(items)


def test_commit_landing_during_gc_keeps_what_it_references(
    memory: MemoryStore, clock: FakeClock
) -> None:
    store = CommitDuringListing(memory)
    repo = Repository.open(store, clock=clock)
    b = Builder(repo)
    repo.create_volume("a")
    build_root = b.root([b.file("x", b"old, unreferenced, reused by dedup")])
    age_all(memory, clock)
    claim = repo.acquire_writer("a", "w", 60)
    store.hook.append(lambda: repo.commit(claim, build_root, "landed mid-gc"))
    collect_garbage(repo, grace=GRACE)
    assert memory.exists(tree_key(build_root))
    assert memory.exists(chunk_of(b"old, unreferenced, reused by dedup"))
    assert_readable(repo, "a")
    assert {k.split("/")[0] for k in keys(memory, CHUNKS)} == {"chunks"}
