"""Shared core of the working state: the lock, row helpers, dirty tracking, local files.

Locking (S3QL-style note): one re-entrant lock guards the SQLite connection, the
in-memory caches and the local block files. It is never held around store I/O: an
operation that finds it needs the store (a directory page, a chunk for copy-on-write)
raises :class:`NeedIO` under the lock; :meth:`Core._run` rolls the operation back,
runs the fetch without the lock, and starts the operation again. Operations therefore
validate and plan before they change anything on disk.
"""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from strata.chunks.hashing import CHUNK_SIZE
from strata.chunks.objects import ContentStore
from strata.chunks.reader import BlockReader
from strata.chunks.uploader import Uploader
from strata.errors import ObjectNotFound
from strata.meta.entry import BlockRef, Content, Kind
from strata.meta.tree import TreeReader, TreeWriter
from strata.meta.working.db import Db, encode_name
from strata.meta.working.types import Attr, FsError

if TYPE_CHECKING:
    import sqlite3

    from strata.meta.repo import Repository, WriterClaim

T = TypeVar("T")

ROOT = 1
B = CHUNK_SIZE

# blocks.state (see db.py)
DIRTY, SEALED, STORED, REMOTE = 0, 1, 2, 3

_MAX_NAME = 255
_IO_RETRIES = 1000


class NeedIO(Exception):
    """Raised under the lock: run ``fetch`` without it, then restart the operation."""

    def __init__(self, fetch: Callable[[], None]) -> None:
        super().__init__("store I/O needed")
        self.fetch = fetch


def check_name(name: str) -> bytes:
    """Validate a directory entry name; return its stored (byte) form."""
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise FsError(errno.EINVAL, f"invalid file name {name!r}")
    raw = encode_name(name)
    if len(raw) > _MAX_NAME:
        raise FsError(errno.ENAMETOOLONG, f"file name of {len(raw)} bytes is too long")
    return raw


def encode_content(c: Content) -> str:
    """Content as stored in ``inodes.content`` (compact; paged lists by root hash)."""
    if c.pages:
        return "p" + c.pages
    if not c.blocks:
        return ""
    return json.dumps([[b.hash, b.size] for b in c.blocks], separators=(",", ":"))


def decode_content(s: str) -> Content:
    if not s:
        return Content()
    if s.startswith("p"):
        return Content(pages=s[1:])
    return Content(blocks=tuple(BlockRef(h, int(n)) for h, n in json.loads(s)))


def nblocks(size: int) -> int:
    return (size + B - 1) // B


def block_len(idx: int, size: int) -> int:
    """Length of block ``idx`` in a file of ``size`` bytes (0 past the end)."""
    return max(0, min(B, size - idx * B))


class Core:
    """State and helpers every part of :class:`WorkingState` uses."""

    repo: Repository
    claim: WriterClaim | None
    cache_dir: Path
    _db: Db
    _lock: threading.RLock
    _content: ContentStore
    _reader: TreeReader
    _writer: TreeWriter
    _uploader: Uploader
    _own_uploader: bool
    _blocks_reader: BlockReader
    _clock: Callable[[], int]
    _fds: OrderedDict[str, int]
    _max_fds: int
    _absent: OrderedDict[tuple[int, bytes, str], None]
    _base_blocks: OrderedDict[str, tuple[BlockRef, ...]]
    _committing: bool
    _touched_dirs: set[int]
    _touched_files: set[int]
    _unlink_later: dict[Path, None]
    _staged_candidates: set[str]
    _flush_submits: set[str] | None
    _open_handles: dict[int, int]
    _read_ends: OrderedDict[int, int]
    #: in-place writes per DIRTY block since it became DIRTY (see Blocks._seal)
    _writes: dict[tuple[int, int], int]
    #: whether any security.* xattr may exist (None: not known yet)
    _security_xattrs: bool | None
    _next_dfile: int
    _closed: bool
    #: read fast path: ino -> (size, block index -> local file), valid for one generation
    _read_files: dict[int, tuple[int, dict[int, Path]]]
    _read_generation: int

    def _init_core(self) -> None:
        self._lock = threading.RLock()
        self._fds = OrderedDict()
        self._max_fds = 128
        self._absent = OrderedDict()
        self._base_blocks = OrderedDict()
        self._committing = False
        self._touched_dirs = set()
        self._touched_files = set()
        self._unlink_later = {}
        self._staged_candidates = set()
        self._flush_submits = None
        self._open_handles = {}
        self._read_ends = OrderedDict()
        self._writes = {}
        self._security_xattrs = None
        self._next_dfile = 1
        self._closed = False
        self._seal_queue = {}
        self._seal_lock = threading.Lock()
        self._read_files = {}
        self._read_generation = -1

    # --- running operations ------------------------------------------------------------

    def _run(self, fn: Callable[[], T], *, write: bool = True) -> T:
        """Run ``fn`` under the lock as one database operation, fetching as it asks.

        Local I/O errors become FsError with their errno (ENOSPC reaches the program).
        """
        for _ in range(_IO_RETRIES):
            try:
                with self._lock:
                    if self._closed:
                        raise FsError(errno.EIO, "the working state is closed")
                    if not write:
                        return fn()
                    with self._db.op():
                        return fn()
            except NeedIO as need:
                need.fetch()
            except OSError as exc:
                raise FsError(exc.errno or errno.EIO, f"local cache I/O failed: {exc}") from exc
        raise FsError(errno.EIO, "operation kept needing store I/O; giving up")

    def _run_ro(self, fn: Callable[[], T]) -> T:
        """:meth:`_run` for operations that change nothing (no write transaction)."""
        return self._run(fn, write=False)

    @staticmethod
    def _fetching(fn: Callable[..., T], *args: Any) -> T:
        """Call store-reading ``fn``; an object missing from the store is EIO here.

        A file whose chunk or tree is gone is damaged data, not a missing file.
        """
        try:
            return fn(*args)
        except ObjectNotFound as exc:
            raise FsError(errno.EIO, f"data missing from the store: {exc}") from exc

    def _now(self) -> int:
        return self._clock()

    # --- rows ------------------------------------------------------------------------

    def _inode(self, ino: int) -> sqlite3.Row:
        row = self._db.one("SELECT * FROM inodes WHERE ino = ?", (ino,))
        if row is None:
            raise FsError(errno.ENOENT, f"no inode {ino}")
        return row

    def _dir(self, ino: int) -> sqlite3.Row:
        row = self._inode(ino)
        if row["kind"] != Kind.DIR.value:
            raise FsError(errno.ENOTDIR, f"inode {ino} is not a directory")
        return row

    def _file(self, ino: int) -> sqlite3.Row:
        row = self._inode(ino)
        if row["kind"] == Kind.DIR.value:
            raise FsError(errno.EISDIR, f"inode {ino} is a directory")
        if row["kind"] != Kind.FILE.value:
            raise FsError(errno.EINVAL, f"inode {ino} is not a regular file")
        return row

    def _attr(self, row: sqlite3.Row) -> Attr:
        kind = Kind(row["kind"])
        nlink = row["nlink"]
        if kind == Kind.DIR:
            nlink = 2 + row["nsubdirs"] if row["loaded"] else 1
        return Attr(
            ino=row["ino"],
            kind=kind,
            mode=row["mode"],
            nlink=nlink,
            uid=row["uid"],
            gid=row["gid"],
            size=row["size"],
            atime_ns=row["atime_ns"],
            mtime_ns=row["mtime_ns"],
            ctime_ns=row["ctime_ns"],
        )

    def _dir_dentry(self, ino: int) -> tuple[int, bytes]:
        """(parent, name) of a directory other than the root."""
        row = self._db.one("SELECT parent, name FROM dentries WHERE ino = ? LIMIT 1", (ino,))
        if row is None:
            raise FsError(errno.EIO, f"directory inode {ino} has no name (metadata damaged)")
        return row["parent"], bytes(row["name"])

    def _set(self, ino: int, **cols: Any) -> None:
        names = ", ".join(f"{c} = ?" for c in cols)
        self._db.x(f"UPDATE inodes SET {names} WHERE ino = ?", (*cols.values(), ino))

    # --- dirty tracking --------------------------------------------------------------

    def _touch_entry(self, parent: int, name: bytes) -> None:
        """Entry ``name`` of ``parent`` differs from the parent's tree now."""
        self._db.x("INSERT OR IGNORE INTO changed (parent, name) VALUES (?, ?)", (parent, name))
        self._dirty_dir(parent)

    def _dirty_dir(self, ino: int) -> None:
        """Mark ``ino`` and its ancestors dirty (stops early outside a commit)."""
        while True:
            row = self._db.one("SELECT dirty, parent FROM inodes WHERE ino = ?", (ino,))
            if row is None:
                return
            if self._committing:
                self._touched_dirs.add(ino)
            elif row["dirty"]:
                return
            if not row["dirty"]:
                self._set(ino, dirty=1)
            if ino == ROOT:
                return
            parent, name = self._dir_dentry(ino)
            self._db.x("INSERT OR IGNORE INTO changed (parent, name) VALUES (?, ?)", (parent, name))
            ino = parent

    def _touch_inode(self, ino: int) -> None:
        """Attributes of ``ino`` changed: every entry naming it changed."""
        for d in self._db.x("SELECT parent, name FROM dentries WHERE ino = ?", (ino,)).fetchall():
            self._touch_entry(d["parent"], bytes(d["name"]))
        if ino == ROOT:
            self._dirty_dir(ROOT)

    def _touch_data(self, row: sqlite3.Row) -> None:
        """File data of ``row`` changed: its block list must be rebuilt at commit."""
        ino = row["ino"]
        if self._committing:
            self._touched_files.add(ino)
        elif row["data_dirty"]:
            return  # its entries were touched when it first became dirty
        if not row["data_dirty"]:
            self._set(ino, data_dirty=1)
        self._touch_inode(ino)

    # --- stats -------------------------------------------------------------------------

    def _stat_add(self, **deltas: int) -> None:
        changed = [(f"stat_{key}", delta) for key, delta in deltas.items() if delta]
        if len(changed) == 1:
            key, delta = changed[0]
            self._db.x("UPDATE meta SET value = value + ? WHERE key = ?", (delta, key))
        elif changed:  # one statement for all counters
            cases = " ".join("WHEN ? THEN ?" for _ in changed)
            marks = ", ".join("?" for _ in changed)
            self._db.x(
                f"UPDATE meta SET value = value + CASE key {cases} END WHERE key IN ({marks})",
                (*(x for pair in changed for x in pair), *(k for k, _ in changed)),
            )

    def _size_stats(self, old: int, new: int) -> None:
        self._stat_add(bytes=new - old, chunks=nblocks(new) - nblocks(old))

    # --- local files -------------------------------------------------------------------

    def _dirty_path(self, dfile: int) -> Path:
        return self.cache_dir / "dirty" / str(dfile)

    def _staged_path(self, digest: str) -> Path:
        return self.cache_dir / "staged" / digest[:2] / digest

    def _fd(self, path: Path, *, create: bool = False) -> int:
        """An open descriptor for a local block file (kept in a small LRU)."""
        key = str(path)
        fd = self._fds.get(key)
        if fd is not None:
            self._fds.move_to_end(key)
            return fd
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        try:
            fd = os.open(key, flags, 0o600)
        except FileNotFoundError:
            raise FsError(errno.EIO, f"local block file {key} is missing") from None
        self._fds[key] = fd
        while len(self._fds) > self._max_fds:
            _, old = self._fds.popitem(last=False)
            os.close(old)
        return fd

    def _dirty_fd(self, dfile: int) -> int:
        """:meth:`_fd` of ``dirty/<dfile>`` without building a Path (the write path)."""
        fd = self._fds.get(f"{self._dirty_prefix}{dfile}")
        if fd is not None:
            self._fds.move_to_end(f"{self._dirty_prefix}{dfile}")
            return fd
        return self._fd(self._dirty_path(dfile))

    @property
    def _dirty_prefix(self) -> str:
        prefix = self.__dict__.get("_dirty_prefix_s")
        if prefix is None:
            prefix = self.__dict__["_dirty_prefix_s"] = str(self.cache_dir / "dirty") + os.sep
        return prefix

    def _forget_fd(self, path: Path) -> None:
        fd = self._fds.pop(str(path), None)
        if fd is not None:
            os.close(fd)

    def _unlink_after_durable(self, path: Path) -> None:
        """Delete ``path`` at the next durable point, if this operation commits."""
        self._db.defer(lambda: self._unlink_later.setdefault(path, None))

    def _new_dirty_file(self) -> int:
        dfile = self._next_dfile
        self._next_dfile += 1
        path = self._dirty_path(dfile)
        self._forget_fd(path)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        self._fds[str(path)] = fd
        return dfile

    def _pread(self, path: Path, length: int, offset: int = 0) -> bytes:
        """``length`` bytes at ``offset``; zeros past the file's end (sparse tail)."""
        data = os.pread(self._fd(path), length, offset)
        if len(data) < length:
            data += bytes(length - len(data))
        return data

    @staticmethod
    def _monotonic() -> float:
        return time.monotonic()
