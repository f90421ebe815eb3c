"""Writer claims and fencing (INVARIANT 5): a stale writer can never move the head."""

from __future__ import annotations

import threading

import pytest

from strata.errors import FencedWriter, VolumeBusy
from strata.meta.repo import Repository
from strata.meta.version import Stats
from strata.store.base import StoreWrapper
from strata.store.memory import MemoryStore

from .conftest import Builder, FakeClock


def test_claim_is_exclusive_and_names_the_holder(repo: Repository, clock: FakeClock) -> None:
    repo.create_volume("v")
    claim = repo.acquire_writer("v", "pod-a", 30)
    assert claim.epoch == 1 and claim.expires == clock.now + 30
    with pytest.raises(VolumeBusy, match=r"'pod-a'.*epoch 1"):
        repo.acquire_writer("v", "pod-b", 30)
    info = repo.volume("v")
    assert info.writer is not None and info.writer.holder == "pod-a"
    clock.advance(20)
    claim = repo.renew_writer(claim)
    clock.advance(20)  # alive only thanks to the renewal
    with pytest.raises(VolumeBusy):
        repo.acquire_writer("v", "pod-b", 30)
    repo.release_writer(claim)
    repo.release_writer(claim)  # idempotent
    assert repo.volume("v").writer is None
    assert repo.acquire_writer("v", "pod-b", 30).epoch == 2


def test_expired_claim_takeover_fences_the_old_writer(
    repo: Repository, build: Builder, clock: FakeClock
) -> None:
    repo.create_volume("v")
    root = build.root([build.file("a", b"a")])
    old = repo.acquire_writer("v", "pod-a", 30)
    v1 = repo.commit(old, root, "by a")
    clock.advance(31)
    new = repo.acquire_writer("v", "pod-b", 30)
    assert new.epoch == old.epoch + 1
    with pytest.raises(FencedWriter) as err:
        repo.commit(old, build.root([build.file("a", b"late")]), "stale")
    assert str(err.value) == (
        "volume 'v' is now written by 'pod-b' (epoch 2); this writer 'pod-a' (epoch 1) "
        "can no longer commit"
    )
    with pytest.raises(FencedWriter):
        repo.renew_writer(old)
    repo.release_writer(old)  # a no-op: it must not release pod-b's claim
    assert repo.head("v").version == v1.ref
    assert repo.head("v").writer.holder == "pod-b"  # type: ignore[union-attr]
    v2 = repo.commit(new, root, "by b", Stats(files=1))
    assert v2.parent == v1.ref and v2.epoch == 2 and v2.writer == "pod-b"


def test_same_holder_reacquiring_fences_its_older_session(repo: Repository, build: Builder) -> None:
    repo.create_volume("v")
    first = repo.acquire_writer("v", "pod-a", 30)
    second = repo.acquire_writer("v", "pod-a", 30)
    assert second.epoch == first.epoch + 1
    with pytest.raises(FencedWriter):
        repo.commit(first, build.root([]))
    repo.commit(second, build.root([]))


def test_commit_checks_the_parent(repo: Repository, build: Builder) -> None:
    repo.create_volume("v")
    claim = repo.acquire_writer("v", "w", 30)
    v1 = repo.commit(claim, build.root([build.file("a", b"1")]), parent=None)
    with pytest.raises(FencedWriter, match="started from None"):
        repo.commit(claim, build.root([build.file("a", b"2")]), parent=None)
    assert repo.commit(claim, build.root([]), parent=v1.ref).parent == v1.ref


def test_commit_needs_a_stored_root(repo: Repository) -> None:
    repo.create_volume("v")
    claim = repo.acquire_writer("v", "w", 30)
    with pytest.raises(Exception, match="not in the store"):
        repo.commit(claim, "cd" * 32)
    with pytest.raises(ValueError):
        repo.commit(claim, "not-a-digest")


class TakeoverDuringCommit(StoreWrapper):
    """Lets another writer take the volume right after the stale writer's manifest lands."""

    def __init__(self, inner: MemoryStore) -> None:
        super().__init__(inner)
        self.on_manifest: list[object] = []

    def put(self, key: str, data: bytes, *, if_absent: bool = False, if_match=None) -> str:
        etag = super().put(key, data, if_absent=if_absent, if_match=if_match)
        if key.startswith("versions/") and self.on_manifest:
            self.on_manifest.pop()()  # type: ignore[operator]
        return etag


def test_takeover_between_manifest_and_head_cas_fences(
    memory: MemoryStore, clock: FakeClock
) -> None:
    store = TakeoverDuringCommit(memory)
    repo = Repository.open(store, clock=clock)
    b = Builder(repo)
    repo.create_volume("v")
    old = repo.acquire_writer("v", "pod-a", 30)
    v1 = repo.commit(old, b.root([b.file("a", b"1")]))
    root = b.root([b.file("a", b"2")])
    clock.advance(31)
    claims = []
    store.on_manifest.append(lambda: claims.append(repo.acquire_writer("v", "pod-b", 30)))
    with pytest.raises(FencedWriter, match="'pod-b'"):
        repo.commit(old, root, "lost the race")
    assert claims and repo.head("v").version == v1.ref
    assert [v.ref for v in repo.log("v")] == [v1.ref]
    assert len(list(memory.list("versions/"))) == 1  # the orphan manifest was removed


def _run(targets: list) -> list[object]:
    """Run callables in threads released together; return each result or exception."""
    barrier = threading.Barrier(len(targets))
    out: list[object] = [None] * len(targets)

    def go(i: int) -> None:
        barrier.wait()
        try:
            out[i] = targets[i]()
        except (VolumeBusy, FencedWriter) as exc:
            out[i] = exc

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(targets))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_racing_writers_exactly_one_wins(
    repo: Repository, build: Builder, clock: FakeClock
) -> None:
    """Threads race to claim; then the stale and the current writer race to commit."""
    repo.create_volume("v")
    roots = [build.root([build.file("who", str(i).encode())]) for i in range(4)]
    stale = None
    for round_ in range(15):
        clock.advance(61)  # every earlier claim has expired
        got = _run([lambda i=i: repo.acquire_writer("v", f"w{i}", 60) for i in range(4)])
        claims = [c for c in got if not isinstance(c, Exception)]
        assert len(claims) == 1, got
        assert all(isinstance(c, VolumeBusy) for c in got if c is not claims[0])
        current = claims[0]
        before = repo.head("v").version
        racers = [current] if stale is None else [current, stale]
        done = _run(
            [
                lambda c=c, r=roots[round_ % 4]: repo.commit(c, r, f"{c.holder}@{c.epoch}")
                for c in racers
            ]
        )
        won = [d for d in done if not isinstance(d, Exception)]
        assert len(won) == 1 and won[0].writer == current.holder  # type: ignore[union-attr]
        if stale is not None:
            assert isinstance(done[1], FencedWriter)
        assert repo.head("v").version == won[0].ref  # type: ignore[union-attr]
        assert won[0].parent == before  # type: ignore[union-attr]
        stale = current
    assert len(repo.log("v")) == 15
