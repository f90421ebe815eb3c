"""Working state: file data -- aligned blocks, sparse files, truncate, copy-on-write."""

from __future__ import annotations

import os

from strata.meta.working import WorkingState

from .test_working_support import ROOT, B, Env, MiB, resolve, tree_contents, write_file


def pattern(n: int, seed: int = 0) -> bytes:
    """Bytes that differ at every offset, so a misplaced block cannot go unnoticed."""
    unit = bytes((i * 7 + seed) % 251 for i in range(251))
    return (unit * (n // 251 + 1))[:n]


class Model:
    """The file as a plain bytearray, to compare the working state against."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, off: int, data: bytes) -> None:
        if off > len(self.data):
            self.data += bytes(off - len(self.data))
        self.data[off : off + len(data)] = data

    def truncate(self, size: int) -> None:
        if size < len(self.data):
            del self.data[size:]
        else:
            self.data += bytes(size - len(self.data))


def test_write_read_overwrite_append(ws: WorkingState) -> None:
    ino = ws.create(ROOT, "f", 0o644).ino
    assert ws.write(ino, 0, b"hello world") == 11
    assert ws.read(ino, 0, 100) == b"hello world"
    assert ws.read(ino, 6, 3) == b"wor"
    ws.write(ino, 6, b"WORLD!!")
    assert ws.read(ino, 0, 100) == b"hello WORLD!!"
    ws.write(ino, 13, b" more")
    assert ws.read(ino, 0, 100) == b"hello WORLD!! more"
    assert ws.read(ino, 18, 10) == b"" and ws.read(ino, 1000, 10) == b""
    assert ws.write(ino, 3, b"") == 0
    assert ws.getattr(ino).size == 18


def test_writes_across_block_boundaries(ws: WorkingState) -> None:
    ino = ws.create(ROOT, "f", 0o644).ino
    data = pattern(2 * B + 12345)
    ws.write(ino, 0, data)
    assert ws.read(ino, 0, len(data) + 10) == data
    ws.write(ino, B - 5, b"X" * 10)  # straddles blocks 0 and 1
    expected = data[: B - 5] + b"X" * 10 + data[B + 5 :]
    assert ws.read(ino, B - 100, 200) == expected[B - 100 : B + 100]
    assert ws.read(ino, 0, len(data)) == expected


def test_sparse_file_reads_zeros_and_commits_holes(env: Env, ws: WorkingState) -> None:
    ino = ws.create(ROOT, "sparse", 0o644).ino
    ws.write(ino, 2 * B + 100, b"tail")
    assert ws.getattr(ino).size == 2 * B + 104
    assert ws.read(ino, 0, 10) == bytes(10)
    assert ws.read(ino, B - 2, 4) == bytes(4)
    assert ws.read(ino, 2 * B + 98, 10) == b"\0\0tail"
    v = ws.commit("sparse")
    entry = env.repo.trees.lookup(v.root, "sparse")
    assert entry is not None
    blocks = list(env.repo.trees.iter_blocks(entry.content))
    assert [b.hash == "" for b in blocks] == [True, True, False]
    assert [b.size for b in blocks] == [B, B, 104]
    assert tree_contents(env.repo, v.root)["sparse"][1] == bytes(2 * B + 100) + b"tail"


def test_truncate_down_and_up_across_blocks(ws: WorkingState) -> None:
    ino = ws.create(ROOT, "f", 0o644).ino
    model = Model()
    for op in [
        ("w", 0, pattern(3 * B)),
        ("t", 2 * B + 10),  # inside the last block
        ("t", B),  # exactly on a boundary: drops whole blocks
        ("t", B - 1),
        ("t", 3 * B + 7),  # grow: the tail reads as zeros, not old bytes
        ("w", B + 3, b"mid"),
        ("t", 0),
        ("t", 5),
        ("w", 2, b"ab"),
    ]:
        if op[0] == "w":
            ws.write(ino, op[1], op[2])
            model.write(op[1], op[2])
        else:
            ws.truncate(ino, op[1])
            model.truncate(op[1])
        assert ws.getattr(ino).size == len(model.data)
        assert ws.read(ino, 0, len(model.data) + 1) == bytes(model.data), op[:2]


def test_truncate_then_extend_never_resurrects_old_bytes(env: Env, ws: WorkingState) -> None:
    """Old data past a truncation must read as zeros after growing again -- also when
    the block was committed (copy-on-write of the stored block)."""
    ino = write_file(ws, ROOT, "f", pattern(B + 1000, seed=3))
    ws.commit("base")
    ws.truncate(ino, B + 10)
    ws.truncate(ino, B + 1000)
    assert ws.read(ino, B, 1000) == pattern(B + 1000, seed=3)[B : B + 10] + bytes(990)
    ws.truncate(ino, 10)
    ws.write(ino, B + 999, b"!")
    got = ws.read(ino, 0, B + 1000)
    assert got == pattern(10, seed=3) + bytes(B + 989) + b"!"
    v = ws.commit("again")
    assert tree_contents(env.repo, v.root)["f"][1] == got


def test_partial_write_to_a_committed_block_copies_it(env: Env) -> None:
    ws = env.open()
    data = pattern(2 * B + 5, seed=1)
    write_file(ws, ROOT, "f", data)
    ws.commit("base")
    ws.close()
    fresh = env.open("fresh")  # reads every block from the store
    ino = resolve(fresh, "f")
    fresh.write(ino, B + 10, b"patch")
    expected = data[: B + 10] + b"patch" + data[B + 15 :]
    assert fresh.read(ino, 0, len(data)) == expected
    v = fresh.commit("patched")
    assert tree_contents(env.repo, v.root)["f"][1] == expected
    old = env.repo.trees.lookup(env.repo.log("vol")[1].root, "f")
    new = env.repo.trees.lookup(v.root, "f")
    assert old is not None and new is not None
    old_b = list(env.repo.trees.iter_blocks(old.content))
    new_b = list(env.repo.trees.iter_blocks(new.content))
    assert old_b[0] == new_b[0] and old_b[2] == new_b[2]  # untouched blocks are shared
    assert old_b[1] != new_b[1]


def test_extending_a_committed_short_last_block_rehashes_it(env: Env) -> None:
    ws = env.open()
    write_file(ws, ROOT, "f", b"short")
    ws.commit("base")
    ws.close()
    fresh = env.open("fresh")
    ino = resolve(fresh, "f")
    fresh.write(ino, B + 1, b"z")  # block 0 becomes a whole middle block
    assert fresh.read(ino, 0, 8) == b"short\0\0\0"
    v = fresh.commit("grown")
    assert tree_contents(env.repo, v.root)["f"][1] == b"short" + bytes(B - 4) + b"z"
    fresh.truncate(ino, 3)  # and shorter again: the stored block must be re-cut
    v = fresh.commit("cut")
    assert tree_contents(env.repo, v.root)["f"][1] == b"sho"


def test_file_larger_than_4_gib_is_sparse_and_paged(env: Env, ws: WorkingState) -> None:
    ino = ws.create(ROOT, "huge", 0o644).ino
    off = 5 * 1024 * MiB + 3
    ws.write(ino, off, b"far away")
    ws.write(ino, 7, b"near")
    assert ws.getattr(ino).size == off + 8
    assert ws.read(ino, off - 2, 100) == b"\0\0far away"
    assert ws.read(ino, 4 * 1024 * MiB, 16) == bytes(16)
    v = ws.commit("huge")
    entry = env.repo.trees.lookup(v.root, "huge")
    assert entry is not None and entry.size == off + 8
    assert entry.content.pages  # a 1281-block list is paged, not inline
    ws.close()
    fresh = env.open("fresh")
    ino = resolve(fresh, "huge")
    assert fresh.read(ino, off, 100) == b"far away"
    assert fresh.read(ino, 0, 11) == b"\0" * 7 + b"near"
    fresh.write(ino, off + 8, b"!")  # materialises the paged block map
    assert fresh.read(ino, off, 100) == b"far away!"
    disk = sum(f.stat().st_blocks * 512 for f in env.cache("fresh").rglob("*") if f.is_file())
    assert disk < 64 * MiB  # holes are never stored locally either


def test_random_writes_and_truncates_match_a_model(ws: WorkingState) -> None:
    import random

    rnd = random.Random(7)
    ino = ws.create(ROOT, "f", 0o644).ino
    model = Model()
    for step in range(60):
        if rnd.random() < 0.75:
            off = rnd.randrange(0, 3 * B)
            data = os.urandom(rnd.choice([1, 100, 4096, B // 3, B + 17]))
            ws.write(ino, off, data)
            model.write(off, data)
        else:
            size = rnd.randrange(0, 3 * B)
            ws.truncate(ino, size)
            model.truncate(size)
        if step % 20 == 19:
            ws.commit(f"step {step}")
        assert ws.getattr(ino).size == len(model.data)
    assert ws.read(ino, 0, len(model.data)) == bytes(model.data)


def test_background_sealing_stages_full_blocks(env: Env) -> None:
    ws = env.open(background_seal=True)
    ino = ws.create(ROOT, "f", 0o644).ino
    data = pattern(2 * B + 10)
    for off in range(0, len(data), MiB):
        ws.write(ino, off, data[off : off + MiB])
    ws.release_handle(ino)  # seals the partial tail block too
    assert ws._sealer is not None
    ws._sealer.submit(lambda: None).result()  # wait for the queue to drain
    states = [r[0] for r in ws._db.x("SELECT state FROM blocks WHERE ino = ?", (ino,))]
    assert states == [1, 1, 1]  # all SEALED
    staged = [p for p in (env.cache() / "staged").rglob("*") if p.is_file()]
    assert len(staged) == 2  # the 10-byte tail stays inline in its database row
    assert ws.read(ino, 0, len(data)) == data
    ws.write(ino, 5, b"after seal")  # copy-on-write from the staged copy
    assert ws.read(ino, 0, 20) == data[:5] + b"after seal" + data[15:20]
    v = ws.commit("sealed")
    assert tree_contents(env.repo, v.root)["f"][1] == data[:5] + b"after seal" + data[15:]


def test_small_blocks_stay_inline_until_they_grow(env: Env, ws: WorkingState) -> None:
    ino = ws.create(ROOT, "f", 0o644).ino
    first = pattern(60 * 1024, seed=5)
    ws.write(ino, 0, first)
    assert list((env.cache() / "dirty").iterdir()) == []  # no file for a small block
    ws.write(ino, 60 * 1024, b"z" * 10 * 1024)  # past the inline limit: spills to a file
    assert len(list((env.cache() / "dirty").iterdir())) == 1
    assert ws.read(ino, 0, 80 * 1024) == first + b"z" * 10 * 1024
    ws.truncate(ino, 100)
    ws.truncate(ino, 200)
    assert ws.read(ino, 0, 300) == first[:100] + bytes(100)
    v = ws.commit("spilled")
    assert tree_contents(env.repo, v.root)["f"][1] == first[:100] + bytes(100)
