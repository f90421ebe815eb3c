"""CountingStore and ImmutableGuardStore: the wrappers invariant tests stand on."""

from __future__ import annotations

import pytest

from strata.errors import ObjectNotFound, PreconditionFailed
from strata.store.counting import (
    CountingStore,
    ImmutableGuardStore,
    ImmutableOverwrite,
    key_prefix,
)
from strata.store.memory import MemoryStore


def test_key_prefix_is_the_first_segment() -> None:
    assert key_prefix("chunks/ab/abc") == "chunks/"
    assert key_prefix("heads/vol") == "heads/"
    assert key_prefix("strata.json") == "strata.json"
    assert key_prefix("") == ""


def test_requests_are_counted_by_op_and_prefix() -> None:
    store = CountingStore(MemoryStore())
    store.put("chunks/ab/1", b"123", if_absent=True)
    store.put("chunks/ab/2", b"45", if_absent=True)
    with pytest.raises(PreconditionFailed):
        store.put("chunks/ab/2", b"45", if_absent=True)  # a request, even though it lost
    store.put("trees/cd/1", b"t")
    store.get("chunks/ab/1")
    store.get_with_etag("trees/cd/1")
    with pytest.raises(ObjectNotFound):
        store.get("chunks/ab/none")
    assert store.exists("heads/v") is False
    list(store.list("versions/v/"))
    store.delete("trees/cd/1")

    counts = store.counts
    assert counts.by_op == {"put": 4, "get": 3, "head": 1, "list": 1, "delete": 1}
    assert counts.total == 10
    assert counts.puts_by_prefix == {"chunks/": 3, "trees/": 1}
    assert counts.bytes_put_by_prefix == {"chunks/": 7, "trees/": 1}
    assert counts.gets_by_prefix == {"chunks/": 2, "trees/": 1}
    assert counts.bytes_got_by_prefix == {"chunks/": 3, "trees/": 1}
    assert counts.heads_by_prefix == {"heads/": 1}
    assert counts.lists_by_prefix == {"versions/": 1}
    assert counts.deletes_by_prefix == {"trees/": 1}
    assert counts.puts_by_prefix["versions/"] == 0  # asked about, never seen: zero


def test_snapshot_is_frozen_and_reset_starts_over() -> None:
    store = CountingStore(MemoryStore())
    store.put("chunks/a", b"x")
    snap = store.snapshot()
    store.put("chunks/b", b"x")
    assert snap.puts_by_prefix["chunks/"] == 1
    assert store.counts.puts_by_prefix["chunks/"] == 2
    store.reset()
    assert store.counts.total == 0
    store.get("chunks/a")
    assert store.counts.by_op == {"get": 1}
    assert store.counts.puts_by_prefix["chunks/"] == 0


def test_guard_allows_creating_and_mutable_overwrites() -> None:
    store = ImmutableGuardStore(MemoryStore(), mutable_prefixes=("heads/", "requests/"))
    store.put("chunks/ab/1", b"x", if_absent=True)
    store.put("versions/v/1", b"manifest")  # first write without a condition is fine
    etag = store.put("heads/v", b"1")
    store.put("heads/v", b"2", if_match=etag)
    store.put("heads/v", b"3")
    store.put("requests/v/r", b"a")
    store.put("requests/v/r", b"b")
    with pytest.raises(PreconditionFailed):  # cannot overwrite: the store says so, not the guard
        store.put("chunks/ab/1", b"x", if_absent=True)


@pytest.mark.parametrize("how", ["plain-other-bytes", "if_match-same-bytes", "if_match"])
def test_guard_fails_any_overwrite_of_an_immutable_key(how: str) -> None:
    memory = MemoryStore()
    store = ImmutableGuardStore(memory)
    etag = store.put("trees/ab/1", b"tree", if_absent=True)
    with pytest.raises(ImmutableOverwrite, match="immutable object 'trees/ab/1'"):
        if how == "plain-other-bytes":
            store.put("trees/ab/1", b"TREE")
        elif how == "if_match-same-bytes":
            store.put("trees/ab/1", b"tree", if_match=etag)
        else:
            store.put("trees/ab/1", b"TREE", if_match=etag)
    assert memory.get("trees/ab/1") == b"tree"
    assert isinstance(ImmutableOverwrite("x"), AssertionError)  # fails tests like an assert


def test_guard_allows_a_refresh_with_identical_bytes() -> None:
    """Rewriting the same bytes renews the mtime (GC protection) and changes nothing."""
    memory = MemoryStore()
    store = ImmutableGuardStore(memory)
    memory.put("chunks/ab/old", b"written before the guard")  # e.g. by another process
    memory.set_mtime("chunks/ab/old", 1.0)
    store.put("chunks/ab/old", b"written before the guard")
    assert memory.head("chunks/ab/old").mtime > 1.0
    store.put("chunks/ab/1", b"one", if_absent=True)
    store.put("chunks/ab/1", b"one")
    assert memory.get("chunks/ab/1") == b"one"
    memory.put("chunks/ab/2", b"two")  # not seen by the guard: it asks the store
    with pytest.raises(ImmutableOverwrite, match="plain put of other bytes would overwrite"):
        store.put("chunks/ab/2", b"zwei")
    assert memory.get("chunks/ab/2") == b"two"


def test_guard_catches_a_content_address_reused_for_other_bytes() -> None:
    store = ImmutableGuardStore(MemoryStore())
    store.put("chunks/ab/1", b"one", if_absent=True)
    store.delete("chunks/ab/1")  # GC swept it
    store.put("chunks/ab/1", b"one", if_absent=True)  # re-creating the same bytes: fine
    store.delete("chunks/ab/1")
    with pytest.raises(ImmutableOverwrite, match="different bytes"):
        store.put("chunks/ab/1", b"two", if_absent=True)
