"""The life cycle of one file block: local bytes, copy-on-write, sealing, upload.

A file is ``CHUNK_SIZE``-aligned blocks (block ``i`` covers ``[i*B, (i+1)*B)``); no row
in ``blocks`` is a hole (reads as zeros, never stored). A block moves through:

* REMOTE  -- only in the store (a base block);
* DIRTY   -- written since; its bytes change in place;
* SEALED  -- hashed, immutable from then on, handed to the
  :class:`~strata.chunks.uploader.Uploader`; not known to be stored yet;
* STORED  -- known to be in the store (a commit flushed the uploader); the local copy
  stays as a read cache.

Where the bytes live. A block of at most ``INLINE_MAX`` bytes lives *inline* in its
database row (``blocks.data``): creating a small file costs no file creation, which
dominates small-file speed (package installs, builds), and its bytes are as durable
as the row. A larger block lives in ``dirty/<dfile>`` while DIRTY; sealing hard-links
that file as ``staged/<hash>`` (zero-copy) and the uploader reads it by path, so a
backlog of big blocks holds no memory. Inline blocks are handed over as bytes while
the uploader's backlog is short (``queued`` = 1), else at commit.

Writing a part of a non-DIRTY block copies it first (from the local copy, or from the
store for REMOTE -- the only store I/O on the write path, done without the lock).

Two rules keep the block list well formed for every reader: bytes of a DIRTY block past
the file's end are zero; and a non-DIRTY block holds exactly ``block_len`` bytes --
when a size change would break that for the old or new last block, that block is made
DIRTY (copy-on-write) so sealing re-hashes it at its new length.

Dirty files replaced by a seal or a delete are removed only after the next durable
point (``fsync``/``checkpoint``/commit/close), because until then a power cut could
bring back a database state that still names them. Side effects outside the database
(uploads withdrawn, files queued for deletion) go through ``Db.defer``: they happen
only if the operation commits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from strata.chunks.hashing import content_hash
from strata.meta.working.base import DIRTY, SEALED, STORED, NeedIO, block_len
from strata.meta.working.loader import Loader

log = logging.getLogger(__name__)

#: largest block kept in its database row rather than in a file of its own
INLINE_MAX = 64 * 1024
#: inline blocks are queued for upload at seal time while fewer uploads are pending
_QUEUE_LIMIT = 4096
#: big sealed blocks are handed to the uploader as bytes while fewer uploads are pending
_BYTES_QUEUE_LIMIT = 8
_SEAL_ROUNDS = 3


class Blocks(Loader):
    """Block-level helpers for :class:`~strata.meta.working.data.Data` and commit."""

    _sealer: ThreadPoolExecutor | None
    #: blocks waiting for the background sealer (an ordered set), under _seal_lock
    _seal_queue: dict[tuple[int, int], None]
    _seal_lock: threading.Lock

    # --- local bytes (locked) --------------------------------------------------------

    def _local_read(self, b: sqlite3.Row, offset: int, length: int) -> bytes | None:
        """``length`` bytes at ``offset`` of the block from local storage, or None."""
        if b["data"] is not None:
            piece = bytes(b["data"][offset : offset + length])
            return piece + bytes(length - len(piece))
        path = self._block_path(b)
        return None if path is None else self._pread(path, length, offset)

    def _has_local(self, b: sqlite3.Row) -> bool:
        return b["data"] is not None or self._block_path(b) is not None

    def _block_path(self, b: sqlite3.Row) -> Path | None:
        """The local file holding a file-backed block's bytes, if there is one."""
        state = b["state"]
        if state == DIRTY:
            return self._dirty_path(b["dfile"]) if b["dfile"] else None
        if state == SEALED and b["data"] is None:
            return self._staged_path(b["hash"])
        if state == STORED and b["data"] is None:
            path = self._staged_path(b["hash"])
            if str(path) in self._fds or path.exists():
                return path
        return None

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

    # --- making blocks DIRTY (locked, inside an op) ------------------------------------

    def _prefetch_old(
        self, rows: dict[int, sqlite3.Row], need_old: dict[int, bool], fetched: dict[str, bytes]
    ) -> None:
        """NeedIO for the store chunks copy-on-write needs and does not have yet."""
        missing = sorted(
            {
                b["hash"]
                for idx, b in rows.items()
                if need_old.get(idx) and b["state"] != DIRTY and not self._has_local(b)
            }
            - fetched.keys()
        )
        if missing:

            def fetch() -> None:
                for h in missing:
                    fetched[h] = self._fetching(self._content.get_chunk, h)

            raise NeedIO(fetch)

    @staticmethod
    def _needs_rewrite(b: sqlite3.Row | None, idx: int, size: int) -> bool:
        """A stored block that no longer has its slot's exact length must be re-hashed."""
        return b is not None and b["state"] != DIRTY and b["size"] != block_len(idx, size)

    def _make_dirty(
        self,
        ino: int,
        idx: int,
        b: sqlite3.Row | None,
        keep_old: bool,
        fetched: dict[str, bytes],
    ) -> tuple[int, bytes | None]:
        """Turn block ``idx`` DIRTY, copying its bytes if ``keep_old`` (a hole: empty).

        Returns the block's ``(dfile, data)`` as it now stands, so the write that
        follows needs no second look at the row.
        """
        if b is not None and b["state"] == DIRTY:
            # In place: only a seal hashing this block right now must notice, and seals
            # live in this process, so the write count is kept in memory (no UPDATE).
            self._writes[(ino, idx)] = self._writes.get((ino, idx), 0) + 1
            return b["dfile"], b["data"]
        old = b""
        if b is not None:
            if keep_old:
                local = self._local_read(b, 0, b["size"])
                old = local if local is not None else fetched[b["hash"]]
            self._release_staged(b)
        dfile, data = 0, old
        if len(old) > INLINE_MAX:
            dfile = self._new_dirty_file()
            os.pwrite(self._dirty_fd(dfile), old, 0)
            data = None  # type: ignore[assignment]
        self._db.x(
            "INSERT OR REPLACE INTO blocks (ino, idx, state, hash, size, dfile, gen, data, "
            "queued) VALUES (?, ?, ?, '', 0, ?, ?, ?, 0)",
            (ino, idx, DIRTY, dfile, (b["gen"] + 1) if b is not None else 1, data),
        )
        return dfile, data

    def _block_write(
        self,
        ino: int,
        idx: int,
        at: int,
        piece: memoryview,
        known: tuple[int, bytes | None] | None = None,
    ) -> int:
        """Write into DIRTY block ``idx`` at ``at``; an inline block spills when too big.

        ``known``: the block's ``(dfile, data)`` when the caller has it (from
        :meth:`_make_dirty`), saving a query. Returns the block's dirty file (0: inline).
        """
        if known is None:
            b = self._db.one("SELECT dfile, data FROM blocks WHERE ino = ? AND idx = ?", (ino, idx))
            assert b is not None
            known = (b["dfile"], b["data"])
        dfile_now, data_now = known
        end = at + piece.nbytes
        if dfile_now:
            os.pwrite(self._dirty_fd(dfile_now), piece, at)
            return dfile_now
        blob = bytes(data_now or b"")
        if end <= INLINE_MAX:
            pad = bytes(max(0, at - len(blob)))
            new = blob[:at] + pad + piece.tobytes() + blob[end:]
            self._db.x("UPDATE blocks SET data = ? WHERE ino = ? AND idx = ?", (new, ino, idx))
            return 0
        dfile = self._new_dirty_file()
        fd = self._dirty_fd(dfile)
        os.pwrite(fd, blob, 0)
        os.pwrite(fd, piece, at)
        self._db.x(
            "UPDATE blocks SET dfile = ?, data = NULL WHERE ino = ? AND idx = ?", (dfile, ino, idx)
        )
        return dfile

    def _cut_dirty(self, b: sqlite3.Row, length: int) -> None:
        """Zero a DIRTY block past ``length`` (the file's new end)."""
        if b["dfile"]:
            os.ftruncate(self._fd(self._dirty_path(b["dfile"])), length)
        else:
            self._db.x(
                "UPDATE blocks SET data = substr(data, 1, ?) WHERE ino = ? AND idx = ?",
                (length, b["ino"], b["idx"]),
            )

    # --- dropping blocks ---------------------------------------------------------------

    def _release_staged(self, b: sqlite3.Row) -> None:
        """A block stops referencing its sealed bytes (a queued upload is withdrawn)."""
        digest = b["hash"]
        if b["state"] == SEALED and b["queued"]:
            self._db.defer(lambda: self._uploader.cancel(digest))
        if b["state"] in (SEALED, STORED) and b["data"] is None:
            self._db.defer(lambda: self._staged_candidates.add(digest))

    def _drop_block(self, b: sqlite3.Row) -> None:
        if b["state"] == DIRTY and b["dfile"]:
            path = self._dirty_path(b["dfile"])
            self._forget_fd(path)
            self._unlink_after_durable(path)
        self._release_staged(b)
        self._writes.pop((b["ino"], b["idx"]), None)
        self._db.x("DELETE FROM blocks WHERE ino = ? AND idx = ?", (b["ino"], b["idx"]))

    def _free_data(self, ino: int) -> None:
        """Drop every block of a file being freed (its uploads are withdrawn)."""
        for b in self._db.x("SELECT * FROM blocks WHERE ino = ?", (ino,)).fetchall():
            self._drop_block(b)

    # --- sealing -----------------------------------------------------------------------

    def _schedule_seal(self, ino: int, idxs: list[int]) -> None:
        """Queue blocks for the background sealer (one drain runs per burst of queued
        blocks, so a thousand small files closed at once cost one transaction)."""
        if self._sealer is None:
            return
        with self._seal_lock:
            start = not self._seal_queue
            self._seal_queue.update(dict.fromkeys((ino, i) for i in idxs))
        if start:
            fut = self._sealer.submit(self._drain_seals)
            fut.add_done_callback(_log_failure)

    def _drain_seals(self) -> None:
        """Seal what is queued: inline blocks together in one operation, big ones
        one by one (their hashing runs without the lock)."""
        with self._seal_lock:
            todo, self._seal_queue = list(self._seal_queue), {}
        big: list[tuple[int, int]] = []

        def stage_inline() -> None:
            big.clear()
            for ino, idx in todo:
                b = self._db.one("SELECT * FROM blocks WHERE ino = ? AND idx = ?", (ino, idx))
                if b is None or b["state"] != DIRTY:
                    continue
                if b["dfile"]:
                    big.append((ino, idx))
                    continue
                row = self._db.one("SELECT size FROM inodes WHERE ino = ?", (ino,))
                if row is not None:
                    blen = block_len(idx, row["size"])
                    self._stage(b, blen, self._local_read(b, 0, blen))

        with self._lock:
            if self._closed:
                return
            self._run(stage_inline)
        for ino, idx in big:
            self._seal(ino, idx)

    def _seal(self, ino: int, idx: int) -> bool:
        """Hash a DIRTY block (a big one without the lock); stage it if nothing wrote
        meanwhile. True when the block is no longer DIRTY."""
        with self._lock:
            if self._closed:
                return False
            b = self._db.one("SELECT * FROM blocks WHERE ino = ? AND idx = ?", (ino, idx))
            row = self._db.one("SELECT size FROM inodes WHERE ino = ?", (ino,))
            if b is None or row is None or b["state"] != DIRTY:
                return True
            gen, blen = b["gen"], block_len(idx, row["size"])
            dfile, writes = b["dfile"], self._writes.get((ino, idx), 0)
            if not b["dfile"]:
                self._run(lambda: self._stage(b, blen, self._local_read(b, 0, blen)))
                return True
            path = self._dirty_path(b["dfile"])
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
                and b2["dfile"] == dfile  # dfile numbers are never reused in a process
                and self._writes.get((ino, idx), 0) == writes
                and block_len(idx, row2["size"]) == blen
            ):
                self._stage(b2, blen, data, digest)
                done = True

        with self._lock:
            if self._closed:
                return False
            self._run(apply)
        return done

    def _seal_locked(self, b: sqlite3.Row, size: int) -> None:
        """Seal a DIRTY block entirely under the lock (commit's final pass)."""
        blen = block_len(b["idx"], size)
        self._stage(b, blen, self._local_read(b, 0, blen))

    def _stage(self, b: sqlite3.Row, blen: int, data: bytes | None, digest: str = "") -> None:
        """DIRTY → SEALED. Inline: keep the bytes in the row. File-backed: link the dirty
        file as ``staged/<digest>``. Then hand the block to the uploader."""
        if blen == 0:  # a block wholly past EOF cannot exist; be safe
            self._drop_block(b)
            return
        key = (b["ino"], b["idx"])
        self._writes.pop(key, None)
        if not b["dfile"]:
            assert data is not None
            digest = content_hash(data)
            queued = int(self._uploader.pending() < _QUEUE_LIMIT)
            self._db.x(
                "UPDATE blocks SET state = ?, hash = ?, size = ?, data = ?, queued = ? "
                "WHERE ino = ? AND idx = ?",
                (SEALED, digest, blen, data, queued, *key),
            )
            if queued:
                self._db.defer(lambda: self._submit(digest, data))
            return
        path = self._dirty_path(b["dfile"])
        if not digest:
            assert data is not None
            digest = content_hash(data)
        os.ftruncate(self._fd(path), blen)
        staged = self._staged_path(digest)
        staged.parent.mkdir(exist_ok=True)
        with contextlib.suppress(FileExistsError):  # same content already staged
            os.link(path, staged)
        self._db.x(
            "UPDATE blocks SET state = ?, hash = ?, size = ?, dfile = 0, queued = 1 "
            "WHERE ino = ? AND idx = ?",
            (SEALED, digest, blen, *key),
        )
        self._forget_fd(path)
        self._unlink_after_durable(path)
        # Hand over the bytes the seal just read, while the backlog is short (bounded
        # memory): the upload then reads no file and need not re-hash what it got.
        source: bytes | Path = staged
        if data is not None and self._uploader.pending() < _BYTES_QUEUE_LIMIT:
            source = data
        self._db.defer(lambda: self._submit(digest, source))

    def _submit(self, digest: str, source: bytes | Path) -> None:
        if isinstance(source, Path):
            # A staged file queued for deletion (its digest unreferenced at the last
            # commit) is referenced again: keep it.
            self._unlink_later.pop(source, None)
        self._uploader.submit(digest, source)
        if self._flush_submits is not None:
            self._flush_submits.add(digest)

    def _queue_unqueued(self) -> None:
        """Hand every SEALED block not yet with the uploader to it (locked, in an op)."""
        for b in self._db.x(
            "SELECT * FROM blocks WHERE state = ? AND queued = 0", (SEALED,)
        ).fetchall():
            source: bytes | Path = (
                bytes(b["data"]) if b["data"] is not None else self._staged_path(b["hash"])
            )
            if isinstance(source, Path) and not source.exists():
                log.error("staged block %s is missing from %s", b["hash"], self.cache_dir)
                continue
            self._db.x(
                "UPDATE blocks SET queued = 1 WHERE ino = ? AND idx = ?", (b["ino"], b["idx"])
            )
            digest = str(b["hash"])
            self._db.defer(lambda d=digest, s=source: self._submit(d, s))  # type: ignore[misc]

    def seal_all(self) -> None:
        """Seal every DIRTY block now (hashing big ones outside the lock)."""
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


def _log_failure(fut: Future[bool]) -> None:
    exc = fut.exception()
    if exc is not None:
        # Not fatal: the block stays DIRTY and the next seal pass (commit) retries it.
        log.warning("background seal failed: %s", exc)
