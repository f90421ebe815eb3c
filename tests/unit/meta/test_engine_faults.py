"""The whole engine over a store that fails and lies: retry and succeed, or fail cleanly.

Requests fail before reaching the store, or succeed and then "lose" their reply (the
nastiest case for conditional writes). Whatever happens, every sealed version reads
back exactly, and a failed commit leaves the head where it was.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from strata.errors import StoreUnavailable
from strata.meta.repo import Repository
from strata.meta.view import VersionView
from strata.meta.working.state import WorkingState
from strata.meta.working.types import FsError
from strata.store.faults import FaultyStore
from strata.store.memory import MemoryStore
from strata.store.retry import RetryingStore

ROOT = 1


def _engine(memory: MemoryStore, seed: int = 7, **faults: float) -> tuple[FaultyStore, Repository]:
    faulty = FaultyStore(memory, seed=seed, sleep=lambda _s: None, **faults)
    store = RetryingStore(faulty, attempts=12, base_delay=0.0, sleep=lambda _s: None, seed=1)
    return faulty, Repository.open(store)


def _write(ws: WorkingState, name: str, data: bytes) -> None:
    try:
        ino = ws.lookup(ROOT, name).ino
    except FsError:
        ino = ws.create(ROOT, name, 0o644).ino
    else:
        ws.truncate(ino, 0)
    ws.write(ino, 0, data)


def _read_all(repo: Repository, ref: str) -> dict[str, bytes]:
    view = VersionView(repo, repo.version(ref))
    try:
        return {e.name: view.read(e.attr.ino, 0, e.attr.size) for e in view.readdir(ROOT)}
    finally:
        view.close()


@pytest.mark.parametrize("seed", range(6))
def test_commits_and_forks_survive_lost_replies(tmp_path: Path, seed: int) -> None:
    memory = MemoryStore()
    faulty, repo = _engine(memory, seed, fail_rate=0.15, fail_after_rate=0.15)
    repo.create_volume("vol")
    claim = repo.acquire_writer("vol", "w", 600)
    expected: dict[str, dict[str, bytes]] = {}
    with WorkingState.open(repo, claim, tmp_path / "ws") as ws:
        for step in range(6):
            _write(ws, f"f{step}", bytes([step]) * (100_000 + step))
            _write(ws, "shared", f"step {step}".encode() * 5000)
            version = ws.commit(f"step {step}")
            expected[version.ref] = {}
    assert faulty.injected["put", "after"] > 0 and faulty.injected["put", "before"] > 0

    # Read every version back through a clean view of the same bytes.
    clean = Repository.open(memory)
    history = clean.log("vol")
    assert [v.message for v in history] == [f"step {s}" for s in reversed(range(6))]
    for v in history:
        step = int(v.message.split()[1])
        files = _read_all(clean, v.ref)
        assert files["shared"] == f"step {step}".encode() * 5000
        for s in range(step + 1):
            assert files[f"f{s}"] == bytes([s]) * (100_000 + s)
        assert len(files) == step + 2

    fork_head = repo.fork(history[-1].ref, "fork").version
    assert clean.version("fork").ref == fork_head == history[-1].ref


def test_a_commit_that_cannot_reach_the_store_fails_cleanly(tmp_path: Path) -> None:
    memory = MemoryStore()
    faulty, repo = _engine(memory)
    repo.create_volume("vol")
    claim = repo.acquire_writer("vol", "w", 600)
    with WorkingState.open(repo, claim, tmp_path / "ws") as ws:
        _write(ws, "a", b"first" * 1000)
        good = ws.commit("good")

        # Now every PUT fails (reads still work): the commit raises and moves nothing.
        faulty.fail_rate, faulty.ops = 1.0, frozenset({"put"})
        _write(ws, "a", b"second" * 1000)
        with pytest.raises(StoreUnavailable):
            ws.commit("doomed")
        assert Repository.open(memory).version("vol").ref == good.ref
        assert _read_all(Repository.open(memory), good.ref) == {"a": b"first" * 1000}

        # The store comes back: the same working state commits what it kept.
        faulty.fail_rate = 0.0
        later = ws.commit("recovered")
    assert later.parent == good.ref
    assert _read_all(Repository.open(memory), later.ref) == {"a": b"second" * 1000}
