"""Helpers for tests on real mounts: waiting on conditions, and comparing whole trees.

A tree *snapshot* records, per relative path, what a user can observe with ``lstat``,
``readlink``, ``read`` and ``listxattr``: kind, permission bits, size, a digest of the
content, symlink target, link count of files and user xattrs. Hard links are compared as
*groups of paths sharing an inode* rather than by inode number, because inode numbers
of two different filesystems (or two mounts) never match but the grouping must.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T], timeout: float = 30.0, what: str = "", interval: float = 0.05
) -> T:
    """Poll ``predicate`` until it returns something truthy, or fail naming ``what``.

    Tests never sleep and hope: every wait is a condition with a deadline.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what or predicate}")
        time.sleep(interval)


@dataclass(frozen=True)
class Node:
    """What one path looks like to a user of the filesystem."""

    kind: str  # "f", "d" or "l"
    mode: int  # permission bits (for symlinks always 0o777 on Linux, still compared)
    size: int | None  # files and symlinks; directory sizes are filesystem-specific
    digest: str | None  # files: blake2b of the content
    target: str | None  # symlinks
    nlink: int | None  # files and symlinks; not directories (see Attr: "unknown" is 1)
    xattrs: tuple[tuple[str, bytes], ...]  # user.* only, sorted


@dataclass(frozen=True)
class Snapshot:
    nodes: dict[str, Node]
    #: hard-link groups: sorted tuples of paths (nlink > 1) sharing an inode
    links: frozenset[tuple[str, ...]]


def file_digest(path: Path | str) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _xattrs(path: Path) -> tuple[tuple[str, bytes], ...]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return ()
        raise
    return tuple(
        sorted(
            (n, os.getxattr(path, n, follow_symlinks=False))
            for n in names
            if n.startswith("user.") and not n.startswith("user.strata.")
        )
    )


def snapshot(root: Path | str, *, nlink: bool = True) -> Snapshot:
    """Everything observable under ``root`` (not ``root`` itself), walking with lstat."""
    root = Path(root)
    nodes: dict[str, Node] = {}
    inodes: dict[int, list[str]] = {}

    def walk(directory: Path, rel: str) -> None:
        for name in sorted(os.listdir(directory)):
            path = directory / name
            relpath = f"{rel}{name}"
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                nodes[relpath] = Node(
                    "d", stat.S_IMODE(st.st_mode), None, None, None, None, _xattrs(path)
                )
                walk(path, relpath + "/")
            elif stat.S_ISLNK(st.st_mode):
                target = os.readlink(path)
                nodes[relpath] = Node(
                    "l",
                    stat.S_IMODE(st.st_mode),
                    st.st_size,
                    None,
                    target,
                    st.st_nlink if nlink else None,
                    (),
                )
                if st.st_nlink > 1:  # a hard link to a symlink (Linux allows it)
                    inodes.setdefault(st.st_ino, []).append(relpath)
            elif stat.S_ISREG(st.st_mode):
                nodes[relpath] = Node(
                    "f",
                    stat.S_IMODE(st.st_mode),
                    st.st_size,
                    file_digest(path),
                    None,
                    st.st_nlink if nlink else None,
                    _xattrs(path),
                )
                if st.st_nlink > 1:
                    inodes.setdefault(st.st_ino, []).append(relpath)
            else:
                raise AssertionError(f"unexpected file type at {path}: {st.st_mode:o}")

    walk(root, "")
    links = frozenset(tuple(sorted(paths)) for paths in inodes.values() if len(paths) > 1)
    return Snapshot(nodes, links)


def diff_snapshots(expected: Snapshot, actual: Snapshot, limit: int = 40) -> list[str]:
    """Human-readable differences (empty when the trees look the same)."""
    out: list[str] = []
    for path in sorted(expected.nodes.keys() | actual.nodes.keys()):
        e, a = expected.nodes.get(path), actual.nodes.get(path)
        if e is None:
            out.append(f"unexpected {path}: {a}")
        elif a is None:
            out.append(f"missing {path}: {e}")
        elif e != a:
            fields = [
                f"{f}: expected {getattr(e, f)!r}, got {getattr(a, f)!r}"
                for f in Node.__dataclass_fields__
                if getattr(e, f) != getattr(a, f)
            ]
            out.append(f"{path}: " + "; ".join(fields))
    if expected.links != actual.links:
        out.append(
            f"hard-link groups differ: expected {sorted(expected.links)}, "
            f"got {sorted(actual.links)}"
        )
    if len(out) > limit:
        out = [*out[:limit], f"... and {len(out) - limit} more"]
    return out


def assert_same_tree(expected: Snapshot | Path, actual: Snapshot | Path) -> None:
    exp = expected if isinstance(expected, Snapshot) else snapshot(expected)
    act = actual if isinstance(actual, Snapshot) else snapshot(actual)
    problems = diff_snapshots(exp, act)
    assert not problems, "trees differ:\n  " + "\n  ".join(problems)


def errno_of(fn: Callable[[], object]) -> int:
    """The errno ``fn`` fails with (0 when it succeeds)."""
    try:
        fn()
    except OSError as exc:
        return exc.errno or -1
    return 0
