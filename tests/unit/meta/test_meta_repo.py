"""Repository: format marker, volumes, versions, forks, history (invariants 1 and 4)."""

from __future__ import annotations

import json

import pytest

from strata.chunks.layout import FORMAT_KEY, head_key, version_key
from strata.errors import (
    CorruptObject,
    InvalidName,
    UnsupportedFormat,
    VersionNotFound,
    VolumeBusy,
    VolumeExists,
    VolumeNotFound,
)
from strata.meta.head import Retention
from strata.meta.repo import Repository
from strata.meta.version import VersionInUse, decode_manifest
from strata.store.counting import CountingStore
from strata.store.memory import MemoryStore

from .conftest import Builder, FakeClock


def test_open_creates_the_format_marker_once(memory: MemoryStore) -> None:
    Repository.open(memory)
    marker = memory.get(FORMAT_KEY)
    assert json.loads(marker)["format"] == 1
    Repository.open(memory)
    assert memory.get(FORMAT_KEY) == marker


@pytest.mark.parametrize("body", [b'{"format": 2}', b'{"format": "1"}', b"garbage", b"{}"])
def test_open_refuses_other_formats(memory: MemoryStore, body: bytes) -> None:
    memory.put(FORMAT_KEY, body)
    with pytest.raises(UnsupportedFormat, match="format"):
        Repository.open(memory)


def test_create_list_and_inspect_volumes(repo: Repository) -> None:
    repo.create_volume("b", retention=Retention(keep_last=3), high_throughput=True)
    repo.create_volume("a")
    assert repo.list_volumes() == ["a", "b"]
    info = repo.volume("b")
    assert info.head is None and info.version_count == 0 and info.writer is None
    assert info.settings.retention.keep_last == 3 and info.settings.high_throughput
    with pytest.raises(VolumeExists, match="'a' already exists"):
        repo.create_volume("a")
    with pytest.raises(VolumeNotFound):
        repo.volume("zz")
    with pytest.raises(InvalidName):
        repo.create_volume("Not_Valid")


def test_commit_log_and_version(repo: Repository, build: Builder, clock: FakeClock) -> None:
    repo.create_volume("data")
    v1 = build.commit("data", [build.file("a", b"1")], "first")
    clock.advance(10)
    v2 = build.commit("data", [build.file("a", b"2")], "second")
    assert len(v1.id) == 16 and v1.ref == f"data@{v1.id}"
    assert v2.parent == v1.ref and v1.parent is None
    assert [v.message for v in repo.log("data")] == ["second", "first"]
    assert repo.log("data", limit=1) == [v2]
    assert repo.version("data") == v2
    assert repo.version(v1.ref) == v1
    assert repo.volume("data").version_count == 2
    with pytest.raises(VersionNotFound):
        repo.version("data@aaaaaaaaaaaaaaaa")


def test_versions_are_immutable_and_identified_by_content(
    repo: Repository, build: Builder, memory: MemoryStore, clock: FakeClock
) -> None:
    """INVARIANT 4: no operation rewrites a manifest; a tampered one is refused."""
    repo.create_volume("data")
    v1 = build.commit("data", [build.file("a", b"1")], "first")
    before = {i.key: memory.get(i.key) for i in memory.list("versions/")}
    # everything else the API can do (the ImmutableGuardStore fails any overwrite)
    clock.advance(5)
    build.commit("data", [build.file("a", b"2")])
    repo.fork(v1.ref, "copy")
    build.commit("copy", [build.file("b", b"3")])
    repo.delete_volume("copy")
    for key, body in before.items():
        assert memory.get(key) == body
    body = before[version_key("data", v1.id)]
    assert decode_manifest("data", v1.id, body) == v1
    tampered = body.replace(b'"first"', b'"evil!"')
    with pytest.raises(CorruptObject, match="does not hash"):
        decode_manifest("data", v1.id, tampered)


def _big_volume(repo: Repository, build: Builder, n: int) -> None:
    files = [build.file(f"f{i:06d}") for i in range(n)]  # empty files: no chunks needed
    files.append(build.file("data", b"some bytes"))
    build.commit("big", [build.dir("d", files)], "100k files")


def test_fork_is_o1(repo: Repository, build: Builder, counting: CountingStore) -> None:
    """INVARIANT 1: a fork writes no chunk/tree/manifest; cost does not grow with size."""
    repo.create_volume("big")
    _big_volume(repo, build, 100_000)
    repo.create_volume("empty")
    costs = {}
    for src in ("big", "empty"):
        counting.reset()
        repo.fork(src, f"fork-of-{src}")
        c = counting.snapshot()
        costs[src] = c
        assert c.puts_by_prefix == {"heads/": 1}
        assert c.bytes_put_by_prefix["heads/"] < 1000
    big, empty = costs["big"], costs["empty"]
    assert big.by_op == empty.by_op
    assert big.gets_by_prefix == empty.gets_by_prefix
    assert big.total == empty.total <= 4
    # by explicit version: one more read (the manifest), still constant
    counting.reset()
    repo.fork(repo.version("big").ref, "fork-by-id")
    assert counting.snapshot().puts_by_prefix == {"heads/": 1}
    assert counting.snapshot().total <= 5
    assert repo.diff("big", "fork-of-big").added == []
    assert repo.trees.resolve(repo.version("fork-of-big").root, "d/data") is not None


def test_log_follows_forks(repo: Repository, build: Builder, clock: FakeClock) -> None:
    repo.create_volume("a")
    v1 = build.commit("a", [build.file("x", b"1")], "a1")
    clock.advance(1)
    v2 = build.commit("a", [build.file("x", b"2")], "a2")
    head = repo.fork(v1.ref, "b")
    assert head.version == v1.ref and head.forked_from == v1.ref
    assert repo.log("b") == [v1]
    clock.advance(1)
    v3 = build.commit("b", [build.file("x", b"3")], "b1")
    assert v3.parent == v1.ref
    repo.fork("b", "c")
    clock.advance(1)
    v4 = build.commit("c", [build.file("x", b"4")], "c1")
    assert [v.ref for v in repo.log("c")] == [v4.ref, v3.ref, v1.ref]
    assert [v.ref for v in repo.log("a")] == [v2.ref, v1.ref]
    assert repo.version(f"c@{v1.id}") == v1  # reachable through the fork
    with pytest.raises(VersionNotFound):
        repo.version(f"c@{v2.id}")  # a's later version is not c's history
    assert repo.volume("c").version_count == 3
    # the source goes away: the fork's history and data stay
    repo.delete_volume("a")
    repo.delete_volume("b")
    assert [v.ref for v in repo.log("c")] == [v4.ref, v3.ref, v1.ref]


def test_fork_errors(repo: Repository, build: Builder) -> None:
    repo.create_volume("a")
    repo.create_volume("b")
    with pytest.raises(VolumeExists):
        repo.fork("a", "b")
    with pytest.raises(VolumeNotFound):
        repo.fork("nope", "c")
    with pytest.raises(VersionNotFound):
        repo.fork("a@aaaaaaaaaaaaaaaa", "c")
    assert repo.fork("a", "c").version is None  # forking an empty volume is fine


def test_delete_and_recreate_volume(repo: Repository, build: Builder, memory: MemoryStore) -> None:
    repo.create_volume("a")
    v1 = build.commit("a", [build.file("x", b"1")])
    epoch = repo.head("a").epoch
    claim = repo.acquire_writer("a", "w", 60)
    with pytest.raises(VolumeBusy, match="'w'"):
        repo.delete_volume("a")
    repo.delete_volume("a", force=True)
    assert repo.list_volumes() == []
    assert not memory.exists(version_key("a", v1.id))
    with pytest.raises(VolumeNotFound):
        repo.delete_volume("a")
    repo.delete_volume("a", missing_ok=True)
    repo.create_volume("a")
    assert repo.head("a").epoch > epoch + 1  # old writers stay fenced
    assert repo.volume("a").head is None
    assert json.loads(memory.get(head_key("a")))["deleted"] is False
    del claim


def test_delete_version_grafts_history(repo: Repository, build: Builder, clock: FakeClock) -> None:
    repo.create_volume("a")
    vs = []
    for i in range(5):
        clock.advance(1)
        vs.append(build.commit("a", [build.file("x", bytes([i]))], f"m{i}"))
    with pytest.raises(VersionInUse, match="head"):
        repo.delete_version("a")
    repo.delete_version(vs[2].ref)
    repo.delete_version(vs[1].ref)
    assert [v.ref for v in repo.log("a")] == [vs[4].ref, vs[3].ref, vs[0].ref]
    repo.delete_version(vs[0].ref)
    assert [v.ref for v in repo.log("a")] == [vs[4].ref, vs[3].ref]
    with pytest.raises(VersionNotFound):
        repo.version(vs[2].ref)


def test_commit_is_o_change(repo: Repository, build: Builder, counting: CountingStore) -> None:
    """INVARIANT 2: one changed file in a 100k-file volume uploads a handful of objects."""
    repo.create_volume("big")
    _big_volume(repo, build, 100_000)
    base = repo.version("big")
    # a fresh process: nothing remembered about which objects exist
    fresh = Repository(counting, clock=repo.clock)
    claim = fresh.acquire_writer("big", "w2", 60)
    counting.reset()
    d = fresh.trees.lookup(base.root, "d")
    assert d is not None
    new_file = Builder(fresh).file("f050000", b"changed")
    new_d = fresh.tree_writer.update_dir(d.tree, {"f050000": new_file})
    new_root = fresh.tree_writer.update_dir(
        base.root, {"d": d.__class__(**{**d.__dict__, "tree": new_d})}
    )
    fresh.commit(claim, new_root, "one file")
    c = counting.snapshot()
    assert c.puts_by_prefix["chunks/"] == 1
    assert c.puts_by_prefix["trees/"] <= 4  # page + index of d, and the root
    assert c.puts_by_prefix["versions/"] == 1 and c.puts_by_prefix["heads/"] == 1
    assert c.gets_by_prefix["trees/"] <= 5
    assert repo.diff(base.ref, "big").modified == ["d/f050000"]
