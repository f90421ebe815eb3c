"""Working state: the fast write path (writes into a DIRTY block skip the database).

Each test checks what a program would see -- sizes, bytes, stats, commits, recovery --
while writes take the fast path; ``db.generation`` staying put is how a test knows they
did (no statement changed a row).
"""

from __future__ import annotations

import gc

import pytest

import strata.meta.working.blocks as blocks
from strata.chunks.hashing import content_hash
from strata.meta.working import WorkingState

from .test_working_support import ROOT, B, Env, resolve, tree_contents

K128 = 128 * 1024


def chunk(i: int) -> bytes:
    return bytes([i % 251]) * K128


def stream(ws: WorkingState, ino: int, start: int, count: int) -> bytes:
    """Write ``count`` 128 KiB pieces from ``start``, as a sequential FUSE writer does."""
    out = b""
    for i in range(count):
        ws.write(ino, start + i * K128, chunk(i))
        out += chunk(i)
    return out


def test_sequential_writes_after_the_first_skip_the_database(ws: WorkingState) -> None:
    ino = ws.create(ROOT, "big", 0o644).ino
    ws.write(ino, 0, chunk(0))  # makes block 0 DIRTY (full path)
    generation = ws._db.generation
    for i in range(1, 8):
        ws.write(ino, i * K128, chunk(i))
    assert ws._db.generation == generation, "in-block writes ran statements"
    assert ws.getattr(ino).size == 8 * K128  # pending size is visible to readers
    assert ws.read(ino, 0, 8 * K128) == b"".join(chunk(i) for i in range(8))


def test_fast_writes_keep_times_and_stats_right(ws: WorkingState) -> None:
    ino = ws.create(ROOT, "f", 0o644).ino
    ws.write(ino, 0, chunk(0))
    before = ws.getattr(ino).mtime_ns
    ws.write(ino, K128, chunk(1))
    after = ws.getattr(ino)
    assert after.size == 2 * K128 and after.mtime_ns >= before
    assert after.ctime_ns == after.mtime_ns
    assert ws.statfs().bytes == 2 * K128


def test_commit_sees_every_fast_write(env: Env, ws: WorkingState) -> None:
    ino = ws.create(ROOT, "f", 0o644).ino
    data = stream(ws, ino, 0, 40)  # crosses into a second block
    v = ws.commit("streamed")
    assert tree_contents(env.repo, v.root)["f"][1] == data
    more = stream(ws, ino, len(data), 3)
    v2 = ws.commit("more")
    assert tree_contents(env.repo, v2.root)["f"][1] == data + more


def test_overwrites_inside_the_file_do_not_change_its_size(ws: WorkingState) -> None:
    ino = ws.create(ROOT, "f", 0o644).ino
    stream(ws, ino, 0, 4)
    ws.write(ino, 10, b"xyz")  # full path again? either way the size stays
    ws.write(ino, K128 + 5, b"abc")
    assert ws.getattr(ino).size == 4 * K128
    assert ws.read(ino, K128 + 4, 5) == bytes([1]) + b"abc" + bytes([1])


def test_truncate_after_fast_writes_starts_from_the_real_size(ws: WorkingState) -> None:
    ino = ws.create(ROOT, "f", 0o644).ino
    stream(ws, ino, 0, 6)
    ws.truncate(ino, 3 * K128 + 7)
    assert ws.getattr(ino).size == 3 * K128 + 7
    ws.truncate(ino, 5 * K128)  # grows again: the cut tail must read as zeros
    assert ws.read(ino, 3 * K128, 2 * K128) == chunk(3)[:7] + bytes(2 * K128 - 7)


def test_a_write_during_a_seal_keeps_the_block_dirty(
    ws: WorkingState, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seal hashes outside the lock; a fast write meanwhile must make it give up."""
    ino = ws.create(ROOT, "f", 0o644).ino
    data = bytearray(stream(ws, ino, 0, 32))  # exactly one full block
    generation = ws._db.generation

    def hash_then_write(buf: bytes) -> str:
        digest = content_hash(buf)
        ws.write(ino, K128, b"late")  # lands between the hash and the apply
        return digest

    monkeypatch.setattr(blocks, "content_hash", hash_then_write)
    assert ws._seal(ino, 0) is False
    assert ws._db.generation == generation  # the late write took the fast path
    monkeypatch.undo()
    data[K128 : K128 + 4] = b"late"
    assert ws.read(ino, 0, B) == bytes(data)
    ws.seal_all()
    assert ws.read(ino, 0, B) == bytes(data)


def test_a_crash_loses_at_most_the_unflushed_size_and_leaves_zeros(env: Env) -> None:
    ws = env.open()
    ino = ws.create(ROOT, "f", 0o644).ino
    stream(ws, ino, 0, 2)
    ws.fsync(ino)  # durable: 256 KiB
    for i in range(2, 5):  # pending only: not fsync'd
        ws.write(ino, i * K128, chunk(i))
    env.opened.remove(ws)
    del ws
    gc.collect()  # dropped without close: what a kill -9 leaves
    again = env.open()
    f = resolve(again, "f")
    size = again.getattr(f).size
    assert 2 * K128 <= size <= 5 * K128
    assert again.read(f, 0, 2 * K128) == chunk(0) + chunk(1)
    again.truncate(f, 6 * K128)  # whatever was lost past the end reads as zeros
    tail = again.read(f, size, 6 * K128 - size)
    assert tail == bytes(len(tail))


def test_fsync_makes_fast_writes_durable(env: Env) -> None:
    ws = env.open()
    ino = ws.create(ROOT, "f", 0o644).ino
    data = stream(ws, ino, 0, 5)
    ws.fsync(ino)
    env.opened.remove(ws)
    del ws
    gc.collect()
    again = env.open()
    f = resolve(again, "f")
    assert again.getattr(f).size == 5 * K128
    assert again.read(f, 0, 5 * K128) == data


def test_repeated_reads_of_local_blocks_are_planned_from_memory(
    ws: WorkingState, monkeypatch: pytest.MonkeyPatch
) -> None:
    ino = ws.create(ROOT, "f", 0o644).ino
    data = stream(ws, ino, 0, 40)  # two blocks, both local
    ws.seal_all()
    plans: list[int] = []
    full_plan = ws._plan_read
    monkeypatch.setattr(ws, "_plan_read", lambda *a: plans.append(a[1]) or full_plan(*a))
    got = b"".join(ws.read(ino, off, K128) for off in range(0, len(data), K128))
    assert got == data
    assert len(plans) <= 2, "every read ran the full plan"


def test_reads_after_a_fast_write_see_the_new_size_and_bytes(ws: WorkingState) -> None:
    ino = ws.create(ROOT, "f", 0o644).ino
    stream(ws, ino, 0, 2)
    assert ws.read(ino, 0, 4 * K128) == chunk(0) + chunk(1)  # remembered at 2 pieces
    ws.getattr(ino)  # flushes the pending size with no other change
    ws.write(ino, 2 * K128, chunk(2))  # fast path: the file grows in memory
    ws.getattr(ino)
    assert ws.read(ino, 0, 4 * K128) == chunk(0) + chunk(1) + chunk(2)
    ws.write(ino, 0, b"new")
    assert ws.read(ino, 0, 3) == b"new"


def test_a_trimmed_local_copy_is_read_from_the_store(env: Env) -> None:
    ws = env.open()
    ino = ws.create(ROOT, "f", 0o644).ino
    data = stream(ws, ino, 0, 32)
    ws.commit("stored")
    assert ws.read(ino, 0, B) == data  # remembered: the staged copy
    assert ws.trim_staged(0) == B
    assert ws.read(ino, 0, B) == data


def test_one_drain_seals_every_queued_block_in_one_transaction(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = env.open(background_seal=True)
    files = [ws.create(ROOT, f"small{i}", 0o644).ino for i in range(20)]
    for ino in files:
        ws.write(ino, 0, b"x" * 100)
    ws._sealer.shutdown(wait=True)  # type: ignore[union-attr]  # drain by hand below
    ws._seal_queue = dict.fromkeys((ino, 0) for ino in files)
    commits: list[str] = []
    real_op = ws._db.op

    def counting_op():  # type: ignore[no-untyped-def]
        commits.append("op")
        return real_op()

    monkeypatch.setattr(ws._db, "op", counting_op)
    ws._drain_seals()
    assert len(commits) == 1
    states = {int(r[0]) for r in ws._db.x("SELECT state FROM blocks")}
    assert states == {blocks.SEALED}
