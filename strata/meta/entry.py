"""The records a version's tree is made of.

A version is a Merkle tree: a directory is an immutable, content-addressed tree object
listing :class:`Entry` records sorted by name; a sub-directory entry names its child
tree by hash, a file entry names its data blocks (chunks) by hash. Unchanged subtrees
are shared by hash across versions, volumes and forks. The byte encoding and the paging
of big directories/block lists live in :mod:`strata.meta.tree` (docs/format.md).

Hard links: entries that are hard links of one file carry the same ``link_id`` (unique
within a version) and identical content; readers map one ``link_id`` to one inode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Kind(StrEnum):
    FILE = "f"
    DIR = "d"
    SYMLINK = "l"


@dataclass(frozen=True)
class BlockRef:
    """One chunk of file data: its content hash and plaintext length.

    ``hash`` is empty for a hole (sparse region read as zeros, never stored).
    """

    hash: str
    size: int


@dataclass(frozen=True)
class Content:
    """A file's data: inline block list, or a paged block list for very large files.

    Exactly one of ``blocks`` (small files) and ``pages`` (tree-object hash of a paged
    block list) is meaningful; use ``strata.meta.tree`` helpers to iterate blocks.
    """

    blocks: tuple[BlockRef, ...] = ()
    pages: str = ""


@dataclass(frozen=True)
class Entry:
    """One name in a directory, with the attributes POSIX tools need."""

    name: str
    kind: Kind
    mode: int  # permission bits only (0o7777); the kind gives the type
    uid: int = 0
    gid: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0
    size: int = 0  # bytes for files, len(target) for symlinks, 0 for dirs
    xattrs: tuple[tuple[str, bytes], ...] = ()
    target: str = ""  # symlink target
    content: Content = field(default_factory=Content)  # files
    tree: str = ""  # directories: hash of the child tree
    link_id: str = ""  # hard links: same id, same file
