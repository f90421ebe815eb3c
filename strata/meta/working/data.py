"""File data operations: read, write, truncate, fsync, checkpoint.

Built on the block life cycle of :mod:`strata.meta.working.blocks`. Every operation
plans first (which blocks it touches, which store chunks copy-on-write needs -- those
are fetched without the lock via NeedIO) and changes second, so a retry never repeats
a side effect. Nothing buffers a whole file: a file larger than memory (or 4 GiB) is
just more blocks, and a hole is no block at all.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import overload

from strata.meta.entry import BlockRef
from strata.meta.working.base import DIRTY, REMOTE, STORED, B, block_len, nblocks
from strata.meta.working.fastwrite import FastWrites
from strata.meta.working.types import FsError

#: store blocks fetched ahead of a sequential reader (each is CHUNK_SIZE)
_READ_AHEAD = 2
#: files whose last read end is remembered (to recognise sequential reads)
_READ_ENDS = 256


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


class Data(FastWrites):
    """read / write / truncate / fsync / checkpoint."""

    # --- reads -----------------------------------------------------------------------

    def read(self, ino: int, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset`` (short only at end of file; holes are 0).

        Only the plan is made under the lock; local block files are read through
        duplicated descriptors after it is released, so reads (and a cold disk) never
        hold up other operations. A sealed or dropped block file stays readable
        through its descriptor, so what is read is what the plan named.
        """
        if offset < 0 or size < 0:
            raise FsError(errno.EINVAL, f"bad read range offset={offset} size={size}")
        with self._lock:
            plan = None if self._closed else self._fast_plan(ino, offset, size)
        if plan is None:
            plan = self._run_ro(lambda: self._plan_read(ino, offset, size))
        start, end, fsize, local, remote, ahead = plan
        pieces: list[tuple[int, bytes]] = []
        try:
            for lo, piece in local:
                if isinstance(piece, tuple):
                    fd, at, length = piece
                    data = os.pread(fd, length, at)
                    if len(data) < length:  # a sparse tail reads as zeros
                        data += bytes(length - len(data))
                    piece = data
                pieces.append((lo, piece))
        except OSError as exc:
            raise FsError(exc.errno or errno.EIO, f"local cache I/O failed: {exc}") from exc
        finally:
            for _, piece in local:
                if isinstance(piece, tuple):
                    os.close(piece[0])
        if end <= start:
            return b""
        if ahead:
            self._blocks_reader.prefetch(_RemoteView(ahead, fsize), sorted(ahead))
        if not remote and len(pieces) == 1 and len(pieces[0][1]) == end - start:
            return pieces[0][1]  # the whole range from one block: no assembly copy
        if remote:
            view = _RemoteView(remote, fsize)
            out = bytearray(self._fetching(self._blocks_reader.read, view, start, end - start))
        else:
            out = bytearray(end - start)
        for lo, data in pieces:
            out[lo - start : lo - start + len(data)] = data
        return bytes(out)

    def _plan_read(
        self, ino: int, offset: int, size: int
    ) -> tuple[
        int,
        int,
        int,
        list[tuple[int, bytes | tuple[int, int, int]]],
        dict[int, BlockRef],
        dict[int, BlockRef],
    ]:
        """What a read needs (locked): inline bytes, ``(dup'd fd, offset, length)`` of
        local block files to read after the lock, store blocks to fetch, and store
        blocks to prefetch (the next ones, when this read continues the last one)."""
        row = self._file(ino)
        fsize = row["size"]
        end = min(offset + size, fsize)
        local: list[tuple[int, bytes | tuple[int, int, int]]] = []
        remote: dict[int, BlockRef] = {}
        ahead: dict[int, BlockRef] = {}
        paths: dict[int, Path] = {}
        if end <= offset:
            return offset, offset, fsize, local, remote, ahead
        first, last = offset // B, (end - 1) // B
        # A read that continues the previous one (and is not at the end) reads ahead.
        sequential = self._read_ends.get(ino) == offset and end < fsize
        self._read_ends[ino] = end
        self._read_ends.move_to_end(ino)
        while len(self._read_ends) > _READ_ENDS:
            self._read_ends.popitem(last=False)
        hi_idx = min(last + _READ_AHEAD, (fsize - 1) // B) if sequential else last
        try:
            if row["blocks_loaded"]:
                for b in self._db.x(
                    "SELECT * FROM blocks WHERE ino = ? AND idx BETWEEN ? AND ?",
                    (ino, first, hi_idx),
                ):
                    idx = b["idx"]
                    if idx > last:
                        if b["state"] == REMOTE:
                            ahead[idx] = BlockRef(b["hash"], b["size"])
                        continue
                    s = idx * B
                    lo, hi = max(offset, s), min(end, s + B)
                    if b["data"] is not None:
                        local.append((lo, self._local_read(b, lo - s, hi - lo) or b""))
                        continue
                    path = self._block_path(b)
                    if path is None:
                        remote[idx] = BlockRef(b["hash"], b["size"])
                    else:
                        local.append((lo, (os.dup(self._fd(path)), lo - s, hi - lo)))
                        paths[idx] = path
            else:
                blocks = self._base_block_list(row)
                for idx in range(first, min(hi_idx + 1, len(blocks))):
                    if blocks[idx].hash:
                        (ahead if idx > last else remote)[idx] = blocks[idx]
        except BaseException:
            for _, piece in local:
                if isinstance(piece, tuple):
                    os.close(piece[0])
            raise
        if not remote:
            ahead = {}  # read-ahead only for files being read from the store
            if len(paths) == last - first + 1:
                self._remember_read(ino, fsize, paths)
        return offset, end, fsize, local, remote, ahead

    # The read fast path: a file whose blocks are all local files, read again while no
    # statement has changed any row (``Db.generation``, as for FastWrites) and no write
    # is pending in memory, is planned from memory -- no SQLite lookups per 128 KiB.

    def _remember_read(self, ino: int, size: int, paths: dict[int, Path]) -> None:
        generation = self._db.generation
        if self._read_generation != generation or len(self._read_files) >= _READ_ENDS:
            self._read_files.clear()
            self._read_generation = generation
        known = self._read_files.get(ino)
        if known is None or known[0] != size:
            self._read_files[ino] = (size, dict(paths))
        else:
            known[1].update(paths)

    def _fast_plan(
        self, ino: int, offset: int, size: int
    ) -> tuple[int, int, int, list[tuple[int, bytes | tuple[int, int, int]]], dict, dict] | None:
        """The read plan from memory, or None when the full plan must run (locked)."""
        if self._read_generation != self._db.generation or self._db.pending is not None:
            return None
        known = self._read_files.get(ino)
        if known is None:
            return None
        fsize, paths = known
        end = min(offset + size, fsize)
        if end <= offset:
            return None  # (the full path answers EOF and keeps its bookkeeping)
        local: list[tuple[int, bytes | tuple[int, int, int]]] = []
        fds: list[int] = []
        for idx in range(offset // B, (end - 1) // B + 1):
            path = paths.get(idx)
            try:
                fd = os.dup(self._fd(path)) if path is not None else -1
            except (OSError, FsError):  # a local copy trimmed since: forget the file
                self._read_files.pop(ino, None)
                fd = -1
            if fd < 0:
                for opened in fds:
                    os.close(opened)
                return None
            fds.append(fd)
            s = idx * B
            lo, hi = max(offset, s), min(end, s + B)
            local.append((lo, (fd, lo - s, hi - lo)))
        self._read_ends[ino] = end
        return offset, end, fsize, local, {}, {}

    # --- writes ----------------------------------------------------------------------

    def write(self, ino: int, offset: int, data: bytes | bytearray | memoryview) -> int:
        """Write ``data`` at ``offset`` (extending the file, leaving holes before it)."""
        if offset < 0:
            raise FsError(errno.EINVAL, f"negative write offset {offset}")
        view = memoryview(data).cast("B")
        if not view.nbytes:
            self._run_ro(lambda: self._file(ino))  # ENOENT/EISDIR as for a real write
            return 0
        end = offset + view.nbytes
        with self._lock:
            full_block = None if self._closed else self._fast_write(ino, offset, view)
        if full_block is not None:
            if full_block:
                self._schedule_seal(ino, [offset // B])
            return view.nbytes
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
            known = {
                idx: self._make_dirty(ino, idx, rows.get(idx), keep, fetched)
                for idx, keep in sorted(need_old.items())
            }
            dfiles = {}
            for idx in range(first, last + 1):
                s = idx * B
                lo, hi = max(offset, s), min(end, s + B)
                piece = view[lo - offset : hi - offset]
                if dfile := self._block_write(ino, idx, lo - s, piece, known[idx]):
                    dfiles[idx] = dfile
            now = self._now()
            self._set(ino, size=new_size, mtime_ns=now, ctime_ns=now)
            self._size_stats(size, new_size)
            self._touch_data(row)
            if dfiles and not self._committing:
                self._db.defer(lambda: self._remember_hot(ino, new_size, dfiles))
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
        if b is None or not (rewrite or b["state"] == DIRTY):
            return  # no edge block, a hole, or one whose length stays right
        self._make_dirty(ino, b["idx"], b, True, fetched)
        if shrinking:
            fresh = self._db.one("SELECT * FROM blocks WHERE ino = ? AND idx = ?", (ino, b["idx"]))
            assert fresh is not None
            self._cut_dirty(fresh, block_len(b["idx"], size))

    # --- durability --------------------------------------------------------------------

    def fsync(self, ino: int, datasync: bool = False) -> None:
        """Make the file's data and all metadata so far survive a crash or power cut."""
        with self._lock:
            self._inode(ino)
            paths = self._unsynced_paths("AND ino = ?", (ino,))
        self._sync_files(paths)
        self._durable()

    def checkpoint(self) -> None:
        """Durably snapshot the whole overlay (the autosave timer calls this)."""
        with self._lock:
            paths = self._unsynced_paths("", ())
        self._sync_files(paths)
        self._durable()

    def _unsynced_paths(self, where: str, args: tuple[int, ...]) -> list[Path]:
        """Local files holding not-yet-stored blocks (inline blocks sync with the db)."""
        rows = self._db.x(
            f"SELECT * FROM blocks WHERE state < ? AND data IS NULL {where}", (STORED, *args)
        )
        return [p for b in rows if (p := self._block_path(b)) is not None]

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
