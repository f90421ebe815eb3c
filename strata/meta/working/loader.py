"""Lazy materialisation of the base version into the local database (invariant 3).

Nothing of the base is copied up front. A name is materialised when it is looked up
(one ``TreeReader.lookup``: one page even in a huge directory); a whole directory when
it is listed; a file's block map when it is first written. A subtree nobody touches
stays a reference to its base tree hash, and commit reuses that hash verbatim
(invariant 2).

Hard links. Entries of one hard-link group share a ``link_id`` and map to one inode,
but they can sit in directories not loaded yet, and POSIX needs the exact link count
(and a write through one name must reach every name at commit). So the first time an
entry with a ``link_id`` is materialised, every directory whose base subtree holds a
link is loaded (:meth:`Loader._resolve_links`): one walk of the base's trees, once per
working state, and only for volumes that have hard links at all. A per-version link
index in the format would make this O(links); see the report in docs.
"""

from __future__ import annotations

import errno
import sqlite3
import threading
from collections.abc import Callable

from strata.meta.entry import BlockRef, Entry, Kind
from strata.meta.working.base import (
    REMOTE,
    ROOT,
    B,
    Core,
    NeedIO,
    decode_content,
    encode_content,
)
from strata.meta.working.db import decode_name, encode_name
from strata.meta.working.types import FsError

_ABSENT_CACHE = 10_000
_BLOCK_LIST_CACHE = 64


class Loader(Core):
    """Materialise names, directories, block maps and link groups on demand."""

    _links_lock: threading.RLock
    _resolving: bool
    _links_memo: dict[str, bool]

    def _init_loader(self) -> None:
        self._links_lock = threading.RLock()
        self._resolving = False
        self._links_memo = {}

    def _apply(self, fn: Callable[[], None]) -> None:
        """Run a local-only change under the lock as one database operation."""
        with self._lock, self._db.op():
            fn()

    # --- names ---------------------------------------------------------------------

    def _child(self, prow: sqlite3.Row, raw: bytes) -> int | None:
        """The inode ``raw`` names in directory ``prow`` (locked); NeedIO if unknown."""
        parent = prow["ino"]
        d = self._db.one("SELECT ino FROM dentries WHERE parent = ? AND name = ?", (parent, raw))
        if d is not None:
            return int(d["ino"])
        tree = prow["tree"]
        if prow["loaded"] or not tree:
            return None
        if self._db.one("SELECT 1 FROM changed WHERE parent = ? AND name = ?", (parent, raw)):
            return None  # removed or renamed away since the base: hides the base entry
        if (parent, raw, tree) in self._absent:
            return None
        raise NeedIO(lambda: self._fetch_name(parent, raw, tree))

    def _fetch_name(self, parent: int, raw: bytes, tree: str) -> None:
        entry = self._fetching(self._reader.lookup, tree, decode_name(raw))

        def apply() -> None:
            prow = self._db.one("SELECT tree, loaded FROM inodes WHERE ino = ?", (parent,))
            if prow is None or prow["loaded"] or prow["tree"] != tree:
                return
            if self._db.one(
                "SELECT 1 FROM dentries WHERE parent = ? AND name = ? "
                "UNION ALL SELECT 1 FROM changed WHERE parent = ? AND name = ?",
                (parent, raw, parent, raw),
            ):
                return
            if entry is None:
                self._absent[(parent, raw, tree)] = None
                while len(self._absent) > _ABSENT_CACHE:
                    self._absent.popitem(last=False)
                return
            self._materialize(parent, raw, entry)

        self._apply(apply)
        if entry is not None and entry.link_id:
            self._resolve_links()

    def _materialize(self, parent: int, raw: bytes, e: Entry) -> int:
        """Insert inode and dentry for base entry ``e`` (locked, inside an op)."""
        if e.link_id:
            link = self._db.one("SELECT ino FROM links WHERE link_id = ?", (e.link_id,))
            if link is not None and self._db.one(
                "SELECT 1 FROM inodes WHERE ino = ?", (link["ino"],)
            ):
                ino = int(link["ino"])
                self._db.x("UPDATE inodes SET nlink = nlink + 1 WHERE ino = ?", (ino,))
                self._db.x(
                    "INSERT INTO dentries (parent, name, ino) VALUES (?, ?, ?)", (parent, raw, ino)
                )
                return ino
        kind = Kind(e.kind)
        cols: dict[str, object] = {
            "kind": kind.value,
            "mode": e.mode & 0o7777,
            "uid": e.uid,
            "gid": e.gid,
            "size": e.size,
            "atime_ns": e.mtime_ns,
            "mtime_ns": e.mtime_ns,
            "ctime_ns": e.ctime_ns,
            "nlink": 1,
            "link_id": e.link_id,
        }
        if kind == Kind.DIR:
            cols.update(size=0, tree=e.tree, loaded=0, parent=parent)
        elif kind == Kind.SYMLINK:
            cols.update(target=e.target)
        else:
            cols.update(content=encode_content(e.content), blocks_loaded=0)
        names = ", ".join(cols)
        marks = ", ".join("?" for _ in cols)
        cur = self._db.x(f"INSERT INTO inodes ({names}) VALUES ({marks})", tuple(cols.values()))
        ino = int(cur.lastrowid or 0)
        self._db.x("INSERT INTO dentries (parent, name, ino) VALUES (?, ?, ?)", (parent, raw, ino))
        if e.xattrs:
            if any(k.startswith("security.") for k, _ in e.xattrs):
                self._security_xattrs = True
            self._db.many(
                "INSERT OR REPLACE INTO xattrs (ino, name, value) VALUES (?, ?, ?)",
                [(ino, encode_name(k), bytes(v)) for k, v in e.xattrs],
            )
        if e.link_id:
            self._db.x(
                "INSERT OR REPLACE INTO links (link_id, ino) VALUES (?, ?)", (e.link_id, ino)
            )
        return ino

    # --- whole directories ---------------------------------------------------------

    def _need_loaded(self, row: sqlite3.Row) -> None:
        """Raise NeedIO unless every entry of directory ``row`` is materialised."""
        if not row["loaded"]:
            ino = row["ino"]
            raise NeedIO(lambda: self._load_dir(ino))

    def _load_dir(self, ino: int) -> None:
        with self._lock:
            row = self._db.one("SELECT tree, loaded FROM inodes WHERE ino = ?", (ino,))
            if row is None or row["loaded"]:
                return
            tree = row["tree"]
        entries = self._fetching(lambda: list(self._reader.iter_entries(tree))) if tree else []
        found_links = False

        def apply() -> None:
            nonlocal found_links
            row = self._db.one("SELECT tree, loaded FROM inodes WHERE ino = ?", (ino,))
            if row is None or row["loaded"] or row["tree"] != tree:
                return
            skip = {
                bytes(r[0])
                for r in self._db.x(
                    "SELECT name FROM dentries WHERE parent = ? "
                    "UNION SELECT name FROM changed WHERE parent = ?",
                    (ino, ino),
                )
            }
            for e in entries:
                raw = encode_name(e.name)
                if raw not in skip:
                    self._materialize(ino, raw, e)
                    found_links = found_links or bool(e.link_id)
            nsub = self._db.scalar(
                "SELECT COUNT(*) FROM dentries d JOIN inodes i ON i.ino = d.ino "
                "WHERE d.parent = ? AND i.kind = 'd'",
                (ino,),
                0,
            )
            self._set(ino, loaded=1, nsubdirs=nsub)

        self._apply(apply)
        if found_links:
            self._resolve_links()

    # --- hard-link groups ----------------------------------------------------------

    def _resolve_links(self) -> None:
        """Load every directory whose base subtree holds a hard link (once)."""
        with self._links_lock:
            if self._resolving:
                return  # re-entered from a _load_dir this walk started
            with self._lock:
                if self._db.get_meta("links_resolved", 0):
                    return
            self._resolving = True
            try:
                stack = [ROOT]
                while stack:
                    d = stack.pop()
                    with self._lock:
                        row = self._db.one("SELECT tree, loaded FROM inodes WHERE ino = ?", (d,))
                    if row is None:
                        continue
                    if not row["loaded"] and row["tree"] and self._tree_has_links(row["tree"]):
                        self._load_dir(d)
                    with self._lock:
                        stack.extend(
                            int(r[0])
                            for r in self._db.x(
                                "SELECT d.ino FROM dentries d JOIN inodes i ON i.ino = d.ino "
                                "WHERE d.parent = ? AND i.kind = 'd'",
                                (d,),
                            )
                        )
                self._apply(lambda: self._db.set_meta("links_resolved", 1))
            finally:
                self._resolving = False

    def _tree_has_links(self, tree: str) -> bool:
        found = self._links_memo.get(tree)
        if found is None:
            found = False
            for e in self._reader.iter_entries(tree):
                if e.link_id or (e.kind == Kind.DIR and self._tree_has_links(e.tree)):
                    found = True
                    break
            self._links_memo[tree] = found
        return found

    # --- block maps ----------------------------------------------------------------

    def _base_block_list(self, row: sqlite3.Row) -> tuple[BlockRef, ...]:
        """The block list of an unmaterialised file's base content (locked)."""
        key = row["content"]
        cached = self._base_blocks.get(key)
        if cached is not None:
            self._base_blocks.move_to_end(key)
            return cached
        content = decode_content(key)
        if content.pages:
            raise NeedIO(lambda: self._fetch_block_list(key))
        self._remember_block_list(key, content.blocks)
        return content.blocks

    def _fetch_block_list(self, key: str) -> None:
        blocks = self._fetching(lambda: tuple(self._reader.iter_blocks(decode_content(key))))
        with self._lock:
            self._remember_block_list(key, blocks)

    def _remember_block_list(self, key: str, blocks: tuple[BlockRef, ...]) -> None:
        self._base_blocks[key] = blocks
        while len(self._base_blocks) > _BLOCK_LIST_CACHE:
            self._base_blocks.popitem(last=False)

    def _ensure_blocks(self, row: sqlite3.Row) -> sqlite3.Row:
        """Materialise a file's block map into ``blocks`` (locked); the fresh row."""
        if row["blocks_loaded"]:
            return row
        blocks = self._base_block_list(row)
        ino = row["ino"]
        rows = []
        for idx, b in enumerate(blocks):
            if b.size > B:
                raise FsError(errno.EIO, f"inode {ino}: block {idx} is larger than a chunk")
            if b.hash:
                rows.append((ino, idx, REMOTE, b.hash, b.size))
        self._db.many(
            "INSERT OR REPLACE INTO blocks (ino, idx, state, hash, size) VALUES (?, ?, ?, ?, ?)",
            rows,
        )
        self._set(ino, blocks_loaded=1)
        return self._inode(ino)
