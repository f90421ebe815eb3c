"""GC while writers run (INVARIANT 7): a live writer session's objects are never swept.

Store mtimes follow the test's fake clock (``MemoryStore(clock=…)``), so "hours later" is a
clock advance. A *session* is a writer claim plus ``ContentStore.set_refresh_before``
at its start, which is what a writable mount does when it acquires its claim.
"""

from __future__ import annotations

import pytest

from strata.chunks.hashing import content_hash
from strata.chunks.layout import CHUNKS, chunk_key, tree_key
from strata.chunks.objects import ContentStore
from strata.meta.entry import Kind
from strata.meta.gc import DEFAULT_CLAIM_MARGIN, GcReport, collect_garbage
from strata.meta.repo import Repository, WriterClaim
from strata.store.base import ObjectInfo, Store, StoreWrapper
from strata.store.counting import CountingStore
from strata.store.memory import MemoryStore

from .conftest import Builder, FakeClock

GRACE = 3600.0
OLD = b"written long ago by a version that was deleted since"


@pytest.fixture
def memory(clock: FakeClock) -> MemoryStore:
    return MemoryStore(clock=clock)


def open_repo(store: Store, clock: FakeClock) -> Repository:
    """A repository as one process opens it: its own ContentStore, on the fake clock."""
    return Repository.open(store, clock=clock, content=ContentStore(store, clock=clock))


@pytest.fixture
def repo(counting: CountingStore, clock: FakeClock) -> Repository:
    return open_repo(counting, clock)


def chunk_of(data: bytes) -> str:
    return chunk_key(content_hash(data))


def start_session(repo: Repository, volume: str, ttl: float = 600.0) -> WriterClaim:
    """Acquire a writer claim the way a writable mount does (and protect its dedups)."""
    claim = repo.acquire_writer(volume, "mount-1", ttl)
    repo.content.set_refresh_before()
    return claim


def keep_alive(repo: Repository, claim: WriterClaim, seconds: float) -> WriterClaim:
    """Let ``seconds`` pass while the writer renews its claim every ttl/2."""
    step = claim.ttl / 2
    while seconds > 0:
        clock_step = min(step, seconds)
        repo.clock.advance(clock_step)  # type: ignore[attr-defined]
        seconds -= clock_step
        claim = repo.renew_writer(claim)
    return claim


def read_file(repo: Repository, ref: str, name: str) -> bytes:
    """The bytes of file ``name`` in version ``ref``, read back from the store."""
    for path, e in repo.trees.walk(repo.version(ref).root):
        if path.strip("/") == name and e.kind == Kind.FILE:
            return b"".join(
                repo.content.get_chunk(b.hash) for b in repo.trees.iter_blocks(e.content)
            )
    raise AssertionError(f"{name} not in {ref}")


def old_unreferenced_chunk(repo: Repository, build: Builder, clock: FakeClock) -> None:
    """Volume ``a`` whose version holding OLD is deleted, then two grace windows pass."""
    repo.create_volume("a")
    v1 = build.commit("a", [build.file("x", OLD)])
    clock.advance(10)
    build.commit("a", [build.file("x", b"the head's data")])
    repo.delete_version(v1.ref)
    clock.advance(2 * GRACE)


def test_a_live_writers_uncommitted_uploads_survive_past_the_grace_window(
    repo: Repository, build: Builder, memory: MemoryStore, clock: FakeClock
) -> None:
    repo.create_volume("a")
    build.commit("a", [build.file("x", b"base")])
    garbage = build.root([build.file("g", b"garbage from before the session")])
    clock.advance(2 * GRACE)
    claim = start_session(repo, "a")
    clock.advance(60)
    data = b"uploaded by a mount that will not commit for hours"
    root = build.root([build.file("x", b"base"), build.file("new", data)])
    claim = keep_alive(repo, claim, 3 * GRACE)

    report = collect_garbage(repo, grace=GRACE)
    assert memory.exists(chunk_of(data)) and memory.exists(tree_key(root))
    assert (report.kept_for_writers, report.kept_young) == (2, 0)
    assert report.protected_since is not None
    # the claim protects only what is younger than the session: older garbage still goes
    assert not memory.exists(tree_key(garbage))
    assert not memory.exists(chunk_of(b"garbage from before the session"))
    assert (report.trees_freed, report.chunks_freed) == (1, 1)

    v = repo.commit(claim, root, "after hours")
    assert read_file(open_repo(memory, clock), v.ref, "new") == data
    repo.release_writer(claim)
    clock.advance(2 * GRACE)
    assert collect_garbage(repo, grace=GRACE).objects_freed == 0  # all referenced now
    assert read_file(open_repo(memory, clock), v.ref, "new") == data


@pytest.mark.parametrize("writer", ["same-process", "other-process"])
def test_dedup_against_an_old_unreferenced_object_refreshes_it(
    repo: Repository,
    build: Builder,
    counting: CountingStore,
    memory: MemoryStore,
    clock: FakeClock,
    writer: str,
) -> None:
    """The writer's data equals a deleted version's: its chunk and tree are reused."""
    old_unreferenced_chunk(repo, build, clock)
    # same-process: the ContentStore remembers OLD from before the session;
    # other-process: its put(if_absent) loses to the existing object
    wrepo = repo if writer == "same-process" else open_repo(counting, clock)
    wbuild = Builder(wrepo)
    claim = start_session(wrepo, "a")
    clock.advance(60)
    before = wrepo.content.stats()
    root = wbuild.root([wbuild.file("x", OLD)])  # same bytes, same tree as the deleted one
    after = wrepo.content.stats()
    assert after.objects_refreshed - before.objects_refreshed == 2  # the chunk and the tree
    assert after.objects_written == before.objects_written

    report = collect_garbage(repo, grace=GRACE)  # before the commit
    assert memory.exists(chunk_of(OLD)) and memory.exists(tree_key(root))
    assert report.objects_freed == 0 and report.kept_for_writers + report.kept_young == 2

    v = wrepo.commit(claim, root, "reuses old bytes")
    assert read_file(open_repo(memory, clock), v.ref, "x") == OLD


@pytest.mark.parametrize("writer", ["never", "released"])
def test_with_no_live_writer_the_old_unreferenced_chunk_is_swept(
    repo: Repository, build: Builder, memory: MemoryStore, clock: FakeClock, writer: str
) -> None:
    old_unreferenced_chunk(repo, build, clock)
    if writer == "released":
        claim = start_session(repo, "a")
        clock.advance(60)
        repo.release_writer(claim)
    report = collect_garbage(repo, grace=GRACE)
    assert not memory.exists(chunk_of(OLD))
    assert (report.chunks_freed, report.trees_freed) == (1, 1)
    assert report.protected_since is None and report.kept_for_writers == 0


@pytest.mark.parametrize(
    ("expired_for", "kept"),
    [(GRACE, False), (DEFAULT_CLAIM_MARGIN / 3, True)],
    ids=["expired", "expired-within-clock-skew-margin"],
)
def test_an_expired_claim_protects_nothing(
    repo: Repository,
    build: Builder,
    memory: MemoryStore,
    clock: FakeClock,
    expired_for: float,
    kept: bool,
) -> None:
    repo.create_volume("a")
    claim = start_session(repo, "a", ttl=2 * GRACE)
    clock.advance(60)
    data = b"uploaded by a writer that crashed"
    build.file("f", data)
    clock.advance(claim.expires - clock.now + expired_for)  # no renewal: it lapsed
    report = collect_garbage(repo, grace=GRACE)
    assert memory.exists(chunk_of(data)) is kept
    assert (report.chunks_freed, report.kept_for_writers) == ((0, 1) if kept else (1, 0))


def test_a_claim_on_any_volume_protects_objects_younger_than_it(
    repo: Repository, build: Builder, memory: MemoryStore, clock: FakeClock
) -> None:
    """GC cannot tell which volume an unreferenced object was meant for: it keeps all."""
    repo.create_volume("a")
    repo.create_volume("b")
    start_session(repo, "b")
    clock.advance(60)
    build.commit("a", [build.file("x", b"a's old data")])
    clock.advance(10)
    build.commit("a", [build.file("x", b"a's new data")])
    repo.delete_version(repo.log("a")[-1].ref)
    clock.advance(2 * GRACE - 300)  # b renews meanwhile
    repo.renew_writer(repo_claim(repo, "b"))
    report = collect_garbage(repo, grace=GRACE)
    assert memory.exists(chunk_of(b"a's old data")) and report.kept_for_writers == 2


def repo_claim(repo: Repository, volume: str) -> WriterClaim:
    w = repo.head(volume).writer
    assert w is not None
    return WriterClaim(volume, w.holder, w.epoch, w.expires, w.ttl)


def test_dry_run_with_a_live_writer_reports_and_deletes_nothing(
    repo: Repository, build: Builder, memory: MemoryStore, clock: FakeClock
) -> None:
    old_unreferenced_chunk(repo, build, clock)
    claim = start_session(repo, "a")
    clock.advance(60)
    build.root([build.file("new", b"in flight")])
    keep_alive(repo, claim, 2 * GRACE)
    before = {i.key: (i.mtime, memory.get(i.key)) for i in memory.list()}
    dry = collect_garbage(repo, grace=GRACE, dry_run=True)
    assert {i.key: (i.mtime, memory.get(i.key)) for i in memory.list()} == before
    real = collect_garbage(repo, grace=GRACE)
    for r in (dry, real):
        assert (r.chunks_freed, r.trees_freed, r.kept_for_writers) == (1, 1, 2), r
    assert memory.exists(chunk_of(b"in flight")) and not memory.exists(chunk_of(OLD))


class ListHook(StoreWrapper):
    """Runs ``hook`` once, right after GC has listed ``chunks/`` (a stale listing)."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.hook: list[object] = []

    def list(self, prefix: str = ""):  # type: ignore[override]
        items: list[ObjectInfo] = list(super().list(prefix))
        if prefix == CHUNKS and self.hook:
            self.hook.pop()()  # type: ignore[operator]
        return iter(items)


def test_a_refresh_after_gc_listed_the_object_still_keeps_it(
    repo: Repository, build: Builder, counting: CountingStore, memory: MemoryStore, clock: FakeClock
) -> None:
    """The listing says "old"; the HEAD just before the delete says "refreshed"."""
    old_unreferenced_chunk(repo, build, clock)
    hooked = ListHook(counting)
    gc_repo = open_repo(hooked, clock)
    writer = open_repo(counting, clock)
    roots: list[str] = []

    def a_writer_starts_and_dedups() -> None:
        clock.advance(1)
        claim = start_session(writer, "a")
        roots.append(Builder(writer).root([Builder(writer).file("x", OLD)]))
        writer.renew_writer(claim)

    hooked.hook.append(a_writer_starts_and_dedups)
    report: GcReport = collect_garbage(gc_repo, grace=GRACE)
    assert memory.exists(chunk_of(OLD)) and memory.exists(tree_key(roots[0]))
    assert report.objects_freed == 0
