"""Working state: persistence across close/reopen and crashes (invariant 6)."""

from __future__ import annotations

import errno
import gc
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from strata.chunks.uploader import Uploader
from strata.meta.repo import Repository
from strata.meta.working import SyncMode, WorkingState
from strata.store.local import LocalStore

from .test_working_support import (
    ROOT,
    Env,
    raises_errno,
    resolve,
    tree_contents,
    write_file,
    ws_contents,
)


def open_untracked(env: Env, cache: str = "cache", **kw: object) -> WorkingState:
    """A working state the test may drop without closing (a simulated crash)."""
    kw.setdefault("background_seal", False)
    return WorkingState.open(env.repo, env.claim, env.cache(cache), **kw)  # type: ignore[arg-type]


def crash() -> None:
    """After the test dropped its last reference: collect the object without close().

    Nothing is flushed; only file descriptors and the cache-dir lock go away, as when
    the process dies.
    """
    gc.collect()


def populate(ws: WorkingState) -> None:
    d = ws.mkdir(ROOT, "d", 0o700)
    a = write_file(ws, d.ino, "a", b"alpha" * 1000)
    ws.link(a, ROOT, "a-link")
    ws.symlink(ROOT, "s", "d/a")
    big = ws.create(ROOT, "sparse", 0o600).ino
    ws.write(big, 9 * 1024 * 1024, b"end")
    ws.setxattr(a, "user.x", b"1")
    ws.rename(d.ino, "a", d.ino, "renamed")


def test_uncommitted_changes_survive_close_and_reopen(env: Env) -> None:
    ws = env.open()
    populate(ws)
    before, stats = ws_contents(ws), ws.statfs()
    ws.close()
    again = env.open()
    assert ws_contents(again) == before
    assert again.statfs() == stats
    a = resolve(again, "d/renamed")
    assert again.getattr(a).nlink == 2 and again.getxattr(a, "user.x") == b"1"
    v = again.commit("after reopen")
    assert tree_contents(env.repo, v.root) == before


def test_dropped_without_close_recovers_every_operation(env: Env) -> None:
    ws = open_untracked(env)
    populate(ws)
    before = ws_contents(ws)
    del ws
    crash()
    again = env.open()
    assert ws_contents(again) == before
    v = again.commit("recovered")
    assert tree_contents(env.repo, v.root) == before


def test_batch_mode_keeps_everything_fsynced(env: Env) -> None:
    ws = open_untracked(env, sync="batch")
    assert ws.sync_mode == SyncMode.BATCH
    a = write_file(ws, ROOT, "synced", b"durable")
    ws.fsync(a)
    write_file(ws, ROOT, "maybe", b"not fsynced")
    assert ws._db.conn.in_transaction  # really batched
    del ws
    crash()
    again = env.open(sync="batch")
    assert again.read(resolve(again, "synced"), 0, 100) == b"durable"
    listing = ws_contents(again)
    assert listing.get("maybe", ("f", b"not fsynced", 0o644)) == ("f", b"not fsynced", 0o644)


def test_checkpoint_makes_everything_durable(env: Env) -> None:
    ws = open_untracked(env, sync="batch")
    populate(ws)
    before = ws_contents(ws)
    ws.checkpoint()
    del ws
    crash()
    assert ws_contents(env.open()) == before


def test_high_throughput_volumes_default_to_batch_mode(env: Env) -> None:
    env.repo.create_volume("fast", high_throughput=True)
    claim = env.repo.acquire_writer("fast", "w", 3600)
    ws = env.open("fast-cache", claim=claim)
    assert ws.sync_mode == SyncMode.BATCH
    assert env.open().sync_mode == SyncMode.NORMAL


def test_files_unlinked_while_open_are_freed_after_a_crash(env: Env) -> None:
    ws = open_untracked(env)
    ino = write_file(ws, ROOT, "tmp", b"x" * 100)
    ws.open_handle(ino)
    ws.unlink(ROOT, "tmp")
    del ws
    crash()
    again = env.open()
    raises_errno(errno.ENOENT, again.getattr, ino)
    again.checkpoint()
    assert list((env.cache() / "dirty").iterdir()) == []
    assert again.statfs().files == 0


def test_sealed_blocks_are_uploaded_after_a_restart(env: Env) -> None:
    held = Uploader(env.repo.content, 2, upload_delay=3600)  # nothing leaves before close
    ws = open_untracked(env, uploader=held)
    write_file(ws, ROOT, "f", b"sealed but never uploaded")
    ws.seal_all()
    del ws
    crash()
    held.close(flush=False)
    again = env.open()
    v = again.commit("uploaded on reopen")
    assert tree_contents(env.repo, v.root) == {"f": ("f", b"sealed but never uploaded", 0o644)}


def test_crash_between_commit_and_rebase_adopts_the_commit(env: Env) -> None:
    ws = open_untracked(env)
    populate(ws)
    before = ws_contents(ws)

    def power_cut(*args: object) -> None:
        raise KeyboardInterrupt("killed before re-basing")

    ws._rebase = power_cut  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        ws.commit("landed")
    landed = env.repo.version("vol")
    del ws
    crash()
    again = env.open()
    assert again.base == landed.ref
    assert ws_contents(again) == before
    write_file(again, ROOT, "more", b"m")
    v = again.commit("next")
    assert v.parent == landed.ref
    assert tree_contents(env.repo, v.root) == ws_contents(again)


def test_head_moved_elsewhere(env: Env) -> None:
    ws = env.open("a")
    write_file(ws, ROOT, "one", b"1")
    ws.commit("from a")
    ws.close()
    other = env.open("b")
    write_file(other, ROOT, "two", b"2")
    other.commit("from b")
    other.close()
    # no local changes in "a": it quietly starts again from the new head
    a = env.open("a")
    assert a.base == env.repo.version("vol").ref
    assert set(ws_contents(a)) == {"one", "two"}
    write_file(a, ROOT, "three", b"3")
    a.close()
    b = env.open("b")
    b.unlink(ROOT, "one")
    b.commit("from b again")
    b.close()
    # local changes on an old base: refused, never merged silently
    raises_errno(errno.ESTALE, env.open, "a")
    a = env.open("a", discard_stale=True)
    assert set(ws_contents(a)) == {"two"}


def test_one_cache_dir_one_working_state(env: Env) -> None:
    env.open()
    raises_errno(errno.EBUSY, env.open)
    env.repo.create_volume("other")
    claim = env.repo.acquire_writer("other", "w", 3600)
    env.open("o", claim=claim).close()
    raises_errno(errno.EINVAL, env.open, "o")
    assert env.open("o", discard_stale=True).readdir(ROOT) == []


def test_leftover_files_are_removed_on_open(env: Env) -> None:
    ws = env.open()
    write_file(ws, ROOT, "f", b"keep")
    ws.close()
    (env.cache() / "dirty" / "999999").write_bytes(b"junk from a crash")
    stray = env.cache() / "staged" / "ab" / ("ab" + "0" * 62)
    stray.parent.mkdir(exist_ok=True)
    stray.write_bytes(b"junk")
    again = env.open()
    assert not (env.cache() / "dirty" / "999999").exists() and not stray.exists()
    assert again.read(resolve(again, "f"), 0, 10) == b"keep"
    ino = write_file(again, ROOT, "g", b"new")  # dirty file numbers continue past junk
    assert again.read(ino, 0, 10) == b"new"


_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from strata.meta.repo import Repository
    from strata.meta.working import WorkingState
    from strata.store.local import LocalStore

    store, cache = sys.argv[1], sys.argv[2]
    repo = Repository.open(LocalStore(store))
    claim = repo.acquire_writer("vol", "writer-1", 3600)
    ws = WorkingState.open(repo, claim, cache)
    d = ws.mkdir(1, "d", 0o755)
    ino = ws.create(d.ino, "synced", 0o644).ino
    ws.write(ino, 0, b"x" * (5 * 1024 * 1024) + b"tail")
    ws.fsync(ino)
    late = ws.create(1, "late", 0o644).ino
    ws.write(late, 0, b"written, never fsynced")
    print("ready", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_kill_9_loses_nothing_fsynced(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    repo = Repository.open(store)
    repo.create_volume("vol")
    cache = tmp_path / "cache"
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tmp_path / "store"), str(cache)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])},
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert proc.stdout.strip() == "ready"
    claim = repo.acquire_writer("vol", "writer-1", 3600)  # the restarted daemon
    ws = WorkingState.open(repo, claim, cache, background_seal=False)
    try:
        synced = resolve(ws, "d/synced")
        assert ws.read(synced, 0, 6 * 1024 * 1024) == b"x" * (5 * 1024 * 1024) + b"tail"
        # normal mode commits every operation: an un-fsynced write survives a kill too
        assert ws.read(resolve(ws, "late"), 0, 100) == b"written, never fsynced"
        v = ws.commit("after kill -9")
        assert tree_contents(repo, v.root) == ws_contents(ws)
    finally:
        ws.close()
