"""A read-only, inode-based view of one sealed version (what read-only mounts serve).

Versions are immutable, so nothing here is ever invalidated: inodes are handed out as
names are looked up (O(1) mount, invariant 3: nothing is read before the first lookup,
and a lookup reads one tree page per index level), and the same answers can be cached
by the kernel for as long as it likes. Hard links (entries sharing a ``link_id``) map
to one inode.
"""

from __future__ import annotations

import errno
import threading
from collections import Counter
from dataclasses import dataclass, replace

from strata.chunks.reader import BlockReader
from strata.meta.entry import BlockRef, Entry, Kind
from strata.meta.repo import Repository
from strata.meta.version import Version
from strata.meta.working.types import Attr, DirEntry, FsError, StatFs

ROOT = 1


@dataclass
class _Node:
    entry: Entry
    parent: int
    blocks: tuple[BlockRef, ...] | None = None  # loaded on first read


class VersionView:
    """Serve ``version`` read-only with the same query API as the working state."""

    read_only = True

    def __init__(self, repo: Repository, version: Version, *, max_parallel: int = 8) -> None:
        self.repo = repo
        self.version = version
        self._trees = repo.trees
        self._reader = BlockReader(repo.content, max_parallel=max_parallel)
        self._lock = threading.Lock()
        # Versions record the root's own attributes; older ones did not (0755 root:root,
        # times of the commit).
        created = int(version.created * 1e9)
        attrs = version.root_attrs or Entry(
            name="", kind=Kind.DIR, mode=0o755, mtime_ns=created, ctime_ns=created
        )
        root = replace(attrs, tree=version.root)
        self._nodes: dict[int, _Node] = {ROOT: _Node(root, ROOT)}
        self._children: dict[tuple[int, str], int] = {}
        self._links: dict[str, int] = {}
        self._link_counts: Counter[str] | None = None
        self._link_counts_lock = threading.Lock()
        self._next = ROOT + 1

    # --- inode bookkeeping ---------------------------------------------------------------

    def _node(self, ino: int) -> _Node:
        node = self._nodes.get(ino)
        if node is None:
            raise FsError(errno.ENOENT, f"inode {ino} is not known")
        return node

    def _dir(self, ino: int) -> _Node:
        node = self._node(ino)
        if node.entry.kind != Kind.DIR:
            raise FsError(errno.ENOTDIR, f"inode {ino} is not a directory")
        return node

    def _inode_for(self, parent: int, entry: Entry) -> int:
        with self._lock:
            key = (parent, entry.name)
            ino = self._children.get(key)
            if ino is None and entry.link_id:
                ino = self._links.get(entry.link_id)
            if ino is None:
                ino = self._next
                self._next += 1
                self._nodes[ino] = _Node(entry, parent)
                if entry.link_id:
                    self._links[entry.link_id] = ino
            self._children[key] = ino
            return ino

    def _attr(self, ino: int) -> Attr:
        e = self._node(ino).entry
        nlink = 1
        if e.kind == Kind.DIR:
            nlink = 2
        elif e.link_id:
            nlink = self._link_count(e.link_id)
        return Attr(
            ino, e.kind, e.mode, nlink, e.uid, e.gid, e.size, e.mtime_ns, e.mtime_ns, e.ctime_ns
        )

    def _link_count(self, link_id: str) -> int:
        """How many names the hard-link group ``link_id`` has in this version.

        Tools rely on ``st_nlink`` (tar and rsync keep hard links only when it is above
        1), but the names of a group can sit anywhere in the tree. Entries carry no
        count, so the first hard link a mount meets costs one walk of the version's
        trees -- as the writable working state does (``Loader._resolve_links``); the
        version is immutable, so the counts are computed once per mount.
        """
        with self._link_counts_lock:
            if self._link_counts is None:
                counts: Counter[str] = Counter()
                pending: Counter[str] = Counter({self.version.root: 1} if self.version.root else {})
                while pending:  # iterative: directory depth is unbounded
                    tree, copies = pending.popitem()
                    for e in self._trees.iter_entries(tree):
                        if e.link_id:
                            counts[e.link_id] += copies
                        elif e.kind == Kind.DIR and e.tree:
                            pending[e.tree] += copies
                self._link_counts = counts
            return max(self._link_counts[link_id], 1)

    # --- queries (same names as WorkingState) ---------------------------------------------

    def getattr(self, ino: int) -> Attr:
        return self._attr(ino)

    def lookup(self, parent: int, name: str) -> Attr:
        node = self._dir(parent)
        if name == ".":
            return self._attr(parent)
        if name == "..":
            return self._attr(node.parent)
        entry = self._trees.lookup(node.entry.tree, name)
        if entry is None:
            raise FsError(errno.ENOENT, f"{name!r} not found")
        return self._attr(self._inode_for(parent, entry))

    def readdir(self, ino: int) -> list[DirEntry]:
        node = self._dir(ino)
        return [
            DirEntry(e.name, self._attr(self._inode_for(ino, e)))
            for e in self._trees.iter_entries(node.entry.tree)
        ]

    def readlink(self, ino: int) -> str:
        e = self._node(ino).entry
        if e.kind != Kind.SYMLINK:
            raise FsError(errno.EINVAL, f"inode {ino} is not a symbolic link")
        return e.target

    def read(self, ino: int, offset: int, size: int) -> bytes:
        node = self._node(ino)
        if node.entry.kind != Kind.FILE:
            raise FsError(errno.EISDIR, f"inode {ino} is not a regular file")
        end = min(offset + size, node.entry.size)
        if end <= offset:
            return b""
        if node.blocks is None:
            node.blocks = tuple(self._trees.iter_blocks(node.entry.content))
        return self._reader.read(node.blocks, offset, end - offset)

    def getxattr(self, ino: int, name: str) -> bytes:
        for key, value in self._node(ino).entry.xattrs:
            if key == name:
                return value
        raise FsError(errno.ENODATA, f"no extended attribute {name!r}")

    def listxattr(self, ino: int) -> list[str]:
        return [key for key, _ in self._node(ino).entry.xattrs]

    def statfs(self) -> StatFs:
        s = self.version.stats
        return StatFs(s.bytes, s.files, s.dirs, s.chunks, 0)

    def open_handle(self, ino: int) -> Attr:
        return self._attr(ino)

    def release_handle(self, ino: int) -> None:
        return None

    def forget(self, ino: int) -> None:
        return None  # inode numbers stay stable for the life of the mount

    def close(self) -> None:
        self._reader.close()
