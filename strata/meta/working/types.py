"""Value types the working state hands to the FUSE layer: attributes, errors, totals.

Kept free of SQLite and store details so ``strata.fs`` can import them cheaply and map
them one-to-one onto ``llfuse.EntryAttributes`` / ``FUSEError``.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from strata.errors import StrataError
from strata.meta.entry import Kind

__all__ = ["XATTR_CREATE", "XATTR_REPLACE", "Attr", "DirEntry", "FsError", "StatFs"]

#: ``setxattr`` flags, the values of the Linux system call (llfuse passes them through)
XATTR_CREATE = getattr(os, "XATTR_CREATE", 1)
XATTR_REPLACE = getattr(os, "XATTR_REPLACE", 2)

_TYPE_BITS = {Kind.FILE: stat.S_IFREG, Kind.DIR: stat.S_IFDIR, Kind.SYMLINK: stat.S_IFLNK}


class FsError(StrataError):
    """A filesystem operation refused with a POSIX errno (the FUSE layer returns it).

    Born with its meaning: ``errno`` is what the kernel gets, the message is for logs.
    """

    def __init__(self, errno: int, message: str) -> None:
        super().__init__(message)
        self.errno = errno


@dataclass(frozen=True, slots=True)
class Attr:
    """``stat`` of one inode. ``mode`` holds permission bits only; see :attr:`st_mode`.

    Directories that were never listed report ``nlink == 1`` ("unknown", as btrfs and
    many FUSE filesystems do) because counting their sub-directories would mean
    reading their tree; once listed or changed, the exact ``2 + subdirectories``.
    """

    ino: int
    kind: Kind
    mode: int
    nlink: int
    uid: int
    gid: int
    size: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int

    @property
    def st_mode(self) -> int:
        """File type bits plus permission bits, as ``struct stat`` wants them."""
        return _TYPE_BITS[self.kind] | self.mode

    @property
    def blocks(self) -> int:
        """``st_blocks`` (512-byte units); sparse regions are not subtracted."""
        return (self.size + 511) // 512


@dataclass(frozen=True, slots=True)
class DirEntry:
    """One name of a directory listing, with the attributes of what it names."""

    name: str
    attr: Attr


@dataclass(frozen=True, slots=True)
class StatFs:
    """Totals for ``statfs`` and commit stats (``bytes`` counts each inode once)."""

    bytes: int
    files: int
    dirs: int
    chunks: int
    dirty_bytes: int  # block data staged locally and not yet known to be in the store
