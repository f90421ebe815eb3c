"""The fast path for writes into a block that is already DIRTY.

A sequential writer sends 32 FUSE writes of 128 KiB per 4 MiB block (libfuse 2 caps a
request at 128 KiB, see FUSE-NOTES.md). Only the first one makes the block DIRTY; the
other 31 change nothing in the database but the file's size and times. Running each of
them as a SQLite transaction (BEGIN, three SELECTs, two UPDATEs, COMMIT) cost more CPU
than copying the bytes, so they take this path instead:

* when a write commits through the full path, the DIRTY file-backed blocks it touched are
  remembered together with the database's ``generation``;
* a later write that falls inside one remembered block, while the generation is unchanged
  (no statement has changed any row since), ``pwrite``s the bytes and keeps the new
  size and times in memory;
* those are written to the database before the next statement of any kind runs
  (``Db.pending``), so every reader -- getattr, read, seal, fsync, commit -- sees them,
  and after at most ``FLUSH_AFTER`` seconds in any case.

What a crash can lose is unchanged where it matters: fsync and the autosave checkpoint run
statements, which write the pending values first, then make the database durable. A
kill -9 can lose the size change of a write nobody fsync'd (it could lose the write itself
before); recovery cuts DIRTY blocks back to the file's length, so bytes past the end
still read as zeros.

Anything that changes any row bumps the generation and empties the memory, which makes the
path safe by construction: it is taken only when nothing could have changed underneath.
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from strata.meta.working.base import B, nblocks
from strata.meta.working.blocks import Blocks

#: pending size/time changes are written at least this often during a write streak
FLUSH_AFTER = 1.0


@dataclass(slots=True)
class HotFile:
    """A file being written: its DIRTY file-backed blocks and its not-yet-written size."""

    size: int
    stored_size: int
    dfiles: dict[int, int] = field(default_factory=dict)
    mtime_ns: int = 0  # 0: nothing pending


class FastWrites(Blocks):
    """``_fast_write`` and the bookkeeping that keeps it honest."""

    _hot: dict[int, HotFile]
    _hot_generation: int
    _hot_since: float
    _write_hot_later: Callable[[], None]
    _read_files: dict[int, tuple[int, dict[int, Path]]]

    def _init_fast_writes(self) -> None:
        self._hot = {}
        self._hot_generation = -1
        self._hot_since = 0.0
        # Db.pending must not keep the state alive: its finalizer holds the Db, and a
        # state dropped without close() (a crash, in tests) must still be collected.
        ref = weakref.ref(self)

        def write_hot() -> None:
            state = ref()
            if state is not None:
                state._write_hot()

        self._write_hot_later = write_hot

    def _remember_hot(self, ino: int, size: int, dfiles: dict[int, int]) -> None:
        """After a full-path write (locked, as the operation's last step): remember it."""
        # The full path always changed rows, so whatever was remembered is stale.
        self._hot = {ino: HotFile(size, size, dfiles)}
        self._hot_generation = self._db.generation

    def _fast_write(self, ino: int, offset: int, view: memoryview) -> bool | None:
        """Write ``view`` at ``offset`` without the database, if that is safe (locked).

        None when the full path must run; else whether the write reached the end of its
        block (the block is then ready to seal).
        """
        if self._hot_generation != self._db.generation or self._committing:
            return None
        hot = self._hot.get(ino)
        if hot is None:
            return None
        idx = offset // B
        end = offset + view.nbytes
        dfile = hot.dfiles.get(idx)
        if dfile is None or (end - 1) // B != idx:
            return None
        if end > hot.size and hot.size and (hot.size - 1) // B != idx:
            return None  # extends past an old last block that is not this one
        os.pwrite(self._dirty_fd(dfile), view, offset - idx * B)
        self._read_files.pop(ino, None)  # its size may change: the read plan must look
        key = (ino, idx)
        self._writes[key] = self._writes.get(key, 0) + 1  # a seal in flight must notice
        hot.size = max(hot.size, end)
        hot.mtime_ns = self._now()
        if self._db.pending is None:
            self._db.pending = self._write_hot_later
            self._hot_since = time.monotonic()
        elif time.monotonic() - self._hot_since >= FLUSH_AFTER:
            self._db.flush_pending()
        return end >= idx * B + B

    def _write_hot(self) -> None:
        """Write the pending sizes and times (``Db.pending``: runs before any statement)."""
        conn = self._db.conn
        for ino, hot in self._hot.items():
            if not hot.mtime_ns:
                continue
            conn.execute(
                "UPDATE inodes SET size = ?, mtime_ns = ?, ctime_ns = ? WHERE ino = ?",
                (hot.size, hot.mtime_ns, hot.mtime_ns, ino),
            )
            for key, delta in (
                ("stat_bytes", hot.size - hot.stored_size),
                ("stat_chunks", nblocks(hot.size) - nblocks(hot.stored_size)),
            ):
                if delta:
                    conn.execute("UPDATE meta SET value = value + ? WHERE key = ?", (delta, key))
            hot.stored_size = hot.size
            hot.mtime_ns = 0
