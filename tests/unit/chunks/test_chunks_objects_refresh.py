"""ContentStore refreshes: a dedup hit on an object older than the session rewrites it.

GC keeps every object whose mtime is at or after a live writer claim's ``since``
(strata.meta.gc). A writer that dedups against an older object must therefore renew
that object's mtime, or GC may sweep it before the commit that references it. These
tests drive the store's mtimes with a fake clock and count requests: blocks written in
the session cost nothing extra, only pre-session objects cost a HEAD (and a rewrite if
old). The stack includes ImmutableGuardStore, so every rewrite is of identical bytes.
"""

from __future__ import annotations

import pytest

from strata.chunks.hashing import content_hash
from strata.chunks.layout import chunk_key, tree_key
from strata.chunks.objects import ContentStore
from strata.store.counting import CountingStore, ImmutableGuardStore
from strata.store.memory import MemoryStore

from .conftest import FakeClock

DATA = b"block data " * 1000
KEY = chunk_key(content_hash(DATA))


@pytest.fixture
def clocked(clock: FakeClock) -> MemoryStore:
    return MemoryStore(clock=clock)


@pytest.fixture
def store(clocked: MemoryStore) -> CountingStore:
    return CountingStore(ImmutableGuardStore(clocked))


def requests(store: CountingStore) -> dict[str, int]:
    """The requests made since the last call, by operation."""
    counts = dict(store.counts.by_op)
    store.reset()
    return counts


def test_objects_written_in_the_session_never_cost_a_head(
    store: CountingStore, clock: FakeClock
) -> None:
    cs = ContentStore(store, clock=clock)
    cs.put_chunk(DATA)
    cs.put_tree(b"page")
    clock.advance(10_000)  # however long the session lasts
    cs.put_chunk(DATA)
    cs.put_tree(b"page")
    assert requests(store) == {"put": 2}
    stats = cs.stats()
    assert (stats.objects_written, stats.dedup_hits, stats.objects_refreshed) == (2, 2, 0)


@pytest.mark.parametrize("kind", ["chunk", "tree"])
def test_dedup_hit_on_an_object_older_than_the_session_rewrites_it(
    store: CountingStore, clocked: MemoryStore, clock: FakeClock, kind: str
) -> None:
    key = KEY if kind == "chunk" else tree_key(content_hash(DATA))
    earlier = ContentStore(store, clock=clock)
    getattr(earlier, f"put_{kind}")(DATA)  # e.g. by a version since deleted
    blob = clocked.get(key)
    clock.advance(7200)
    cs = ContentStore(store, clock=clock)  # a session starting now
    requests(store)
    getattr(cs, f"put_{kind}")(DATA)
    assert requests(store) == {"put": 2, "head": 1}  # lost if_absent, HEAD, rewrite
    assert clocked.head(key).mtime == clock.now
    assert clocked.get(key) == blob
    stats = cs.stats()
    assert (stats.objects_written, stats.dedup_hits) == (0, 1)
    assert (stats.objects_refreshed, stats.bytes_refreshed) == (1, len(blob))
    clock.advance(10_000)
    getattr(cs, f"put_{kind}")(DATA)  # refreshed in this session: remembered as fresh
    assert requests(store) == {}


def test_dedup_hit_on_an_object_from_within_the_session_is_only_checked(
    store: CountingStore, clocked: MemoryStore, clock: FakeClock
) -> None:
    cs = ContentStore(store, clock=clock)
    clock.advance(5)
    ContentStore(store, clock=clock).put_chunk(DATA)  # another process, during the session
    requests(store)
    cs.put_chunk(DATA)
    assert requests(store) == {"put": 1, "head": 1}  # lost if_absent, HEAD: young enough
    assert clocked.head(KEY).mtime == clock.now
    assert cs.stats().objects_refreshed == 0
    cs.put_chunk(DATA)
    assert requests(store) == {}


def test_remembered_digests_from_before_a_new_session_are_checked_again(
    store: CountingStore, clocked: MemoryStore, clock: FakeClock
) -> None:
    cs = ContentStore(store, clock=clock)
    cs.put_chunk(DATA)
    clock.advance(7200)
    cs.set_refresh_before()  # a new writer claim, e.g. after a remount
    requests(store)
    cs.put_chunk(DATA)
    assert requests(store) == {"head": 1, "put": 1}  # known present: no if_absent first
    assert clocked.head(KEY).mtime == clock.now
    assert cs.stats().objects_refreshed == 1
    cs.put_chunk(DATA)
    assert requests(store) == {}


@pytest.mark.parametrize(("written", "rewritten"), [(-10.0, True), (+10.0, False)])
def test_a_digest_known_only_from_a_read_is_checked_before_dedup(
    store: CountingStore,
    clocked: MemoryStore,
    clock: FakeClock,
    written: float,
    rewritten: bool,
) -> None:
    """A read proves presence, not age: the object may belong to a deleted version."""
    session = clock.now
    clock.advance(written)
    digest = ContentStore(store, clock=clock).put_chunk(DATA)
    clock.advance(100)
    cs = ContentStore(store, clock=clock, refresh_before=session)
    assert cs.get_chunk(digest) == DATA
    requests(store)
    cs.put_chunk(DATA)
    assert requests(store) == ({"head": 1, "put": 1} if rewritten else {"head": 1})
    assert cs.stats().objects_refreshed == int(rewritten)
    cs.put_chunk(DATA)
    assert requests(store) == {}


def test_a_remembered_object_that_was_swept_is_written_again(
    store: CountingStore, clocked: MemoryStore, clock: FakeClock
) -> None:
    cs = ContentStore(store, clock=clock)
    cs.put_chunk(DATA)
    clocked.delete(KEY)  # GC in another process swept it
    clock.advance(7200)
    cs.set_refresh_before()
    cs.put_chunk(DATA)
    assert clocked.head(KEY).mtime == clock.now
    stats = cs.stats()
    assert (stats.objects_written, stats.dedup_hits, stats.objects_refreshed) == (2, 0, 0)


def test_has_fresh_answers_whether_gc_keeps_the_object_for_this_session(
    store: CountingStore, clock: FakeClock
) -> None:
    digest = ContentStore(store, clock=clock).put_chunk(DATA)
    clock.advance(7200)
    cs = ContentStore(store, clock=clock)
    assert cs.has_chunk(digest)
    assert not cs.has_chunk(digest, fresh=True)  # present, but older than the session
    assert not cs.has_tree(digest, fresh=True)
    cs.put_chunk(DATA)  # what a caller does on False: re-put, which refreshes
    requests(store)
    assert cs.has_chunk(digest, fresh=True)
    assert requests(store) == {}


def test_without_memory_every_put_asks_and_only_old_objects_are_rewritten(
    store: CountingStore, clock: FakeClock
) -> None:
    ContentStore(store, clock=clock).put_chunk(DATA)
    clock.advance(7200)
    cs = ContentStore(store, clock=clock, remember=0)
    requests(store)
    cs.put_chunk(DATA)
    cs.put_chunk(DATA)
    assert requests(store) == {"put": 3, "head": 2}  # the second one is fresh: no rewrite
    assert cs.stats().objects_refreshed == 1


def test_refresh_before_defaults_to_creation_and_only_moves_forward(
    clock: FakeClock,
) -> None:
    cs = ContentStore(MemoryStore(), clock=clock)
    assert cs.refresh_before == clock.now
    cs.set_refresh_before(clock.now + 50)
    cs.set_refresh_before(clock.now)  # an older session sharing the store: keep the later
    assert cs.refresh_before == clock.now + 50
    clock.advance(100)
    cs.set_refresh_before()
    assert cs.refresh_before == clock.now
    assert ContentStore(MemoryStore(), refresh_before=5.0).refresh_before == 5.0
