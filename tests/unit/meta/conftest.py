"""Fixtures for the meta layer: a guarded, counting in-memory store and tree builders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from strata.meta.entry import BlockRef, Content, Entry, Kind
from strata.meta.repo import Repository
from strata.meta.version import Stats, Version
from strata.meta.working import WorkingState
from strata.store.counting import CountingStore, ImmutableGuardStore
from strata.store.memory import MemoryStore

from .test_working_support import Env


class FakeClock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Builder:
    """Writes chunks through the ContentStore and entries through the TreeWriter."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo

    def file(self, name: str, data: bytes = b"", **attrs: object) -> Entry:
        blocks = (BlockRef(self.repo.content.put_chunk(data), len(data)),) if data else ()
        return Entry(name, Kind.FILE, 0o644, size=len(data), content=Content(blocks), **attrs)  # type: ignore[arg-type]

    def dir(self, name: str, entries: list[Entry], **attrs: object) -> Entry:
        tree = self.repo.tree_writer.write_dir(entries)
        return Entry(name, Kind.DIR, 0o755, tree=tree, **attrs)  # type: ignore[arg-type]

    def root(self, entries: list[Entry]) -> str:
        return self.repo.tree_writer.write_dir(entries)

    def commit(self, volume: str, entries: list[Entry], message: str = "") -> Version:
        """Claim, commit one root and release: a whole writer session."""
        claim = self.repo.acquire_writer(volume, "builder", 60)
        try:
            return self.repo.commit(claim, self.root(entries), message, Stats(files=1))
        finally:
            self.repo.release_writer(claim)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def memory() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def counting(memory: MemoryStore) -> CountingStore:
    return CountingStore(ImmutableGuardStore(memory))


@pytest.fixture
def repo(counting: CountingStore, clock: FakeClock) -> Repository:
    return Repository.open(counting, clock=clock)


@pytest.fixture
def build(repo: Repository) -> Builder:
    return Builder(repo)


@pytest.fixture
def env(repo: Repository, tmp_path: Path) -> Iterator[Env]:
    e = Env(repo, tmp_path)
    yield e
    e.close_all()


@pytest.fixture
def ws(env: Env) -> WorkingState:
    return env.open()
