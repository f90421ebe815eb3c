"""WorkingState: open, recover and close the mutable overlay of one volume's head.

Layout of ``cache_dir`` (one volume, one process at a time, enforced by ``flock``)::

    lock               flock'ed while open
    working.db(-wal)   the metadata overlay (strata.meta.working.db)
    dirty/<n>          DIRTY block files
    staged/<h[:2]>/<h> sealed blocks, immutable, named by content hash

Recovery (invariant 6): reopening after a crash finds the database as of its last
committed transaction (every operation in ``normal`` mode) and the block files it
names; the dirty overlay is simply there. Leftovers the crash orphaned (dirty files
of a rolled-back write, staged files nothing names, files unlinked while open) are
removed, and SEALED blocks are handed to the uploader again. If the head moved since
the overlay's base: a commit of our own that died before re-basing is recognised by
``pending_root``; an overlay with no changes is discarded; anything else is refused
with ESTALE (``discard_stale=True`` throws the overlay away) -- never silently merged.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from strata.chunks.reader import BlockReader
from strata.chunks.uploader import Uploader
from strata.meta.repo import Repository, WriterClaim
from strata.meta.tree import TreeReader, TreeWriter
from strata.meta.working.base import DIRTY, ROOT, SEALED, STORED, block_len
from strata.meta.working.commit import Commit
from strata.meta.working.db import SCHEMA_VERSION, Db, SyncMode, encode_name
from strata.meta.working.namespace import Namespace
from strata.meta.working.types import FsError

log = logging.getLogger(__name__)

_DB_NAME = "working.db"


class WorkingState(Namespace, Commit):
    """The writable overlay over a volume's head that the FUSE layer drives.

    Inode-based (root is inode 1), thread-safe, errors are :class:`FsError` (or other
    :class:`~strata.errors.StrataError`) carrying an ``errno``. Build it with
    :meth:`open`. ``claim`` may be replaced by a renewed claim at any time.
    """

    def __init__(self) -> None:
        raise TypeError("use WorkingState.open(repo, claim, cache_dir)")

    @classmethod
    def open(
        cls,
        repo: Repository,
        claim: WriterClaim,
        cache_dir: str | os.PathLike[str],
        *,
        uploader: Uploader | None = None,
        max_uploads: int = 50,
        upload_delay: float = 0.0,
        sync: SyncMode | str | None = None,
        discard_stale: bool = False,
        background_seal: bool = True,
        clock: Callable[[], int] = time.time_ns,
        root_mode: int = 0o755,
        root_uid: int | None = None,
        root_gid: int | None = None,
        staged_budget: int | None = None,
    ) -> WorkingState:
        """Open (or recover) the overlay of ``claim.volume`` kept in ``cache_dir``.

        ``sync`` defaults to ``batch`` for volumes with the high-throughput setting and
        ``normal`` otherwise (see :class:`~strata.meta.working.db.SyncMode`).
        ``uploader``: share one across mounts; by default one is made from
        ``max_uploads``/``upload_delay`` and closed with the working state.
        ``staged_budget``: after each commit, local copies of stored blocks are
        trimmed to this many bytes (:meth:`trim_staged`); None keeps them all.
        """
        self = cls.__new__(cls)
        self._init_core()
        self._init_loader()
        self._init_fast_writes()
        self.repo = repo
        self.claim = claim
        self.cache_dir = Path(cache_dir)
        self._clock = clock
        self._commit_lock = threading.Lock()
        self.staged_budget = staged_budget
        for sub in ("dirty", "staged"):
            (self.cache_dir / sub).mkdir(parents=True, exist_ok=True)
        lock_fd = _lock(self.cache_dir)
        try:
            head = repo.head(claim.volume)
            if sync is None:
                sync = SyncMode.BATCH if head.settings.high_throughput else SyncMode.NORMAL
            self._sync = SyncMode(sync)
            self._db = Db(self.cache_dir / _DB_NAME, self._sync)
            self._check_base(head.version, discard_stale)
            if self._db.get_meta("format") is None:
                self._init_fresh(head.version, root_mode, root_uid, root_gid)
        except BaseException:
            if hasattr(self, "_db"):
                self._db.conn.close()
            os.close(lock_fd)
            raise
        self._content = repo.content
        self._reader = TreeReader(self._content)
        self._writer = TreeWriter(self._content)
        self._own_uploader = uploader is None
        self._uploader = uploader or Uploader(self._content, max_uploads, upload_delay)
        self._blocks_reader = BlockReader(self._content)
        self._sealer = (
            ThreadPoolExecutor(1, thread_name_prefix="strata-seal") if background_seal else None
        )
        self._finalizer = weakref.finalize(
            self,
            _abandon,
            lock_fd,
            self._db,
            self._fds,
            self._sealer,
            self._uploader if self._own_uploader else None,
            self._blocks_reader,
        )
        with self._lock:
            self._recover()
        return self

    # --- properties --------------------------------------------------------------------

    @property
    def volume(self) -> str:
        return self.claim.volume

    @property
    def base(self) -> str | None:
        """The version ref the overlay applies to (None: the volume has no version)."""
        with self._lock:
            return self._db.get_meta("base", "") or None

    @property
    def sync_mode(self) -> SyncMode:
        return self._sync

    # --- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Make everything durable and release the cache dir (uploads not waited for:
        SEALED blocks are handed to the uploader again by the next open)."""
        if self._closed:
            return
        if self._sealer is not None:
            self._sealer.shutdown(wait=True)
        self._durable()
        with self._lock:
            self._closed = True
        self._finalizer()

    def __enter__(self) -> WorkingState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- opening -------------------------------------------------------------------

    def _check_base(self, head: str | None, discard_stale: bool) -> None:
        db = self._db
        if db.get_meta("format") is None:
            return
        if db.get_meta("format") != SCHEMA_VERSION:
            raise FsError(errno.EPROTO, f"{self.cache_dir}: unknown working-state format")
        volume = db.get_meta("volume")
        base = db.get_meta("base", "") or None
        if volume == self.claim.volume:
            if base == head:
                return
            pending = db.get_meta("pending_root", "")
            if pending and head is not None:
                v = self.repo.version(head)
                if v.root == pending and v.parent == base:
                    # Our own commit landed but the re-base did not: adopt it. Keeping
                    # everything dirty is safe; the next commit rewrites the same trees.
                    with db.op():
                        db.set_meta("base", head)
                        db.set_meta("pending_root", "")
                    return
            changed = db.one("SELECT 1 FROM inodes WHERE dirty = 1 LIMIT 1") is not None
            if changed and not discard_stale:
                raise FsError(
                    errno.ESTALE,
                    f"the uncommitted changes in {self.cache_dir} apply to {base or 'nothing'} "
                    f"but volume {volume!r} is now at {head}; commit them elsewhere or open "
                    "with discard_stale=True to drop them",
                )
        elif not discard_stale:
            raise FsError(
                errno.EINVAL,
                f"{self.cache_dir} holds the working state of volume {volume!r}, not "
                f"{self.claim.volume!r}; use another cache dir or discard_stale=True",
            )
        log.warning(
            "discarding the working state in %s (base %s, head %s)", self.cache_dir, base, head
        )
        self._wipe()

    def _wipe(self) -> None:
        self._db.conn.close()
        for name in (_DB_NAME, _DB_NAME + "-wal", _DB_NAME + "-shm"):
            (self.cache_dir / name).unlink(missing_ok=True)
        for sub in ("dirty", "staged"):
            shutil.rmtree(self.cache_dir / sub, ignore_errors=True)
            (self.cache_dir / sub).mkdir()
        self._db = Db(self.cache_dir / _DB_NAME, self._sync)

    def _init_fresh(self, head: str | None, mode: int, uid: int | None, gid: int | None) -> None:
        version = self.repo.version(head) if head else None
        tree = version.root if version else ""
        stats = version.stats if version else None
        now = self._clock()
        # The root's own attributes come from the version when it recorded them (older
        # versions did not); otherwise from the caller (a new volume, a legacy version).
        attrs = version.root_attrs if version else None
        if attrs is not None:
            mode, uid, gid = attrs.mode, attrs.uid, attrs.gid
        mtime = attrs.mtime_ns if attrs is not None and attrs.mtime_ns else now
        ctime = attrs.ctime_ns if attrs is not None and attrs.ctime_ns else now
        db = self._db
        with db.op():
            db.x(
                "INSERT INTO inodes (ino, kind, mode, uid, gid, atime_ns, mtime_ns, ctime_ns, "
                "nlink, parent, tree, loaded) VALUES (?, 'd', ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)",
                (
                    ROOT,
                    mode & 0o7777,
                    os.getuid() if uid is None else uid,
                    os.getgid() if gid is None else gid,
                    mtime,
                    mtime,
                    ctime,
                    ROOT,
                    tree,
                    0 if tree else 1,
                ),
            )
            for key, value in attrs.xattrs if attrs is not None else ():
                if key.startswith("security."):
                    self._security_xattrs = True
                db.x(
                    "INSERT INTO xattrs (ino, name, value) VALUES (?, ?, ?)",
                    (ROOT, encode_name(key), value),
                )
            meta: dict[str, Any] = {
                "volume": self.claim.volume,
                "base": head or "",
                "pending_root": "",
                "links_resolved": 0,
                "stat_bytes": stats.bytes if stats else 0,
                "stat_files": stats.files if stats else 0,
                "stat_dirs": stats.dirs if stats else 0,
                "stat_chunks": stats.chunks if stats else 0,
                "format": SCHEMA_VERSION,
            }
            for key, value in meta.items():
                db.set_meta(key, value)
        db.durable()

    def _recover(self) -> None:
        """Tidy what a crash left and re-queue sealed blocks (locked)."""
        db = self._db
        with db.op():
            for r in db.x("SELECT ino FROM inodes WHERE nlink = 0 AND kind != 'd'").fetchall():
                self._free_file(int(r[0]))
        named = {int(r[0]) for r in db.x("SELECT dfile FROM blocks WHERE state = ?", (DIRTY,))}
        highest = max(named, default=0)
        for path in (self.cache_dir / "dirty").iterdir():
            n = int(path.name) if path.name.isdigit() else 0
            highest = max(highest, n)
            if n not in named:
                path.unlink(missing_ok=True)
        self._next_dfile = highest + 1
        self._cut_dirty_tails()
        staged = {
            str(r[0])
            for r in db.x(
                "SELECT DISTINCT hash FROM blocks WHERE state IN (?, ?) AND data IS NULL",
                (SEALED, STORED),
            )
        }
        for sub in (self.cache_dir / "staged").iterdir():
            for path in sub.iterdir() if sub.is_dir() else ():
                if path.name not in staged:
                    path.unlink(missing_ok=True)
        with db.op():
            db.x("UPDATE blocks SET queued = 0 WHERE queued = 1")
            self._queue_unqueued()  # whatever the last process had queued may be lost

    def _cut_dirty_tails(self) -> None:
        """Zero DIRTY bytes past their file's end (locked, at recovery).

        A write's bytes reach its dirty file before its new size reaches the database
        (always for an instant, for up to FLUSH_AFTER on the fast path); a crash in
        between leaves bytes past the recorded end, which must read as zeros.
        """
        for r in self._db.x(
            "SELECT b.idx, b.dfile, i.size FROM blocks b JOIN inodes i ON i.ino = b.ino "
            "WHERE b.state = ? AND b.dfile != 0",
            (DIRTY,),
        ).fetchall():
            path = self._dirty_path(r["dfile"])
            length = block_len(r["idx"], r["size"])
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_size > length:
                    os.truncate(path, length)


def _lock(cache_dir: Path) -> int:
    fd = os.open(cache_dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise FsError(
            errno.EBUSY, f"{cache_dir} is in use by another working state (another mount?)"
        ) from None
    return fd


def _abandon(
    lock_fd: int,
    db: Db,
    fds: dict[str, int],
    sealer: ThreadPoolExecutor | None,
    uploader: Uploader | None,
    reader: BlockReader,
) -> None:
    """Release OS resources without flushing anything (close, or a dropped object).

    A batch not yet committed is rolled back, exactly as a crash would lose it.
    """
    if sealer is not None:
        sealer.shutdown(wait=False, cancel_futures=True)
    for fd in fds.values():
        os.close(fd)
    fds.clear()
    try:
        db.conn.close()
    finally:
        os.close(lock_fd)
        if uploader is not None:
            uploader.close(flush=False)
        reader.close()
