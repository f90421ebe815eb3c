"""Working state: commit (invariant 2: O(change)), re-base, fencing, hard links, forks."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from strata.chunks.hashing import content_hash
from strata.chunks.layout import chunk_key
from strata.chunks.uploader import Uploader
from strata.errors import FencedWriter, StoreUnavailable
from strata.meta.entry import BlockRef, Content, Entry, Kind
from strata.meta.repo import Repository
from strata.meta.version import Stats
from strata.meta.view import VersionView
from strata.meta.working import WorkingState
from strata.store.base import Store, StoreWrapper
from strata.store.counting import CountingStore
from strata.store.memory import MemoryStore

from .conftest import FakeClock
from .test_working_support import (
    ROOT,
    Env,
    raises_errno,
    resolve,
    tree_contents,
    write_file,
    ws_contents,
)


def populate(ws: WorkingState) -> None:
    d = ws.mkdir(ROOT, "dir", 0o750)
    sub = ws.mkdir(d.ino, "sub", 0o700)
    write_file(ws, ROOT, "top.txt", b"top")
    write_file(ws, d.ino, "a.bin", bytes(range(256)) * 100, mode=0o600)
    write_file(ws, sub.ino, "deep", b"deep down")
    ws.symlink(d.ino, "link", "../top.txt")
    ws.create(ROOT, "empty", 0o644)
    ws.mkdir(ROOT, "emptydir", 0o755)
    ws.setxattr(resolve(ws, "top.txt"), "user.k", b"v")


# --- commit and re-commit -------------------------------------------------------------


def test_commit_reads_back_exactly(env: Env, ws: WorkingState) -> None:
    populate(ws)
    v = ws.commit("first", author="me")
    assert v.message == "first" and v.author == "me" and v.parent is None
    assert ws.base == v.ref == env.repo.version("vol").ref
    assert tree_contents(env.repo, v.root) == ws_contents(ws)
    top = env.repo.trees.lookup(v.root, "top.txt")
    assert top is not None and top.xattrs == (("user.k", b"v"),)
    assert v.stats == Stats(bytes=3 + 25600 + 9, files=4, dirs=3, chunks=3)


def test_recommit_shares_untouched_subtrees(env: Env, ws: WorkingState) -> None:
    populate(ws)
    v1 = ws.commit("one")
    before = tree_contents(env.repo, v1.root)
    ws.write(resolve(ws, "top.txt"), 3, b" more")
    ws.unlink(ROOT, "empty")
    v2 = ws.commit("two")
    assert v2.parent == v1.ref
    assert tree_contents(env.repo, v1.root) == before  # sealed versions never change
    after = tree_contents(env.repo, v2.root)
    assert after == ws_contents(ws)
    assert after["top.txt"][1] == b"top more" and "empty" not in after
    t1, t2 = (env.repo.trees.lookup(v.root, "dir") for v in (v1, v2))
    assert t1 is not None and t2 is not None and t1.tree == t2.tree  # reused verbatim
    v3 = ws.commit("nothing changed")
    assert v3.root == v2.root


def test_empty_volume_commits_an_empty_root(env: Env, ws: WorkingState) -> None:
    v = ws.commit("empty")
    assert list(env.repo.trees.iter_entries(v.root)) == []


def test_commit_while_writes_continue(env: Env, ws: WorkingState) -> None:
    """The mount stays writable during a commit; what lands meanwhile goes next time."""
    ino = write_file(ws, ROOT, "f", b"before")
    flush = ws._uploader.flush

    def flush_and_write(timeout: float | None = None) -> None:
        ws.write(ino, 0, b"DURING")  # runs between snapshot and re-base
        write_file(ws, ROOT, "g", b"new during commit")
        flush(timeout)

    ws._uploader.flush = flush_and_write  # type: ignore[method-assign]
    v1 = ws.commit("racing")
    ws._uploader.flush = flush  # type: ignore[method-assign]
    assert tree_contents(env.repo, v1.root) == {"f": ("f", b"before", 0o644)}
    assert ws.read(ino, 0, 10) == b"DURING"
    v2 = ws.commit("catch up")
    assert tree_contents(env.repo, v2.root) == ws_contents(ws)
    assert tree_contents(env.repo, v2.root)["f"][1] == b"DURING"


# --- invariant 2: O(change) ----------------------------------------------------------


def big_base(repo: Repository, dirs: int = 1000, per_dir: int = 100) -> str:
    """A volume of dirs × per_dir files written straight through the TreeWriter."""
    chunk = repo.content.put_chunk(b"same bytes")
    content = Content((BlockRef(chunk, 10),))
    subdirs = []
    for d in range(dirs):
        files = [
            Entry(f"f{d}-{i}", Kind.FILE, 0o644, size=10, content=content) for i in range(per_dir)
        ]
        subdirs.append(Entry(f"d{d:04}", Kind.DIR, 0o755, tree=repo.tree_writer.write_dir(files)))
    claim = repo.acquire_writer("vol", "builder", 60)
    try:
        stats = Stats(bytes=10 * dirs * per_dir, files=dirs * per_dir, dirs=dirs, chunks=1)
        root = repo.tree_writer.write_dir(subdirs)
        return repo.commit(claim, root, "base", stats).ref
    finally:
        repo.release_writer(claim)


def test_one_file_change_in_100k_files_writes_a_handful_of_objects(
    repo: Repository, counting: CountingStore, tmp_path: Path
) -> None:
    repo.create_volume("vol")
    base = big_base(repo)
    claim = repo.acquire_writer("vol", "writer-1", 3600)
    repo = Repository.open(counting)  # a fresh process: nothing cached, nothing known
    counting.reset()
    ws = WorkingState.open(repo, claim, tmp_path / "cache", background_seal=False)
    try:
        ino = resolve(ws, "d0500/f500-50")
        ws.write(ino, 0, b"changed!")
        ws.create(resolve(ws, "d0999"), "new-file", 0o644)
        opened = counting.snapshot()
        # Invariant 3: lookups read only the pages on the path, not the volume.
        assert opened.gets_by_prefix["trees/"] == 3  # the root, d0500 and d0999
        assert opened.gets_by_prefix["chunks/"] == 1  # copy-on-write of the old bytes
        counting.reset()
        v = ws.commit("one change")
        puts = counting.snapshot().puts_by_prefix
        assert puts["chunks/"] == 1
        assert puts["trees/"] <= 3  # two directories and the root
        assert sum(puts.values()) <= 8
        assert v.stats.files == 100_001
        f = repo.trees.resolve(v.root, "d0500/f500-50")
        assert f is not None and f.size == 10
        assert repo.content.get_chunk(f.content.blocks[0].hash) == b"changed!es"
        old = repo.version(base).root
        for name in ("d0000", "d0499", "d0501"):
            assert repo.trees.lookup(v.root, name) == repo.trees.lookup(old, name)
    finally:
        ws.close()


def test_one_change_in_a_big_directory_rewrites_one_page(
    repo: Repository, counting: CountingStore, tmp_path: Path
) -> None:
    repo.create_volume("vol")
    chunk = repo.content.put_chunk(b"x")
    entries = [
        Entry(f"file-{i:05}", Kind.FILE, 0o644, size=1, content=Content((BlockRef(chunk, 1),)))
        for i in range(20_000)
    ]
    claim = repo.acquire_writer("vol", "writer-1", 3600)
    repo.commit(claim, repo.tree_writer.write_dir(entries), "base", Stats())
    repo = Repository.open(counting)
    ws = WorkingState.open(repo, claim, tmp_path / "cache", background_seal=False)
    try:
        ws.unlink(ROOT, "file-12345")
        counting.reset()
        v = ws.commit("one removal")
        assert counting.snapshot().puts_by_prefix["trees/"] <= 3  # one page + the index
        assert repo.trees.count(v.root) == 19_999
        assert repo.trees.lookup(v.root, "file-12345") is None
        assert ws.getattr(ROOT).nlink == 1  # never listed: the directory stayed lazy
    finally:
        ws.close()


# --- fencing ---------------------------------------------------------------------------


def test_fenced_commit_keeps_local_state(env: Env, ws: WorkingState, clock: FakeClock) -> None:
    populate(ws)
    v1 = ws.commit("mine")
    write_file(ws, ROOT, "later", b"uncommitted")
    clock.advance(7200)  # our claim expires; another writer takes the volume
    other = env.repo.acquire_writer("vol", "writer-2", 60)
    before = ws_contents(ws)
    with pytest.raises(FencedWriter):
        ws.commit("too late")
    assert env.repo.version("vol").ref == v1.ref == ws.base
    assert ws_contents(ws) == before
    ws.write(resolve(ws, "later"), 0, b"still writable")
    env.repo.release_writer(other)
    ws.claim = env.repo.acquire_writer("vol", "writer-1", 3600)  # a renewed claim
    v2 = ws.commit("after re-claim")
    assert tree_contents(env.repo, v2.root) == ws_contents(ws)
    assert tree_contents(env.repo, v2.root)["later"][1] == b"still writable"


def test_commit_after_another_writer_committed_is_fenced(
    env: Env, ws: WorkingState, clock: FakeClock
) -> None:
    write_file(ws, ROOT, "mine", b"1")
    clock.advance(7200)
    other = env.repo.acquire_writer("vol", "writer-2", 60)
    env.repo.commit(other, env.repo.tree_writer.write_dir([]), "theirs", Stats())
    env.repo.release_writer(other)
    ws.claim = env.repo.acquire_writer("vol", "writer-1", 3600)
    with pytest.raises(FencedWriter):
        ws.commit("stale base")
    assert ws.read(resolve(ws, "mine"), 0, 5) == b"1"


# --- hard links ------------------------------------------------------------------------


def test_hard_links_survive_commit_and_reload(env: Env, ws: WorkingState) -> None:
    a = write_file(ws, ROOT, "a", b"linked")
    d = ws.mkdir(ROOT, "d", 0o755)
    ws.link(a, d.ino, "b")
    ws.link(a, ROOT, "c")
    v = ws.commit("links")
    entries = [env.repo.trees.resolve(v.root, p) for p in ("a", "d/b", "c")]
    ids = {e.link_id for e in entries if e is not None}
    assert len(ids) == 1 and "" not in ids
    assert len({e.content for e in entries if e is not None}) == 1
    ws.close()

    fresh = env.open("fresh")
    inos = {resolve(fresh, p) for p in ("a", "d/b", "c")}
    assert len(inos) == 1
    (ino,) = inos
    assert fresh.getattr(ino).nlink == 3
    fresh.write(ino, 0, b"LINKED")
    assert fresh.read(resolve(fresh, "d/b"), 0, 10) == b"LINKED"
    fresh.unlink(ROOT, "c")
    v2 = fresh.commit("changed through one name")
    got = tree_contents(env.repo, v2.root)
    assert got["a"][1] == got["d/b"][1] == b"LINKED" and "c" not in got
    assert fresh.getattr(ino).nlink == 2
    fresh.unlink(resolve(fresh, "d"), "b")
    v3 = fresh.commit("single again")
    e = env.repo.trees.resolve(v3.root, "a")
    assert e is not None and e.link_id == ""


def test_hard_link_group_in_unloaded_directories_is_resolved(env: Env) -> None:
    """Two names of one file in directories nobody listed: lookup of one must still
    report the full link count, and a write must reach both names at commit."""
    repo = env.repo
    chunk = repo.content.put_chunk(b"shared")
    f = Content((BlockRef(chunk, 6),))

    def linked(name: str) -> Entry:
        return Entry(name, Kind.FILE, 0o644, size=6, content=f, link_id="L1")

    inner = repo.tree_writer.write_dir([linked("y")])
    b = repo.tree_writer.write_dir([Entry("c", Kind.DIR, 0o755, tree=inner)])
    a = repo.tree_writer.write_dir([linked("x"), Entry("other", Kind.FILE, 0o644)])
    root = repo.tree_writer.write_dir(
        [Entry("a", Kind.DIR, 0o755, tree=a), Entry("b", Kind.DIR, 0o755, tree=b)]
    )
    repo.commit(env.claim, root, "base with links", Stats())
    ws = env.open()
    x = ws.lookup(resolve(ws, "a"), "x")
    assert x.nlink == 2
    assert resolve(ws, "b/c/y") == x.ino
    ws.write(x.ino, 0, b"SHARED")
    v = ws.commit("through x")
    got = tree_contents(repo, v.root)
    assert got["a/x"][1] == got["b/c/y"][1] == b"SHARED"
    ws.unlink(resolve(ws, "b/c"), "y")
    assert ws.getattr(x.ino).nlink == 1


# --- forks, uploads --------------------------------------------------------------------


def test_fork_is_independent(env: Env, ws: WorkingState) -> None:
    populate(ws)
    v1 = ws.commit("base")
    env.repo.fork("vol", "fork")
    claim = env.repo.acquire_writer("fork", "forker", 3600)
    fork = env.open("fork-cache", claim=claim)
    assert ws_contents(fork) == tree_contents(env.repo, v1.root)
    fork.unlink(ROOT, "top.txt")
    write_file(fork, ROOT, "only-in-fork", b"f")
    fv = fork.commit("forked change")
    assert fv.parent == v1.ref
    assert tree_contents(env.repo, env.repo.version("vol").root) == tree_contents(env.repo, v1.root)
    assert set(tree_contents(env.repo, fv.root)) == set(ws_contents(fork))


class Flaky(StoreWrapper):
    """Fails chunk uploads while ``down`` is set."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.down = False

    def put(
        self, key: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None
    ) -> str:
        if self.down and key.startswith("chunks/"):
            raise StoreUnavailable(f"injected failure writing {key}")
        return super().put(key, data, if_absent=if_absent, if_match=if_match)


def test_failed_uploads_fail_the_commit_and_keep_everything(tmp_path: Path) -> None:
    flaky = Flaky(MemoryStore())
    repo = Repository.open(flaky)
    repo.create_volume("vol")
    claim = repo.acquire_writer("vol", "w", 3600)
    ws = WorkingState.open(repo, claim, tmp_path / "c", background_seal=False)
    try:
        write_file(ws, ROOT, "f", b"precious")
        flaky.down = True
        with pytest.raises(StoreUnavailable):
            ws.commit("store down")
        assert repo.volume("vol").head is None
        assert ws.read(resolve(ws, "f"), 0, 10) == b"precious"
        flaky.down = False
        v = ws.commit("store back")
        assert tree_contents(repo, v.root) == {"f": ("f", b"precious", 0o644)}
    finally:
        ws.close()


def test_files_deleted_within_the_upload_delay_are_never_uploaded(
    env: Env, counting: CountingStore
) -> None:
    uploader = Uploader(env.repo.content, 4, upload_delay=3600)
    ws = env.open(uploader=uploader)
    try:
        scratch = write_file(ws, ROOT, "scratch", b"temporary bytes")
        write_file(ws, ROOT, "keep", b"kept bytes")
        ws.seal_all()
        assert uploader.pending() == 2
        ws.unlink(ROOT, "scratch")
        assert uploader.pending() == 1
        counting.reset()
        v = ws.commit("kept")
        keys = counting.snapshot().puts_by_prefix
        assert keys["chunks/"] == 1
        assert not env.repo.store.exists(chunk_key(content_hash(b"temporary bytes")))
        assert tree_contents(env.repo, v.root) == {"keep": ("f", b"kept bytes", 0o644)}
        raises_errno(errno.ENOENT, ws.getattr, scratch)
    finally:
        ws.close()
        uploader.close()


def test_names_removed_from_a_lazy_directory_stay_removed(env: Env) -> None:
    """A directory never listed keeps serving names from its base tree; a removed or
    renamed-away name must not come back from there."""
    repo = env.repo
    entries = [Entry(f"n{i}", Kind.FILE, 0o644) for i in range(50)]
    repo.commit(env.claim, repo.tree_writer.write_dir(entries), "base", Stats())
    ws = env.open()
    ws.unlink(ROOT, "n7")
    ws.rename(ROOT, "n8", ROOT, "renamed")
    raises_errno(errno.ENOENT, ws.lookup, ROOT, "n7")
    raises_errno(errno.ENOENT, ws.lookup, ROOT, "n8")
    assert ws.lookup(ROOT, "n9").kind == Kind.FILE
    assert ws.getattr(ROOT).nlink == 1  # still lazy: nothing was listed
    v = ws.commit("removed")
    raises_errno(errno.ENOENT, ws.lookup, ROOT, "n7")
    names = {d.name for d in ws.readdir(ROOT)}
    assert "n7" not in names and "n8" not in names and "renamed" in names
    assert len(names) == 49
    assert {e.name for e in repo.trees.iter_entries(v.root)} == names


def test_hard_links_to_a_symlink_survive_commit_and_reload(env: Env, ws: WorkingState) -> None:
    """link(2) does not follow symlinks: the symlink inode itself gets a second name."""
    s = ws.symlink(ROOT, "s", "target")
    d = ws.mkdir(ROOT, "d", 0o755)
    ws.link(s.ino, d.ino, "s2")
    v = ws.commit("linked symlink")
    a, b = (env.repo.trees.resolve(v.root, p) for p in ("s", "d/s2"))
    assert a is not None and b is not None
    assert a.link_id and a.link_id == b.link_id and a.target == b.target == "target"
    fresh = env.open("fresh")
    ino = resolve(fresh, "s")
    assert resolve(fresh, "d/s2") == ino
    assert fresh.getattr(ino).nlink == 2 and fresh.readlink(ino) == "target"


def test_the_root_directory_attributes_are_part_of_a_version(env: Env) -> None:
    ws = env.open()
    ws.setattr(ROOT, mode=0o770, uid=1000, gid=2000, mtime_ns=1_600_000_000 * 10**9)
    ws.setxattr(ROOT, "user.purpose", b"workspace")
    v = ws.commit("root attrs")
    assert v.root_attrs is not None and v.root_attrs.mode == 0o770
    assert env.repo.version(v.ref).root_attrs == v.root_attrs  # read back from the store

    view = VersionView(env.repo, env.repo.version(v.ref))
    attr = view.getattr(ROOT)
    assert (attr.mode, attr.uid, attr.gid) == (0o770, 1000, 2000)
    assert attr.mtime_ns == 1_600_000_000 * 10**9
    assert view.getxattr(ROOT, "user.purpose") == b"workspace"

    env.repo.fork(v.ref, "copy")
    claim = env.repo.acquire_writer("copy", "writer-2", 60)
    fork = env.open("fork-cache", claim=claim)  # a fresh overlay on another machine
    attr = fork.getattr(ROOT)
    assert (attr.mode, attr.uid, attr.gid) == (0o770, 1000, 2000)
    assert fork.getxattr(ROOT, "user.purpose") == b"workspace"


def test_versions_without_root_attributes_keep_the_old_defaults(env: Env) -> None:
    claim = env.claim
    root = env.repo.tree_writer.write_dir([])
    v = env.repo.commit(claim, root, "legacy")  # as an older Strata committed
    assert v.root_attrs is None
    attr = VersionView(env.repo, v).getattr(ROOT)
    assert (attr.mode, attr.uid, attr.gid) == (0o755, 0, 0)
    assert attr.mtime_ns == int(v.created * 1e9)


def staged_bytes(ws: WorkingState) -> int:
    return sum(p.stat().st_size for p in (ws.cache_dir / "staged").rglob("*") if p.is_file())


def test_local_copies_of_stored_blocks_are_trimmed_to_the_budget(env: Env) -> None:
    ws = env.open()
    data = {f"f{i}": bytes([i + 1]) * (1 << 20) for i in range(4)}  # file-backed blocks
    for name, body in data.items():
        write_file(ws, ROOT, name, body)
    ws.commit("stored")
    assert staged_bytes(ws) == 4 << 20
    ws.seal_all()
    pending = write_file(ws, ROOT, "pending", b"\x09" * (1 << 20))
    ws.seal_all()  # SEALED, not stored: its local copy is the only one
    freed = ws.trim_staged(0)
    assert freed == 4 << 20 and staged_bytes(ws) == 1 << 20
    for name, body in data.items():  # reads fall back to the store
        assert ws.read(resolve(ws, name), 0, 2 << 20) == body
    assert ws.read(pending, 0, 2 << 20) == b"\x09" * (1 << 20)
    v = ws.commit("after trimming")
    assert tree_contents(env.repo, v.root)["pending"][1] == b"\x09" * (1 << 20)


def test_commit_trims_to_the_configured_budget(env: Env) -> None:
    ws = env.open(staged_budget=1 << 20)
    for i in range(3):
        write_file(ws, ROOT, f"f{i}", bytes([i + 1]) * (1 << 20))
    ws.commit("one")
    assert staged_bytes(ws) <= 1 << 20
    assert ws.read(resolve(ws, "f0"), 0, 1 << 20) == b"\x01" * (1 << 20)
