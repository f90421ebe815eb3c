"""Namespace operations: lookup, create, mkdir, symlink, link, unlink, rmdir, rename,
readdir, setattr and xattrs -- inode-based, as FUSE speaks.

Every operation validates first and changes second, inside one database operation
(:meth:`Core._run`), so an error leaves nothing half done. POSIX behaviour follows
Linux: ``unlink`` of a directory is EISDIR, ``rename`` onto itself or between two
names of one inode does nothing, a directory may not move below itself (EINVAL),
replacing needs matching kinds (ENOTDIR / EISDIR) and an empty target directory.
"""

from __future__ import annotations

import errno
import secrets
import sqlite3

from strata.meta.entry import Kind
from strata.meta.working.base import ROOT, check_name, nblocks
from strata.meta.working.data import Data
from strata.meta.working.db import decode_name, encode_name
from strata.meta.working.types import XATTR_CREATE, XATTR_REPLACE, Attr, DirEntry, FsError

_XATTR_NAME_MAX = 255
_XATTR_SIZE_MAX = 64 * 1024
_SECURITY = "security."


class Namespace(Data):
    """Directory-tree operations over inodes."""

    # --- queries -----------------------------------------------------------------------

    def getattr(self, ino: int) -> Attr:
        return self._run_ro(lambda: self._attr(self._inode(ino)))

    def lookup(self, parent: int, name: str) -> Attr:
        """The attributes of ``name`` in directory ``parent`` (ENOENT if absent)."""

        def op() -> Attr:
            prow = self._dir(parent)
            if name == ".":
                return self._attr(prow)
            if name == "..":
                return self._attr(self._inode(prow["parent"] or ROOT))
            ino = self._child(prow, check_name(name))
            if ino is None:
                raise FsError(errno.ENOENT, f"{name!r} not found in directory {parent}")
            return self._attr(self._inode(ino))

        return self._run_ro(op)

    def readdir(self, ino: int) -> list[DirEntry]:
        """Every entry of directory ``ino`` sorted by name ('.' and '..' not included)."""

        def op() -> list[DirEntry]:
            row = self._dir(ino)
            self._need_loaded(row)
            return [
                DirEntry(decode_name(r["dname"]), self._attr(r))
                for r in self._db.x(
                    "SELECT d.name AS dname, i.* FROM dentries d JOIN inodes i ON i.ino = d.ino "
                    "WHERE d.parent = ? ORDER BY d.name",
                    (ino,),
                )
            ]

        return self._run_ro(op)

    def readlink(self, ino: int) -> str:
        def op() -> str:
            row = self._inode(ino)
            if row["kind"] != Kind.SYMLINK.value:
                raise FsError(errno.EINVAL, f"inode {ino} is not a symbolic link")
            return str(row["target"])

        return self._run_ro(op)

    # --- creating names --------------------------------------------------------------

    def create(self, parent: int, name: str, mode: int, uid: int = 0, gid: int = 0) -> Attr:
        """A new empty regular file (EEXIST if the name exists)."""
        return self._run(lambda: self._new(parent, name, Kind.FILE, mode, uid, gid))

    def mkdir(self, parent: int, name: str, mode: int, uid: int = 0, gid: int = 0) -> Attr:
        return self._run(lambda: self._new(parent, name, Kind.DIR, mode, uid, gid))

    def symlink(self, parent: int, name: str, target: str, uid: int = 0, gid: int = 0) -> Attr:
        if not target or "\0" in target:
            raise FsError(errno.EINVAL, "a symbolic link needs a non-empty target")
        return self._run(lambda: self._new(parent, name, Kind.SYMLINK, 0o777, uid, gid, target))

    def _new(
        self, parent: int, name: str, kind: Kind, mode: int, uid: int, gid: int, target: str = ""
    ) -> Attr:
        prow = self._dir(parent)
        raw = check_name(name)
        if self._child(prow, raw) is not None:
            raise FsError(errno.EEXIST, f"{name!r} already exists in directory {parent}")
        now = self._now()
        size = len(encode_name(target)) if kind == Kind.SYMLINK else 0
        # A new file's (empty) block list is written at commit anyway: marking it
        # data_dirty now spares its first write the dirty-tracking statements.
        data_dirty = int(kind == Kind.FILE and not self._committing)
        cur = self._db.x(
            "INSERT INTO inodes (kind, mode, uid, gid, size, atime_ns, mtime_ns, ctime_ns, "
            "nlink, parent, target, loaded, data_dirty) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, 1, ?)",
            (kind.value, mode & 0o7777, uid, gid, size, now, now, now, parent, target, data_dirty),
        )
        ino = int(cur.lastrowid or 0)
        self._add_dentry(parent, raw, ino, now)
        if kind == Kind.DIR:
            self._db.x("UPDATE inodes SET nsubdirs = nsubdirs + 1 WHERE ino = ?", (parent,))
            self._dirty_dir(ino)  # it has no tree yet: commit must write one
            self._stat_add(dirs=1)
        elif kind == Kind.FILE:
            self._stat_add(files=1)
        return self._attr(self._inode(ino))

    def _add_dentry(self, parent: int, raw: bytes, ino: int, now: int) -> None:
        self._db.x("INSERT INTO dentries (parent, name, ino) VALUES (?, ?, ?)", (parent, raw, ino))
        self._set(parent, mtime_ns=now, ctime_ns=now)
        self._touch_entry(parent, raw)

    def _remove_dentry(self, parent: int, raw: bytes, now: int) -> None:
        self._db.x("DELETE FROM dentries WHERE parent = ? AND name = ?", (parent, raw))
        self._set(parent, mtime_ns=now, ctime_ns=now)
        self._touch_entry(parent, raw)

    def link(self, ino: int, new_parent: int, new_name: str) -> Attr:
        """Another name for file ``ino`` (EPERM for directories, as on Linux)."""

        def op() -> Attr:
            row = self._inode(ino)
            if row["kind"] == Kind.DIR.value:
                raise FsError(errno.EPERM, "hard links to directories are not allowed")
            if row["nlink"] == 0:
                raise FsError(errno.ENOENT, f"inode {ino} has been deleted")
            prow = self._dir(new_parent)
            raw = check_name(new_name)
            if self._child(prow, raw) is not None:
                raise FsError(errno.EEXIST, f"{new_name!r} already exists")
            link_id = row["link_id"] or secrets.token_hex(8)
            now = self._now()
            self._set(ino, nlink=row["nlink"] + 1, ctime_ns=now, link_id=link_id)
            self._db.x("INSERT OR REPLACE INTO links (link_id, ino) VALUES (?, ?)", (link_id, ino))
            self._add_dentry(new_parent, raw, ino, now)
            self._touch_inode(ino)  # every name now carries the link id and count
            return self._attr(self._inode(ino))

        return self._run(op)

    # --- removing names --------------------------------------------------------------

    def unlink(self, parent: int, name: str) -> None:
        def op() -> None:
            prow = self._dir(parent)
            raw = check_name(name)
            ino = self._child(prow, raw)
            if ino is None:
                raise FsError(errno.ENOENT, f"{name!r} not found in directory {parent}")
            row = self._inode(ino)
            if row["kind"] == Kind.DIR.value:
                raise FsError(errno.EISDIR, f"{name!r} is a directory")
            now = self._now()
            self._remove_dentry(parent, raw, now)
            self._drop_link(ino, now, row)

        self._run(op)

    def rmdir(self, parent: int, name: str) -> None:
        def op() -> None:
            prow = self._dir(parent)
            raw = check_name(name)
            ino = self._child(prow, raw)
            if ino is None:
                raise FsError(errno.ENOENT, f"{name!r} not found in directory {parent}")
            row = self._dir(ino)
            self._check_empty(row)
            now = self._now()
            self._remove_dentry(parent, raw, now)
            self._free_dir(ino, parent)

        self._run(op)

    def _check_empty(self, row: sqlite3.Row) -> None:
        self._need_loaded(row)
        if self._db.one("SELECT 1 FROM dentries WHERE parent = ? LIMIT 1", (row["ino"],)):
            raise FsError(errno.ENOTEMPTY, f"directory {row['ino']} is not empty")

    def _free_dir(self, ino: int, parent: int) -> None:
        self._db.x("UPDATE inodes SET nsubdirs = MAX(nsubdirs - 1, 0) WHERE ino = ?", (parent,))
        self._db.x("DELETE FROM changed WHERE parent = ?", (ino,))
        self._db.x("DELETE FROM xattrs WHERE ino = ?", (ino,))
        self._db.x("DELETE FROM inodes WHERE ino = ?", (ino,))
        self._stat_add(dirs=-1)

    def _drop_link(self, ino: int, now: int, row: sqlite3.Row | None = None) -> None:
        """One name of file ``ino`` is gone: count down, free it when nothing holds it.

        ``row``: the inode's row if the caller has it (read in this operation).
        """
        if row is None:
            row = self._inode(ino)
        nlink = row["nlink"] - 1
        if nlink > 0 or self._open_handles.get(ino):
            self._set(ino, nlink=nlink, ctime_ns=now)
        if nlink > 0:
            self._touch_inode(ino)
        elif not self._open_handles.get(ino):
            self._free_file(ino, row)

    def _free_file(self, ino: int, row: sqlite3.Row | None = None) -> None:
        """Forget a file with no names and no open handles; withdraw its uploads."""
        if row is None:
            row = self._db.one("SELECT * FROM inodes WHERE ino = ?", (ino,))
        if row is None:
            return
        if row["kind"] == Kind.FILE.value:
            self._free_data(ino)
            size = row["size"]
            self._stat_add(bytes=-size, chunks=-nblocks(size), files=-1)
        self._db.x("DELETE FROM xattrs WHERE ino = ?", (ino,))
        if row["link_id"]:  # only a hard-link group has a links row (no index on ino)
            self._db.x("DELETE FROM links WHERE link_id = ? AND ino = ?", (row["link_id"], ino))
        self._db.x("DELETE FROM inodes WHERE ino = ?", (ino,))
        self._touched_files.discard(ino)

    # --- rename ------------------------------------------------------------------------

    def rename(
        self,
        old_parent: int,
        old_name: str,
        new_parent: int,
        new_name: str,
        *,
        noreplace: bool = False,
    ) -> None:
        """Move a name, replacing what ``new_name`` named (POSIX ``rename``).

        ``noreplace`` is ``RENAME_NOREPLACE``: EEXIST instead of replacing.
        """

        def op() -> None:
            oprow = self._dir(old_parent)
            nprow = self._dir(new_parent)
            oraw, nraw = check_name(old_name), check_name(new_name)
            src = self._child(oprow, oraw)
            if src is None:
                raise FsError(errno.ENOENT, f"{old_name!r} not found in directory {old_parent}")
            dst = self._child(nprow, nraw)
            if dst is not None and noreplace:
                raise FsError(errno.EEXIST, f"{new_name!r} already exists")
            if dst == src:
                return  # the same name, or two hard links of one file: nothing to do
            srow = self._inode(src)
            is_dir = srow["kind"] == Kind.DIR.value
            if is_dir:
                self._check_not_below(src, new_parent)
            if dst is not None:
                drow = self._inode(dst)
                if is_dir and drow["kind"] != Kind.DIR.value:
                    raise FsError(errno.ENOTDIR, f"{new_name!r} is not a directory")
                if not is_dir and drow["kind"] == Kind.DIR.value:
                    raise FsError(errno.EISDIR, f"{new_name!r} is a directory")
                if is_dir:
                    self._check_empty(drow)
            now = self._now()
            if dst is not None:
                self._remove_dentry(new_parent, nraw, now)
                if is_dir:
                    self._free_dir(dst, new_parent)
                else:
                    self._drop_link(dst, now)
            self._remove_dentry(old_parent, oraw, now)
            self._add_dentry(new_parent, nraw, src, now)
            self._set(src, ctime_ns=now)
            if is_dir:
                self._set(src, parent=new_parent)
                if old_parent != new_parent:
                    self._db.x(
                        "UPDATE inodes SET nsubdirs = MAX(nsubdirs - 1, 0) WHERE ino = ?",
                        (old_parent,),
                    )
                    self._db.x(
                        "UPDATE inodes SET nsubdirs = nsubdirs + 1 WHERE ino = ?", (new_parent,)
                    )
            self._touch_inode(src)

        self._run(op)

    def _check_not_below(self, src: int, target_dir: int) -> None:
        """EINVAL when ``target_dir`` is ``src`` or inside it (a loop otherwise)."""
        ino = target_dir
        while True:
            if ino == src:
                raise FsError(errno.EINVAL, "cannot move a directory into itself")
            if ino == ROOT:
                return
            ino = self._inode(ino)["parent"]

    # --- attributes --------------------------------------------------------------------

    def setattr(
        self,
        ino: int,
        *,
        mode: int | None = None,
        uid: int | None = None,
        gid: int | None = None,
        size: int | None = None,
        atime_ns: int | None = None,
        mtime_ns: int | None = None,
    ) -> Attr:
        """chmod / chown / truncate / utimens in one call; ctime becomes now."""
        if size is not None:
            self.truncate(ino, size)

        def op() -> Attr:
            self._inode(ino)
            cols: dict[str, int] = {}
            if mode is not None:
                cols["mode"] = mode & 0o7777
            if uid is not None:
                cols["uid"] = uid
            if gid is not None:
                cols["gid"] = gid
            if atime_ns is not None:
                cols["atime_ns"] = atime_ns
            if mtime_ns is not None:
                cols["mtime_ns"] = mtime_ns
            if cols:
                cols["ctime_ns"] = self._now()
                self._set(ino, **cols)
                self._touch_inode(ino)
            return self._attr(self._inode(ino))

        return self._run(op)

    # --- extended attributes -----------------------------------------------------------

    def getxattr(self, ino: int, name: str) -> bytes:
        if name.startswith(_SECURITY) and not self._any_security_xattr():
            # The kernel asks for security.capability before every write(2): answer
            # without a query while no security.* attribute exists at all.
            raise FsError(errno.ENODATA, f"no extended attribute {name!r}")

        def op() -> bytes:
            self._inode(ino)
            row = self._db.one(
                "SELECT value FROM xattrs WHERE ino = ? AND name = ?", (ino, _xname(name))
            )
            if row is None:
                raise FsError(errno.ENODATA, f"no extended attribute {name!r}")
            return bytes(row["value"])

        return self._run_ro(op)

    def _any_security_xattr(self) -> bool:
        """Whether a security.* xattr may exist (sticky once true; base entries not
        materialised yet are covered by Loader._materialize setting it)."""
        if self._security_xattrs is None:
            with self._lock:
                self._security_xattrs = (
                    self._db.one(
                        "SELECT 1 FROM xattrs WHERE substr(name, 1, ?) = ? LIMIT 1",
                        (len(_SECURITY), _SECURITY.encode()),
                    )
                    is not None
                )
        return self._security_xattrs

    def listxattr(self, ino: int) -> list[str]:
        def op() -> list[str]:
            self._inode(ino)
            return [
                decode_name(r[0])
                for r in self._db.x("SELECT name FROM xattrs WHERE ino = ? ORDER BY name", (ino,))
            ]

        return self._run_ro(op)

    def setxattr(self, ino: int, name: str, value: bytes, flags: int = 0) -> None:
        """Set one extended attribute; ``flags`` as setxattr(2) (XATTR_CREATE/REPLACE)."""
        raw = _xname(name)
        if len(value) > _XATTR_SIZE_MAX:
            raise FsError(errno.E2BIG, f"extended attribute value of {len(value)} bytes")
        if name.startswith(_SECURITY):
            self._security_xattrs = True  # before it exists: getxattr never misses it

        def op() -> None:
            self._inode(ino)
            exists = self._db.one("SELECT 1 FROM xattrs WHERE ino = ? AND name = ?", (ino, raw))
            if exists and flags & XATTR_CREATE:
                raise FsError(errno.EEXIST, f"extended attribute {name!r} exists")
            if not exists and flags & XATTR_REPLACE:
                raise FsError(errno.ENODATA, f"no extended attribute {name!r}")
            self._db.x(
                "INSERT OR REPLACE INTO xattrs (ino, name, value) VALUES (?, ?, ?)",
                (ino, raw, bytes(value)),
            )
            self._set(ino, ctime_ns=self._now())
            self._touch_inode(ino)

        self._run(op)

    def removexattr(self, ino: int, name: str) -> None:
        raw = _xname(name)

        def op() -> None:
            self._inode(ino)
            cur = self._db.x("DELETE FROM xattrs WHERE ino = ? AND name = ?", (ino, raw))
            if cur.rowcount == 0:
                raise FsError(errno.ENODATA, f"no extended attribute {name!r}")
            self._set(ino, ctime_ns=self._now())
            self._touch_inode(ino)

        self._run(op)

    # --- handles -----------------------------------------------------------------------

    def open_handle(self, ino: int) -> Attr:
        """Note an open handle: a file unlinked while open lives until ``release_handle``."""

        def op() -> Attr:
            attr = self._attr(self._inode(ino))
            self._open_handles[ino] = self._open_handles.get(ino, 0) + 1
            return attr

        return self._run_ro(op)

    def release_handle(self, ino: int) -> None:
        """The last write through a handle is done: seal its blocks in the background."""
        freed = False

        def op() -> None:
            nonlocal freed
            count = self._open_handles.get(ino, 0) - 1
            if count > 0:
                self._open_handles[ino] = count
                return
            self._open_handles.pop(ino, None)
            row = self._db.one("SELECT nlink, kind FROM inodes WHERE ino = ?", (ino,))
            if row is not None and row["nlink"] == 0 and row["kind"] != Kind.DIR.value:
                self._free_file(ino)
                freed = True

        def check() -> bool:
            # The common case (a named file) changes no row: no write transaction.
            if self._open_handles.get(ino, 0) > 1:
                return True
            row = self._db.one("SELECT nlink, kind FROM inodes WHERE ino = ?", (ino,))
            return row is None or row["nlink"] > 0 or row["kind"] == Kind.DIR.value

        with self._lock:
            simple = not self._closed and check()
            if simple:
                count = self._open_handles.get(ino, 0) - 1
                if count > 0:
                    self._open_handles[ino] = count
                else:
                    self._open_handles.pop(ino, None)
        if not simple:
            self._run(op)
        if not freed:
            with self._lock:
                idxs = [
                    int(r[0])
                    for r in self._db.x(
                        "SELECT idx FROM blocks WHERE ino = ? AND state = 0", (ino,)
                    )
                ]
            if idxs:
                self._schedule_seal(ino, idxs)

    def forget(self, ino: int) -> None:
        """The kernel dropped the inode: free it if it has no names and no handles."""

        def orphan() -> bool:
            row = self._db.one("SELECT nlink, kind FROM inodes WHERE ino = ?", (ino,))
            return (
                row is not None
                and row["nlink"] == 0
                and row["kind"] != Kind.DIR.value
                and not self._open_handles.get(ino)
            )

        def op() -> None:
            if orphan():
                self._free_file(ino)

        if self._run_ro(orphan):  # usually not: no write transaction for a plain forget
            self._run(op)


def _xname(name: str) -> bytes:
    raw = encode_name(name)
    if not raw or len(raw) > _XATTR_NAME_MAX:
        raise FsError(errno.ERANGE, f"bad extended attribute name {name!r}")
    return raw
