"""Commit: turn the overlay into a version, in O(change) (invariant 2).

1. Seal every DIRTY block (hashing outside the lock), then, under the lock, seal what
   is left and take a *snapshot*: for each dirty directory (children first) the
   entries named in ``changed`` -- or all entries for a directory new since the base
   -- plus the block lists of files whose data changed. Nothing else is read: a
   clean subtree is a tree hash already in its parent's entry.
2. Without the lock: flush the uploader (every SEALED block reaches the store, or the
   commit fails), write block lists and directories bottom-up with
   ``TreeWriter.update_dir`` (one page per change even in a huge directory), and call
   ``Repository.commit``, which fences on the writer epoch.
3. Under the lock: re-base. Directories and files not changed since the snapshot
   become clean with their new hashes; anything changed meanwhile (the mount stays
   writable during a commit) stays dirty and goes into the next commit.

A failed commit (FencedWriter, store errors) changes nothing local: the overlay stays
dirty and the error reaches the caller. If the process dies after the head moved but
before the re-base, ``pending_root`` lets the next open recognise its own commit.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sqlite3
import threading
from dataclasses import dataclass, field, replace

from strata.meta.entry import BlockRef, Content, Entry, Kind
from strata.meta.version import Stats, Version
from strata.meta.working.base import DIRTY, ROOT, SEALED, STORED, B, block_len, nblocks
from strata.meta.working.base import decode_content as _decode
from strata.meta.working.base import encode_content as _encode
from strata.meta.working.data import Data
from strata.meta.working.db import decode_name
from strata.meta.working.types import FsError, StatFs


@dataclass
class _Spec:
    """One entry to write; ``dir_ino``/``file_ino`` mark hashes computed later."""

    entry: Entry
    dir_ino: int = 0
    file_ino: int = 0


@dataclass
class _DirSnap:
    ino: int
    tree: str  # '' → write every entry; else apply ``entries`` to this tree
    entries: dict[str, _Spec | None]


@dataclass
class _Snapshot:
    dirs: list[_DirSnap]  # children before parents
    files: dict[int, list[BlockRef]]
    sealed: list[tuple[int, int, str]]
    root_tree: str
    base: str | None
    stats: Stats
    root_attrs: Entry
    candidates: set[str] = field(default_factory=set)


log = logging.getLogger(__name__)

#: local copies deleted per hold of the lock when trimming
_TRIM_BATCH = 256


class Commit(Data):
    """``commit``, ``trim_staged`` and ``statfs``."""

    _commit_lock: threading.Lock
    #: bytes of local copies of stored blocks kept after each commit (None: no limit)
    staged_budget: int | None

    def commit(self, message: str = "", *, author: str = "") -> Version:
        """Seal the current state as the volume's next version; re-base on it."""
        if self.claim is None:
            raise FsError(errno.EROFS, "this working state has no writer claim")
        with self._commit_lock:
            self.seal_all()
            snap = self._run(self._snapshot)
            try:
                self._uploader.flush()
                self._verify_uploaded(snap)
                hashes, contents = self._build(snap)
                root = hashes.get(ROOT, snap.root_tree)
                self._run(lambda: self._db.set_meta("pending_root", root))
                version = self.repo.commit(
                    self.claim,
                    root,
                    message,
                    snap.stats,
                    parent=snap.base,
                    author=author,
                    root_attrs=snap.root_attrs,
                )
            except BaseException:
                with self._lock:
                    self._committing = False
                    self._flush_submits = None
                    self._staged_candidates |= snap.candidates
                    with contextlib.suppress(sqlite3.Error), self._db.op():
                        self._db.set_meta("pending_root", "")
                raise
            try:
                self._run(lambda: self._rebase(snap, version, hashes, contents))
            finally:
                # If re-basing failed, the overlay still names the old base: the next
                # open adopts this version through ``pending_root``.
                with self._lock:
                    self._committing = False
                    self._flush_submits = None
            self._durable()
            if self.staged_budget is not None:
                try:
                    self.trim_staged(self.staged_budget)
                except OSError as exc:  # a cache that stays too big is not worth failing for
                    log.warning("could not trim the local block copies: %s", exc)
            return version

    # --- snapshot (locked) -----------------------------------------------------------

    def _snapshot(self) -> _Snapshot:
        for b in self._db.x(
            "SELECT b.*, i.size AS fsize FROM blocks b JOIN inodes i ON i.ino = b.ino "
            "WHERE b.state = ?",
            (DIRTY,),
        ).fetchall():
            self._seal_locked(b, b["fsize"])
        self._queue_unqueued()
        dirty = {
            int(r["ino"]): (int(r["parent"]), str(r["tree"]))
            for r in self._db.x("SELECT ino, parent, tree FROM inodes WHERE dirty = 1")
        }
        depth: dict[int, int] = {ROOT: 0}

        def depth_of(ino: int) -> int:
            # Every ancestor of a dirty directory is dirty, so parents are in ``dirty``.
            if ino not in depth:
                parent = dirty[ino][0] if ino in dirty else ROOT
                depth[ino] = depth_of(parent) + 1
            return depth[ino]

        dirs: list[_DirSnap] = []
        files: dict[int, list[BlockRef]] = {}
        for ino in sorted(dirty, key=depth_of, reverse=True):
            tree = dirty[ino][1]
            if tree:
                names = [
                    bytes(r[0])
                    for r in self._db.x("SELECT name FROM changed WHERE parent = ?", (ino,))
                ]
            else:
                names = [
                    bytes(r[0])
                    for r in self._db.x("SELECT name FROM dentries WHERE parent = ?", (ino,))
                ]
            entries = {decode_name(raw): self._spec(ino, raw, dirty, files) for raw in names}
            dirs.append(_DirSnap(ino, tree, entries))
        root = self._inode(ROOT)
        sealed = [
            (int(r[0]), int(r[1]), str(r[2]))
            for r in self._db.x("SELECT ino, idx, hash FROM blocks WHERE state = ?", (SEALED,))
        ]
        st = self.statfs_locked()
        base = self._db.get_meta("base", "") or None
        self._committing = True
        self._touched_dirs = set()
        self._touched_files = set()
        self._flush_submits = set()
        candidates, self._staged_candidates = self._staged_candidates, set()
        return _Snapshot(
            dirs=dirs,
            files=files,
            sealed=sealed,
            root_tree=root["tree"],
            base=base,
            stats=Stats(bytes=st.bytes, files=st.files, dirs=st.dirs, chunks=st.chunks),
            root_attrs=replace(self._entry_of(root, ""), tree=""),
            candidates=candidates,
        )

    def _entry_of(self, row: sqlite3.Row, name: str) -> Entry:
        """The Entry of inode ``row`` under ``name`` (a file's content as of its base;
        ``_build`` replaces it when the file's data changed)."""
        kind = Kind(row["kind"])
        xattrs = tuple(
            (decode_name(r[0]), bytes(r[1]))
            for r in self._db.x(
                "SELECT name, value FROM xattrs WHERE ino = ? ORDER BY name", (row["ino"],)
            )
        )
        return Entry(
            name=name,
            kind=kind,
            mode=row["mode"],
            uid=row["uid"],
            gid=row["gid"],
            mtime_ns=row["mtime_ns"],
            ctime_ns=row["ctime_ns"],
            size=row["size"] if kind != Kind.DIR else 0,
            xattrs=xattrs,
            target=row["target"] if kind == Kind.SYMLINK else "",
            tree=row["tree"] if kind == Kind.DIR else "",
            link_id=row["link_id"] if kind != Kind.DIR and row["nlink"] > 1 else "",
            content=_decode(row["content"]) if kind == Kind.FILE else Content(),
        )

    def _spec(
        self,
        parent: int,
        raw: bytes,
        dirty: dict[int, tuple[int, str]],
        files: dict[int, list[BlockRef]],
    ) -> _Spec | None:
        d = self._db.one("SELECT ino FROM dentries WHERE parent = ? AND name = ?", (parent, raw))
        if d is None:
            return None
        row = self._inode(d["ino"])
        entry = self._entry_of(row, decode_name(raw))
        spec = _Spec(entry)
        if entry.kind == Kind.DIR and row["ino"] in dirty:
            spec.dir_ino = row["ino"]
        elif entry.kind == Kind.FILE and row["data_dirty"]:
            spec.file_ino = row["ino"]
            if row["ino"] not in files:
                files[row["ino"]] = self._block_list(row)
        return spec

    def _block_list(self, row: sqlite3.Row) -> list[BlockRef]:
        size = row["size"]
        refs = [BlockRef("", block_len(i, size)) for i in range(nblocks(size))]
        for b in self._db.x("SELECT idx, hash, size FROM blocks WHERE ino = ?", (row["ino"],)):
            if b["idx"] < len(refs):
                refs[b["idx"]] = BlockRef(b["hash"], b["size"])
        return refs

    # --- build (no lock: store writes) -----------------------------------------------

    def _verify_uploaded(self, snap: _Snapshot) -> None:
        """Re-upload sealed blocks that are no longer in the store.

        A block uploaded in the background but not yet committed is garbage to GC; if a
        sweep inside its grace window removed it (or an in-process GC ran with no grace
        at all), referencing it would seal a broken version. ``has_chunk`` answers from
        memory for blocks this session uploaded, so this costs no request in the normal
        case.
        """
        for digest in sorted({h for _, _, h in snap.sealed}):
            # fresh: uploads recovered from a crashed session, or older than a claim that
            # lapsed, must be refreshed too, or GC may sweep them (strata.meta.gc).
            if self._content.has_chunk(digest, fresh=True):
                continue
            with self._lock:
                row = self._db.one(
                    "SELECT data FROM blocks WHERE hash = ? AND data IS NOT NULL LIMIT 1",
                    (digest,),
                )
            path = self._staged_path(digest)
            if row is not None:
                data = bytes(row["data"])
            elif path.exists():
                data = path.read_bytes()
            else:
                raise FsError(
                    errno.EAGAIN,
                    f"block {digest} vanished from the store and was rewritten locally; "
                    "commit again",
                )
            self._content.put_chunk(data, expected=digest)

    def _build(self, snap: _Snapshot) -> tuple[dict[int, str], dict[int, Content]]:
        contents = {ino: self._writer.write_blocks(refs) for ino, refs in snap.files.items()}
        hashes: dict[int, str] = {}

        def resolve(spec: _Spec) -> Entry:
            e = spec.entry
            if spec.dir_ino:
                e = replace(e, tree=hashes[spec.dir_ino])
            if spec.file_ino:
                e = replace(e, content=contents[spec.file_ino])
            return e

        for ds in snap.dirs:
            if ds.tree:
                changes = {n: resolve(s) if s else None for n, s in ds.entries.items()}
                hashes[ds.ino] = self._writer.update_dir(ds.tree, changes)
            else:
                hashes[ds.ino] = self._writer.write_dir(
                    resolve(s) for s in ds.entries.values() if s is not None
                )
        if ROOT not in hashes and not snap.root_tree:
            hashes[ROOT] = self._writer.write_dir([])  # an empty volume's first commit
        return hashes, contents

    # --- re-base (locked) ------------------------------------------------------------

    def _rebase(
        self,
        snap: _Snapshot,
        version: Version,
        hashes: dict[int, str],
        contents: dict[int, Content],
    ) -> None:
        for ino, tree in hashes.items():
            if ino in self._touched_dirs:
                self._set(ino, tree=tree)
            else:
                self._set(ino, tree=tree, dirty=0)
                self._db.x("DELETE FROM changed WHERE parent = ?", (ino,))
        for ino, content in contents.items():
            if ino in self._touched_files:
                self._set(ino, content=_encode(content))
            else:
                self._set(ino, content=_encode(content), data_dirty=0)
        self._db.many(
            "UPDATE blocks SET state = ? WHERE ino = ? AND idx = ? AND state = ? AND hash = ?",
            [(STORED, ino, idx, SEALED, h) for ino, idx, h in snap.sealed],
        )
        self._db.set_meta("base", version.ref)
        self._db.set_meta("pending_root", "")
        submitted = self._flush_submits or set()
        for digest in snap.candidates:
            if digest in submitted or self._db.one(
                "SELECT 1 FROM blocks WHERE hash = ? AND state IN (?, ?) LIMIT 1",
                (digest, SEALED, STORED),
            ):
                continue
            path = self._staged_path(digest)
            self._forget_fd(path)
            self._unlink_after_durable(path)
        self._committing = False
        self._flush_submits = None
        self._touched_dirs = set()
        self._touched_files = set()

    # --- the local copies of stored blocks ------------------------------------------------

    def trim_staged(self, budget: int) -> int:
        """Delete local copies of *stored* blocks, least recently used first, until the
        staged files take at most ``budget`` bytes; return the bytes freed.

        A stored block's local copy is only a read cache (reads fall back to the store
        through the chunk cache). Blocks not known to be stored -- DIRTY, SEALED -- are
        the only copy of their data and are never touched, so the staged area can stay
        above ``budget`` until the next commit stores them.
        """
        staged = self.cache_dir / "staged"
        files: list[tuple[float, int, str]] = []
        total = 0
        for sub in staged.iterdir():
            if not sub.is_dir():
                continue
            with os.scandir(sub) as it:
                for entry in it:
                    try:
                        st = entry.stat()
                    except FileNotFoundError:
                        continue
                    total += st.st_size
                    files.append((max(st.st_atime, st.st_mtime), st.st_size, entry.name))
        if total <= budget:
            return 0
        with self._lock:
            only_stored = {
                str(r[0])
                for r in self._db.x(
                    "SELECT hash FROM blocks WHERE state IN (?, ?) AND data IS NULL "
                    "GROUP BY hash HAVING MIN(state) = ?",
                    (SEALED, STORED, STORED),
                )
            }
        freed = 0
        victims = sorted(f for f in files if f[2] in only_stored)
        for start in range(0, len(victims), _TRIM_BATCH):
            if total - freed <= budget:
                break
            with self._lock:  # re-checked under the lock: a write may have used one
                for _, size, digest in victims[start : start + _TRIM_BATCH]:
                    if total - freed <= budget:
                        break
                    if self._db.one(
                        "SELECT 1 FROM blocks WHERE hash = ? AND state = ? AND data IS NULL "
                        "LIMIT 1",
                        (digest, SEALED),
                    ):
                        continue
                    path = self._staged_path(digest)
                    self._forget_fd(path)
                    path.unlink(missing_ok=True)
                    freed += size
        return freed

    # --- totals ------------------------------------------------------------------------

    def statfs(self) -> StatFs:
        """Bytes, files, directories and chunks of the current state (estimates)."""
        return self._run_ro(self.statfs_locked)

    def statfs_locked(self) -> StatFs:
        def stat(key: str) -> int:
            return int(self._db.get_meta(f"stat_{key}", 0))

        dirty = self._db.scalar(
            "SELECT SUM(CASE WHEN state = 0 THEN COALESCE(length(data), ?) ELSE size END) "
            "FROM blocks WHERE state < 2",
            (B,),
            0,
        )
        return StatFs(
            bytes=stat("bytes"),
            files=stat("files"),
            dirs=stat("dirs"),
            chunks=stat("chunks"),
            dirty_bytes=int(dirty),
        )
