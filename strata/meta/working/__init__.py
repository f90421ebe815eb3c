"""The working state: the mutable overlay over a volume's head that FUSE drives.

Inode-based operations (lookup, create, write at offset, read, truncate, mkdir,
rename, unlink, rmdir, link, symlink, setattr, xattrs, fsync) on a local SQLite
database plus block files in a cache dir, so uncommitted work survives a restart;
``commit`` turns it into a version in O(change).

Modules: ``state.py`` (open, cache-dir layout, crash recovery), ``db.py`` (the SQLite
schema and durability modes), ``base.py`` (locking, dirty tracking), ``loader.py``
(lazy materialisation of the base, hard-link groups), ``namespace.py`` (names and
attributes), ``blocks.py`` (the block life cycle), ``data.py`` (read/write/truncate/
fsync), ``commit.py`` (sealing a version).
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
