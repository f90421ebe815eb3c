"""A tiny in-memory llfuse filesystem: proves FUSE works on this machine.

Run as ``python -m tests.harness.memfs MOUNTPOINT``; it serves until unmounted.
Flat (one directory), files only — just enough to mount, write, read, list, unlink.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import time

import llfuse


class MemFS(llfuse.Operations):
    def __init__(self) -> None:
        super().__init__()
        self.names: dict[bytes, int] = {}
        self.data: dict[int, bytearray] = {}
        self.modes: dict[int, int] = {}
        self.next_inode = llfuse.ROOT_INODE + 1

    def _attr(self, inode: int) -> llfuse.EntryAttributes:
        attr = llfuse.EntryAttributes()
        attr.st_ino = inode
        now = time.time_ns()
        attr.st_atime_ns = attr.st_mtime_ns = attr.st_ctime_ns = now
        attr.st_uid, attr.st_gid = os.getuid(), os.getgid()
        if inode == llfuse.ROOT_INODE:
            attr.st_mode = stat.S_IFDIR | 0o755
            attr.st_nlink = 2
        elif inode in self.data:
            attr.st_mode = stat.S_IFREG | self.modes[inode]
            attr.st_nlink = 1
            attr.st_size = len(self.data[inode])
        else:
            raise llfuse.FUSEError(errno.ENOENT)
        return attr

    def getattr(self, inode, ctx=None):
        return self._attr(inode)

    def lookup(self, parent_inode, name, ctx=None):
        if parent_inode != llfuse.ROOT_INODE or name not in self.names:
            raise llfuse.FUSEError(errno.ENOENT)
        return self._attr(self.names[name])

    def opendir(self, inode, ctx):
        if inode != llfuse.ROOT_INODE:
            raise llfuse.FUSEError(errno.ENOTDIR)
        return inode

    def readdir(self, fh, off):
        for i, (name, inode) in enumerate(sorted(self.names.items())):
            if i >= off:
                yield name, self._attr(inode), i + 1

    def create(self, parent_inode, name, mode, flags, ctx):
        inode = self.next_inode
        self.next_inode += 1
        self.names[name] = inode
        self.data[inode] = bytearray()
        self.modes[inode] = stat.S_IMODE(mode)
        return inode, self._attr(inode)

    def open(self, inode, flags, ctx):
        if inode not in self.data:
            raise llfuse.FUSEError(errno.ENOENT)
        return inode

    def read(self, fh, off, size):
        return bytes(self.data[fh][off : off + size])

    def write(self, fh, off, buf):
        blob = self.data[fh]
        if len(blob) < off:
            blob.extend(b"\0" * (off - len(blob)))
        blob[off : off + len(buf)] = buf
        return len(buf)

    def setattr(self, inode, attr, fields, fh, ctx):
        if fields.update_size:
            del self.data[inode][attr.st_size :]
        return self._attr(inode)

    def unlink(self, parent_inode, name, ctx):
        inode = self.names.pop(name, None)
        if inode is None:
            raise llfuse.FUSEError(errno.ENOENT)
        del self.data[inode]


def main(mountpoint: str) -> None:
    llfuse.init(MemFS(), mountpoint, ["fsname=strata-memfs", "big_writes"])
    try:
        llfuse.main(workers=1)
    finally:
        llfuse.close()


if __name__ == "__main__":
    main(sys.argv[1])
