"""The working state's local metadata: one SQLite database in WAL mode.

The schema is the spec of the overlay (S3QL style: the comments say what each column
means and which invariants hold).

``meta``      key/value: ``format``, ``volume``, ``base`` (the version ref the overlay
              applies to, '' for an empty volume), ``pending_root`` (root tree of a
              commit in flight, for recovery), ``links_resolved``, stats counters.
``inodes``    one row per inode. Root is inode 1. Inode numbers are never reused
              (AUTOINCREMENT), so the kernel can never confuse two files.
              *Directories*: ``tree`` is the hash of the directory as of the base (or
              the last commit), '' for one created since; ``loaded`` = 1 when every
              entry is materialised in ``dentries`` (0: only the names looked up so
              far are, the rest still live in ``tree``); ``dirty`` = 1 when the
              directory must be rewritten at commit. Invariant: a dirty directory's
              ancestors are dirty and its own name is in its parent's ``changed``.
              ``nsubdirs`` is exact once loaded. ``parent`` is the containing
              directory (directories have exactly one name).
              *Files*: ``content`` is the encoded Content as of the base (or the last
              commit); ``blocks_loaded`` = 1 when ``blocks`` holds the block map
              (0: read it from ``content``); ``data_dirty`` = 1 when the block list
              must be rebuilt at commit. ``nlink`` counts dentries (0: an orphan kept
              for open handles). ``link_id`` names the hard-link group in versions.
``dentries``  (parent, name) → ino. Names are stored as UTF-8 with surrogateescape
              BLOBs so any byte string Linux allows round-trips.
``changed``   (parent, name) of every entry whose Entry differs from ``parent.tree``:
              created, removed (no dentry: a tombstone that hides the base entry),
              or whose inode changed. Commit applies exactly these with
              ``TreeWriter.update_dir`` (O(change) even in a 1M-entry directory).
``xattrs``    extended attributes (name BLOB → value BLOB).
``blocks``    the block map of files with ``blocks_loaded``; no row = a hole.
              ``state``: 0 DIRTY (mutable), 1 SEALED (immutable, hashed, not known to
              be stored), 2 STORED (in the store, local copy kept), 3 REMOTE (only in
              the store). Bytes: ``data`` (inline, blocks up to 64 KiB), else
              ``dirty/<dfile>`` (DIRTY) or ``staged/<hash>`` (SEALED/STORED).
              ``size`` is the chunk's length for states 1-3. ``gen`` changes each
              time a block becomes DIRTY (in-place writes to a DIRTY block are
              counted in memory, ``Core._writes``), so a seal computed outside the
              lock is only applied if nothing wrote meanwhile. ``queued``: handed to
              this process's uploader (so withdrawing it is this block's to do).
``links``     link_id → ino, so every entry of one hard-link group maps to one inode.

Durability modes (the high-throughput seam): ``normal`` commits every operation's
transaction with ``synchronous=NORMAL`` -- it survives a kill of the process, and
``fsync``/``checkpoint`` make it survive power loss; ``full`` syncs every operation;
``batch`` (high-throughput volumes) groups operations into one transaction committed
every ``batch_ops`` operations or ``batch_seconds`` -- a kill may lose the last batch
of operations nobody fsync'ed, never an fsync'ed one.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS inodes (
    ino INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    mode INTEGER NOT NULL,
    uid INTEGER NOT NULL DEFAULT 0,
    gid INTEGER NOT NULL DEFAULT 0,
    size INTEGER NOT NULL DEFAULT 0,
    atime_ns INTEGER NOT NULL DEFAULT 0,
    mtime_ns INTEGER NOT NULL DEFAULT 0,
    ctime_ns INTEGER NOT NULL DEFAULT 0,
    nlink INTEGER NOT NULL DEFAULT 1,
    parent INTEGER NOT NULL DEFAULT 0,
    target TEXT NOT NULL DEFAULT '',
    tree TEXT NOT NULL DEFAULT '',
    loaded INTEGER NOT NULL DEFAULT 1,
    nsubdirs INTEGER NOT NULL DEFAULT 0,
    dirty INTEGER NOT NULL DEFAULT 0,
    content TEXT NOT NULL DEFAULT '',
    blocks_loaded INTEGER NOT NULL DEFAULT 1,
    data_dirty INTEGER NOT NULL DEFAULT 0,
    link_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS inodes_dirty ON inodes(dirty) WHERE dirty = 1;
CREATE INDEX IF NOT EXISTS inodes_data_dirty ON inodes(data_dirty) WHERE data_dirty = 1;
CREATE INDEX IF NOT EXISTS inodes_orphans ON inodes(nlink) WHERE nlink = 0;
CREATE TABLE IF NOT EXISTS dentries (
    parent INTEGER NOT NULL, name BLOB NOT NULL, ino INTEGER NOT NULL,
    PRIMARY KEY (parent, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dentries_ino ON dentries(ino);
CREATE TABLE IF NOT EXISTS changed (
    parent INTEGER NOT NULL, name BLOB NOT NULL, PRIMARY KEY (parent, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS xattrs (
    ino INTEGER NOT NULL, name BLOB NOT NULL, value BLOB NOT NULL, PRIMARY KEY (ino, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocks (
    ino INTEGER NOT NULL, idx INTEGER NOT NULL, state INTEGER NOT NULL,
    hash TEXT NOT NULL DEFAULT '', size INTEGER NOT NULL DEFAULT 0,
    dfile INTEGER NOT NULL DEFAULT 0, gen INTEGER NOT NULL DEFAULT 0,
    data BLOB, queued INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (ino, idx)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS blocks_unstored ON blocks(state) WHERE state < 2;
CREATE INDEX IF NOT EXISTS blocks_hash ON blocks(hash) WHERE state IN (1, 2);
CREATE TABLE IF NOT EXISTS links (link_id TEXT PRIMARY KEY, ino INTEGER NOT NULL) WITHOUT ROWID;
"""


class SyncMode(StrEnum):
    """How hard each metadata change is pushed to disk (see the module docstring)."""

    NORMAL = "normal"
    FULL = "full"
    BATCH = "batch"


def encode_name(name: str) -> bytes:
    """A file name as stored: its Linux bytes (surrogateescape round-trips any name)."""
    return name.encode("utf-8", "surrogateescape")


def decode_name(raw: bytes) -> str:
    return bytes(raw).decode("utf-8", "surrogateescape")


class Db:
    """One SQLite connection with per-operation savepoints. Not thread-safe by itself:
    the working state calls it only while holding its metadata lock."""

    def __init__(
        self,
        path: Path,
        mode: SyncMode = SyncMode.NORMAL,
        *,
        batch_ops: int = 1000,
        batch_seconds: float = 0.2,
    ) -> None:
        self.path = path
        self.mode = mode
        self.batch_ops = batch_ops
        self.batch_seconds = batch_seconds
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute(f"PRAGMA synchronous={'FULL' if mode == SyncMode.FULL else 'NORMAL'}")
        self.conn.execute("PRAGMA temp_store=MEMORY")
        self.conn.execute("PRAGMA cache_size=-65536")  # 64 MiB of pages
        self.conn.executescript(SCHEMA)
        self._depth = 0
        self._ops = 0
        self._since = 0.0
        self._deferred: list[list[Callable[[], None]]] = []
        #: bumped by every statement that may change a row (see ``pending``)
        self.generation = 0
        #: changes kept in memory by the caller, written before the next statement runs
        self.pending: Callable[[], None] | None = None

    # Two hooks serve the working state's fast write path (FastWrites):
    # * ``generation`` lets it cache rows in memory and know when they may be stale:
    #   any statement other than a SELECT counts as a change;
    # * ``pending`` is called (once, then cleared) before the next statement of any
    #   kind, so nothing ever reads the database without the changes held in memory.
    #   It writes with ``conn`` directly: those writes do not bump ``generation``.

    def flush_pending(self) -> None:
        flush, self.pending = self.pending, None
        if flush is not None:
            flush()

    def x(self, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> sqlite3.Cursor:
        if self.pending is not None:
            self.flush_pending()
        if not sql.startswith("SELECT"):
            self.generation += 1
        return self.conn.execute(sql, args)

    def many(self, sql: str, rows: Iterable[tuple[Any, ...]]) -> None:
        if self.pending is not None:
            self.flush_pending()
        self.generation += 1
        self.conn.executemany(sql, rows)

    def one(self, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> sqlite3.Row | None:
        if self.pending is not None:
            self.flush_pending()
        row: sqlite3.Row | None = self.conn.execute(sql, args).fetchone()
        return row

    def scalar(self, sql: str, args: tuple[Any, ...] | list[Any] = (), default: Any = None) -> Any:
        if self.pending is not None:
            self.flush_pending()
        row = self.conn.execute(sql, args).fetchone()
        return default if row is None or row[0] is None else row[0]

    def get_meta(self, key: str, default: Any = None) -> Any:
        return self.scalar("SELECT value FROM meta WHERE key = ?", (key,), default)

    def set_meta(self, key: str, value: Any) -> None:
        self.x("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    @contextmanager
    def op(self) -> Iterator[None]:
        """One filesystem operation: all of it or none of it, whatever it raises.

        Nested calls join the outer operation. The transaction is committed at the end
        of the outermost call (``normal``/``full``) or when the batch is due. Pending
        in-memory changes are written first, outside the operation, so that its
        rollback cannot take them with it.
        """
        if self.pending is not None:
            self.flush_pending()
        began = not self.conn.in_transaction
        if began:
            self.conn.execute("BEGIN IMMEDIATE")
            self._ops = 0
            self._since = time.monotonic()
        # An operation that owns its whole transaction (normal/full mode) rolls back
        # with ROLLBACK; a savepoint is only needed inside a longer one (batch, nested).
        savepoint = not (began and self.mode != SyncMode.BATCH)
        self._depth += 1
        self._deferred.append([])
        if savepoint:
            self.conn.execute("SAVEPOINT op")
        try:
            yield
        except BaseException:
            if savepoint:
                self.conn.execute("ROLLBACK TO op")
                self.conn.execute("RELEASE op")
            else:
                self.conn.execute("ROLLBACK")
            self._depth -= 1
            self._deferred.pop()
            raise
        if savepoint:
            self.conn.execute("RELEASE op")
        self._depth -= 1
        done = self._deferred.pop()
        if self._depth:
            self._deferred[-1].extend(done)
        else:
            for fn in done:
                fn()
            self._ops += 1
            if (
                self.mode != SyncMode.BATCH
                or self._ops >= self.batch_ops
                or time.monotonic() - self._since >= self.batch_seconds
            ):
                self.conn.execute("COMMIT")

    def defer(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` when the current operation succeeds; drop it if it rolls back.

        For side effects outside the database (withdrawing an upload, queueing a file
        for deletion) that must not happen for an operation that did not.
        """
        if self._depth:
            self._deferred[-1].append(fn)
        else:
            fn()

    def flush(self) -> None:
        """Commit a pending batch (no-op in ``normal``/``full`` mode between ops)."""
        if self.pending is not None:
            self.flush_pending()
        if self._depth == 0 and self.conn.in_transaction:
            self.conn.execute("COMMIT")

    def durable(self) -> None:
        """Make every committed change survive power loss, not just a process kill.

        A transaction committed with ``synchronous=FULL`` fsyncs the WAL, which carries
        every earlier frame with it; a counter bump gives it something to commit.
        """
        self.flush()
        if self.mode != SyncMode.FULL:
            self.conn.execute("PRAGMA synchronous=FULL")
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            self.x(
                "INSERT INTO meta (key, value) VALUES ('syncs', 1) "
                "ON CONFLICT (key) DO UPDATE SET value = value + 1"
            )
            self.conn.execute("COMMIT")
        finally:
            if self.mode != SyncMode.FULL:
                self.conn.execute("PRAGMA synchronous=NORMAL")

    def close(self) -> None:
        self.flush()
        self.conn.close()
