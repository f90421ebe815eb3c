"""File data of the working state: aligned blocks, local staging, background upload.

A file is ``CHUNK_SIZE``-aligned blocks (block ``i`` covers ``[i*B, (i+1)*B)``); no row
in ``blocks`` is a hole (reads as zeros, never stored). A block moves through:

* REMOTE  -- only in the store (a base block, or a block evicted locally);
* DIRTY   -- written since; its bytes live in ``dirty/<dfile>`` and change in place;
* SEALED  -- hashed and hard-linked to ``staged/<hash>`` (immutable from then on),
  handed to the :class:`~strata.chunks.uploader.Uploader` by path, so queued uploads
  hold no memory;
* STORED  -- known to be in the store (after a commit flushed the uploader); the
  staged copy stays as a local read cache.

Writing a part of a non-DIRTY block copies it first (from the staged copy, or from the
store for REMOTE -- the only store I/O on the write path, done without the lock). A
block is sealed in the background as soon as a write reaches its end, and on
``release_handle``; commit seals the rest. Nothing buffers a whole file, so a file larger than
memory (or 4 GiB) is just more blocks.

Two rules keep the block list well formed for every reader: bytes of a DIRTY file past
the file's end are zero; and a non-DIRTY block holds exactly ``block_len`` bytes --
when a size change would break that for the old or new last block, that block is made
DIRTY (copy-on-write) so sealing re-hashes it at its new length.

Dirty files replaced by a seal or a delete are removed only after the next durable
point (``fsync``/``checkpoint``/commit/close), because until then a power cut could
bring back a database state that still names them.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import overload

from strata.chunks.hashing import content_hash
from strata.meta.entry import BlockRef
from strata.meta.working.base import (
    DIRTY,
    SEALED,
    STORED,
    B,
    NeedIO,
    block_len,
    nblocks,
)
from strata.meta.working.loader import Loader
from strata.meta.working.types import FsError

log = logging.getLogger(__name__)

_SEAL_ROUNDS = 3


class _RemoteView(Sequence[BlockRef]):
    """The block list BlockReader reads: REMOTE blocks as they are, the rest holes."""

    def __init__(self, remote: dict[int, BlockRef], size: int) -> None:
        self._remote = remote
        self._size = size
        self._n = nblocks(size)

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, i: int) -> BlockRef: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[BlockRef]: ...
    def __getitem__(self, i: int | slice) -> BlockRef | Sequence[BlockRef]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._n))]
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(i)
        return self._remote.get(i) or BlockRef("", block_len(i, self._size))

    def __iter__(self) -> Iterator[BlockRef]:
        return (self[i] for i in range(self._n))


class Data(Loader):
    """read / write / truncate / fsync, and the block life cycle behind them."""

    _sealer: ThreadPoolExecutor | None

    # --- reads -----------------------------------------------------------------------

    def read(self, ino: int, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset`` (short only at end of file; holes are 0)."""
        if offset < 0 or size < 0:
            raise FsError(errno.EINVAL, f"bad read range offset={offset} size={size}")
        plan = self._run_ro(lambda: self._plan_read(ino, offset, size))
        start, end, fsize, local, remote = plan
        if end <= start:
            return b""
        if remote:
            view = _RemoteView(remote, fsize)
            out = bytearray(self._fetching(self._blocks_reader.read, view, start, end - start))
        else:
            out = bytearray(end - start)
        for lo, piece in local:
            out[lo - start : lo - start + len(piece)] = piece
        return bytes(out)

    def _plan_read(
        self, ino: int, offset: int, size: int
    ) -> tuple[int, int, int, list[tuple[int, bytes]], dict[int, BlockRef]]:
        row = self._file(ino)
        fsize = row["size"]
        end = min(offset + size, fsize)
        local: list[tuple[int, bytes]] = []
        remote: dict[int, BlockRef] = {}
        if end <= offset:
            return offset, offset, fsize, local, remote
        first, last = offset // B, (end - 1) // B
        if row["blocks_loaded"]:
            for b in self._db.x(
                "SELECT * FROM blocks WHERE ino = ? AND idx BETWEEN ? AND ?", (ino, first, last)
            ):
                idx, s = b["idx"], b["idx"] * B
                lo, hi = max(offset, s), min(end, s + B)
                path = self._local_path(b)
                if path is None:
                    remote[idx] = BlockRef(b["hash"], b["size"])
                else:
                    local.append((lo, self._pread(path, hi - lo, lo - s)))
        else:
            blocks = self._base_block_list(row)
            for idx in range(first, min(last + 1, len(blocks))):
                if blocks[idx].hash:
                    remote[idx] = blocks[idx]
        return offset, end, fsize, local, remote

    def _local_path(self, b: sqlite3.Row) -> Path | None:
        """Where a block's bytes are on local disk, or None to read it from the store."""
        state = b["state"]
        if state == DIRTY:
            return self._dirty_path(b["dfile"])
        if state == SEALED:
            return self._staged_path(b["hash"])
        if state == STORED:
            path = self._staged_path(b["hash"])
            if str(path) in self._fds or path.exists():
                return path
        return None

    # --- writes ----------------------------------------------------------------------

    def write(self, ino: int, offset: int, data: bytes | bytearray | memoryview) -> int:
        """Write ``data`` at ``offset`` (extending the file, leaving holes before it)."""
        if offset < 0:
            raise FsError(errno.EINVAL, f"negative write offset {offset}")
        view = memoryview(data).cast("B")
        if not view.nbytes:
            self.getattr(ino)  # ENOENT/EISDIR as for a real write
            return 0
        end = offset + view.nbytes
        fetched: dict[str, bytes] = {}

        def op() -> list[int]:
            row = self._ensure_blocks(self._file(ino))
            size = row["size"]
            new_size = max(size, end)
            first, last = offset // B, (end - 1) // B
            need_old = {
                idx: not (offset <= idx * B and end >= idx * B + block_len(idx, size))
                for idx in range(first, last + 1)
            }
            edge = (size - 1) // B if end > size > 0 and (size - 1) // B < first else None
            rows = self._block_rows(ino, [*need_old, *([edge] if edge is not None else [])])
            if edge is not None and self._needs_rewrite(rows.get(edge), edge, new_size):
                need_old[edge] = True  # the old last block gets longer: re-hash it
            self._prefetch_old(rows, need_old, fetched)
            dfiles = {
                idx: self._make_dirty(ino, idx, rows.get(idx), old, fetched)
                for idx, old in sorted(need_old.items())
            }
            for idx in range(first, last + 1):
                s = idx * B
                lo, hi = max(offset, s), min(end, s + B)
                fd = self._fd(self._dirty_path(dfiles[idx]))
                os.pwrite(fd, view[lo - offset : hi - offset], lo - s)
            now = self._now()
            self._set(ino, size=new_size, mtime_ns=now, ctime_ns=now)
            self._size_stats(size, new_size)
            self._touch_data(row)
            return [i for i in range(first, last + 1) if end >= i * B + B]

        full = self._run(op)
        if full:
            self._schedule_seal(ino, full)
        return view.nbytes

    def truncate(self, ino: int, size: int) -> None:
        """Set the file's length; growing adds a hole, shrinking drops whole blocks."""
        if size < 0:
            raise FsError(errno.EINVAL, f"negative file size {size}")
        fetched: dict[str, bytes] = {}

        def op() -> None:
            row = self._ensure_blocks(self._file(ino))
            old = row["size"]
            now = self._now()
            if size != old:
                self._resize(row, size, fetched)
                self._size_stats(old, size)
                self._touch_data(row)
            self._set(ino, size=size, mtime_ns=now, ctime_ns=now)
            self._touch_inode(ino)

        self._run(op)

    def _resize(self, row: sqlite3.Row, size: int, fetched: dict[str, bytes]) -> None:
        """Change a file's length: drop blocks past the end, re-cut the edge block.

        The edge block is planned (and fetched, via NeedIO) before anything changes.
        """
        ino, old = row["ino"], row["size"]
        shrinking = size < old
        edge: int | None = None
        if shrinking and size % B:
            edge = size // B  # (a whole new last block keeps its length)
        elif not shrinking and old:
            edge = (old - 1) // B
        b = self._block_rows(ino, [edge]).get(edge) if edge is not None else None
        rewrite = self._needs_rewrite(b, edge or 0, size)
        if rewrite and b is not None:
            self._prefetch_old({b["idx"]: b}, {b["idx"]: True}, fetched)
        if shrinking:
            for gone in self._db.x(
                "SELECT * FROM blocks WHERE ino = ? AND idx >= ?", (ino, nblocks(size))
            ).fetchall():
                self._drop_block(gone)
        if b is None:
            return  # no edge block, or a hole: no bytes to re-cut
        if b["state"] == DIRTY:
            dfile = int(b["dfile"])
        elif rewrite:
            dfile = self._make_dirty(ino, b["idx"], b, True, fetched)
        else:
            return
        if shrinking:
            # Zero everything past the new end: bytes past EOF must read as zeros later.
            os.ftruncate(self._fd(self._dirty_path(dfile)), block_len(b["idx"], size))

    @staticmethod
    def _needs_rewrite(b: sqlite3.Row | None, idx: int, size: int) -> bool:
        """A stored block that no longer has its slot's exact length must be re-hashed."""
        return b is not None and b["state"] != DIRTY and b["size"] != block_len(idx, size)

    def _block_rows(self, ino: int, idxs: Iterable[int]) -> dict[int, sqlite3.Row]:
        wanted = set(idxs)
        if not wanted:
            return {}
        return {
            b["idx"]: b
            for b in self._db.x(
                "SELECT * FROM blocks WHERE ino = ? AND idx BETWEEN ? AND ?",
                (ino, min(wanted), max(wanted)),
            )
            if b["idx"] in wanted
        }

    def _prefetch_old(
        self, rows: dict[int, sqlite3.Row], need_old: dict[int, bool], fetched: dict[str, bytes]
    ) -> None:
        """NeedIO for the store chunks copy-on-write needs and does not have yet."""
        missing = sorted(
            {
                b["hash"]
                for idx, b in rows.items()
                if need_old.get(idx) and b["state"] != DIRTY and self._local_path(b) is None
            }
            - fetched.keys()
        )
        if missing:

            def fetch() -> None:
                for h in missing:
                    fetched[h] = self._fetching(self._content.get_chunk, h)

            raise NeedIO(fetch)

    def _make_dirty(
        self,
        ino: int,
        idx: int,
        b: sqlite3.Row | None,
        keep_old: bool,
        fetched: dict[str, bytes],
    ) -> int:
        """Turn block ``idx`` DIRTY (copying its bytes if ``keep_old``); its dfile."""
        if b is not None and b["state"] == DIRTY:
            self._db.x("UPDATE blocks SET gen = gen + 1 WHERE ino = ? AND idx = ?", (ino, idx))
            return int(b["dfile"])
        dfile = self._new_dirty_file()
        if b is None:
            self._db.x(
                "INSERT INTO blocks (ino, idx, state, dfile, gen) VALUES (?, ?, ?, ?, 1)",
                (ino, idx, DIRTY, dfile),
            )
            return dfile
        if keep_old:
            path = self._local_path(b)
            old = self._pread(path, b["size"]) if path is not None else fetched[b["hash"]]
            os.pwrite(self._fd(self._dirty_path(dfile)), old, 0)
        self._release_staged(b)
        self._db.x(
            "UPDATE blocks SET state = ?, hash = '', size = 0, dfile = ?, gen = gen + 1 "
            "WHERE ino = ? AND idx = ?",
            (DIRTY, dfile, ino, idx),
        )
        return dfile

    def _release_staged(self, b: sqlite3.Row) -> None:
        """A block stops referencing its staged copy (SEALED: withdraw its upload)."""
        digest = b["hash"]
        if b["state"] == SEALED:
            self._db.defer(lambda: self._uploader.cancel(digest))
        if b["state"] in (SEALED, STORED):
            self._db.defer(lambda: self._staged_candidates.add(digest))

    def _drop_block(self, b: sqlite3.Row) -> None:
        if b["state"] == DIRTY:
            path = self._dirty_path(b["dfile"])
            self._forget_fd(path)
            self._unlink_after_durable(path)
        self._release_staged(b)
        self._db.x("DELETE FROM blocks WHERE ino = ? AND idx = ?", (b["ino"], b["idx"]))

    def _free_data(self, ino: int) -> None:
        """Drop every block of a file being freed (its uploads are withdrawn)."""
        for b in self._db.x("SELECT * FROM blocks WHERE ino = ?", (ino,)).fetchall():
            self._drop_block(b)

    # --- sealing -----------------------------------------------------------------------

    def _schedule_seal(self, ino: int, idxs: list[int]) -> None:
        if self._sealer is None:
            return
        fut = self._sealer.submit(self._seal_many, [(ino, i) for i in idxs])
        fut.add_done_callback(_log_failure)

    def _seal_many(self, blocks: list[tuple[int, int]]) -> None:
        for ino, idx in blocks:
            self._seal(ino, idx)

    def _seal(self, ino: int, idx: int) -> bool:
        """Hash a DIRTY block without the lock, then stage it if nothing wrote meanwhile."""
        with self._lock:
            if self._closed:
                return False
            b = self._db.one("SELECT * FROM blocks WHERE ino = ? AND idx = ?", (ino, idx))
            row = self._db.one("SELECT size FROM inodes WHERE ino = ?", (ino,))
            if b is None or row is None or b["state"] != DIRTY:
                return True
            gen, blen, path = b["gen"], block_len(idx, row["size"]), self._dirty_path(b["dfile"])
        try:
            with open(path, "rb") as f:
                data = f.read(blen)
        except FileNotFoundError:
            return False  # replaced meanwhile
        data += bytes(blen - len(data))
        digest = content_hash(data)
        done = False

        def apply() -> None:
            nonlocal done
            b2 = self._db.one("SELECT * FROM blocks WHERE ino = ? AND idx = ?", (ino, idx))
            row2 = self._db.one("SELECT size FROM inodes WHERE ino = ?", (ino,))
            if (
                b2 is not None
                and row2 is not None
                and b2["state"] == DIRTY
                and b2["gen"] == gen
                and block_len(idx, row2["size"]) == blen
            ):
                self._stage(b2, digest, blen)
                done = True

        with self._lock:
            if self._closed:
                return False
            with self._db.op():
                apply()
        return done

    def _seal_locked(self, b: sqlite3.Row, size: int) -> None:
        """Seal a DIRTY block entirely under the lock (commit's final pass)."""
        blen = block_len(b["idx"], size)
        data = self._pread(self._dirty_path(b["dfile"]), blen)
        self._stage(b, content_hash(data), blen)

    def _stage(self, b: sqlite3.Row, digest: str, blen: int) -> None:
        """DIRTY → SEALED: link the dirty file as ``staged/<digest>`` and queue it."""
        path = self._dirty_path(b["dfile"])
        if blen == 0:  # a block wholly past EOF cannot exist; be safe
            self._drop_block(b)
            return
        os.ftruncate(self._fd(path), blen)
        staged = self._staged_path(digest)
        staged.parent.mkdir(exist_ok=True)
        with contextlib.suppress(FileExistsError):  # same content already staged
            os.link(path, staged)
        self._db.x(
            "UPDATE blocks SET state = ?, hash = ?, size = ?, dfile = 0 WHERE ino = ? AND idx = ?",
            (SEALED, digest, blen, b["ino"], b["idx"]),
        )
        self._forget_fd(path)
        self._unlink_after_durable(path)
        self._db.defer(lambda: self._submit(digest, staged))

    def _submit(self, digest: str, staged: Path) -> None:
        # A staged file queued for deletion (its digest unreferenced at the last
        # commit) is referenced again: keep it.
        self._unlink_later.pop(staged, None)
        self._uploader.submit(digest, staged)
        if self._flush_submits is not None:
            self._flush_submits.add(digest)

    def seal_all(self) -> None:
        """Seal every DIRTY block now (hashing outside the lock where possible)."""
        for _ in range(_SEAL_ROUNDS):
            with self._lock:
                todo = [
                    (int(r[0]), int(r[1]))
                    for r in self._db.x("SELECT ino, idx FROM blocks WHERE state = ?", (DIRTY,))
                ]
            if not todo:
                return
            for ino, idx in todo:
                self._seal(ino, idx)

    # --- durability --------------------------------------------------------------------

    def fsync(self, ino: int, datasync: bool = False) -> None:
        """Make the file's data and all metadata so far survive a crash or power cut."""
        with self._lock:
            self._inode(ino)
            paths = [
                p
                for b in self._db.x(
                    "SELECT * FROM blocks WHERE ino = ? AND state < ?", (ino, STORED)
                )
                if (p := self._local_path(b)) is not None
            ]
        self._sync_files(paths)
        self._durable()

    def checkpoint(self) -> None:
        """Durably snapshot the whole overlay (the autosave timer calls this)."""
        with self._lock:
            paths = [
                p
                for b in self._db.x("SELECT * FROM blocks WHERE state < ?", (STORED,))
                if (p := self._local_path(b)) is not None
            ]
        self._sync_files(paths)
        self._durable()

    def _sync_files(self, paths: list[Path]) -> None:
        for path in paths:
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue  # sealed or dropped meanwhile; its successor is synced below
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        dirs = [self.cache_dir / "dirty", self.cache_dir / "staged"]
        dirs += [p.parent for p in paths if p.parent.name != "dirty"]
        for d in dict.fromkeys(dirs):
            _fsync_dir(d)

    def _durable(self) -> None:
        """Database durable, then delete files no durable state can name any more."""
        with self._lock:
            if self._closed:
                return
            self._db.durable()
            doomed, self._unlink_later = self._unlink_later, {}
            for path in doomed:
                self._forget_fd(path)
                path.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _log_failure(fut: Future[None]) -> None:
    exc = fut.exception()
    if exc is not None:
        # Not fatal: the block stays DIRTY and the next seal pass (commit) retries it.
        log.warning("background seal failed: %s", exc)
