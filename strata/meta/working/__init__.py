"""The working state: the mutable overlay over a volume's head that FUSE drives.

Inode-based operations (lookup, create, write at offset, read, truncate, mkdir,
rename, unlink, rmdir, link, symlink, setattr, xattrs, fsync) on a local SQLite
database plus block files in a cache dir, so uncommitted work survives a restart;
``commit`` turns it into a version in O(change). See ``state.py`` for the cache-dir
layout and recovery, ``db.py`` for the schema, ``data.py`` for the block life cycle,
``commit.py`` for sealing a version.
"""

from strata.meta.working.db import SyncMode
from strata.meta.working.state import WorkingState
from strata.meta.working.types import (
    XATTR_CREATE,
    XATTR_REPLACE,
    Attr,
    DirEntry,
    FsError,
    StatFs,
)

ROOT_INO = 1

__all__ = [
    "ROOT_INO",
    "XATTR_CREATE",
    "XATTR_REPLACE",
    "Attr",
    "DirEntry",
    "FsError",
    "StatFs",
    "SyncMode",
    "WorkingState",
]
