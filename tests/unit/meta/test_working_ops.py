"""Working state: namespace operations and their POSIX errnos, on a MemoryStore."""

from __future__ import annotations

import errno
import threading

from strata.meta.entry import Kind
from strata.meta.working import XATTR_CREATE, XATTR_REPLACE, WorkingState

from .test_working_support import ROOT, raises_errno, write_file


def names(ws: WorkingState, ino: int = ROOT) -> list[str]:
    return [d.name for d in ws.readdir(ino)]


# --- lookup / create / mkdir -----------------------------------------------------------


def test_root_is_an_empty_directory(ws: WorkingState) -> None:
    a = ws.getattr(ROOT)
    assert a.kind == Kind.DIR and a.ino == ROOT and a.nlink == 2
    assert ws.readdir(ROOT) == []
    assert ws.lookup(ROOT, ".").ino == ROOT
    assert ws.lookup(ROOT, "..").ino == ROOT


def test_create_lookup_getattr(ws: WorkingState) -> None:
    a = ws.create(ROOT, "f", 0o100640, uid=7, gid=8)
    assert a.kind == Kind.FILE and a.mode == 0o640 and (a.uid, a.gid) == (7, 8)
    assert a.nlink == 1 and a.size == 0
    assert ws.lookup(ROOT, "f") == a == ws.getattr(a.ino)
    assert a.st_mode == 0o100640


def test_create_errnos(ws: WorkingState) -> None:
    f = ws.create(ROOT, "f", 0o644)
    raises_errno(errno.EEXIST, ws.create, ROOT, "f", 0o644)
    raises_errno(errno.EEXIST, ws.mkdir, ROOT, "f", 0o755)
    raises_errno(errno.ENOTDIR, ws.create, f.ino, "x", 0o644)
    raises_errno(errno.ENOTDIR, ws.lookup, f.ino, "x")
    raises_errno(errno.ENOTDIR, ws.readdir, f.ino)
    raises_errno(errno.ENOENT, ws.lookup, ROOT, "missing")
    raises_errno(errno.ENOENT, ws.getattr, 9999)
    raises_errno(errno.ENOENT, ws.create, 9999, "x", 0o644)
    for bad in ("", ".", "..", "a/b", "a\0b"):
        raises_errno(errno.EINVAL, ws.create, ROOT, bad, 0o644)
    raises_errno(errno.ENAMETOOLONG, ws.create, ROOT, "x" * 256, 0o644)
    ws.create(ROOT, "x" * 255, 0o644)


def test_mkdir_counts_links(ws: WorkingState) -> None:
    d = ws.mkdir(ROOT, "d", 0o750)
    assert d.kind == Kind.DIR and d.mode == 0o750 and d.nlink == 2
    ws.mkdir(d.ino, "sub", 0o755)
    assert ws.getattr(d.ino).nlink == 3
    assert ws.getattr(ROOT).nlink == 3
    assert ws.lookup(d.ino, "..").ino == ROOT


def test_non_ascii_and_undecodable_names_round_trip(ws: WorkingState) -> None:
    odd = b"caf\xc3\xa9-\xff\xfe".decode("utf-8", "surrogateescape")
    ws.create(ROOT, odd, 0o644)
    ws.create(ROOT, "日本", 0o644)
    assert set(names(ws)) == {odd, "日本"}
    assert ws.lookup(ROOT, odd).kind == Kind.FILE


# --- unlink / rmdir ----------------------------------------------------------------


def test_unlink_and_errnos(ws: WorkingState) -> None:
    write_file(ws, ROOT, "f", b"data")
    d = ws.mkdir(ROOT, "d", 0o755)
    raises_errno(errno.EISDIR, ws.unlink, ROOT, "d")
    raises_errno(errno.ENOENT, ws.unlink, ROOT, "missing")
    ws.unlink(ROOT, "f")
    raises_errno(errno.ENOENT, ws.lookup, ROOT, "f")
    assert names(ws) == ["d"]
    raises_errno(errno.ENOTDIR, ws.unlink, ws.create(d.ino, "g", 0o644).ino, "x")


def test_rmdir(ws: WorkingState) -> None:
    d = ws.mkdir(ROOT, "d", 0o755)
    ws.create(d.ino, "f", 0o644)
    raises_errno(errno.ENOTEMPTY, ws.rmdir, ROOT, "d")
    ws.create(ROOT, "file", 0o644)
    raises_errno(errno.ENOTDIR, ws.rmdir, ROOT, "file")
    raises_errno(errno.ENOENT, ws.rmdir, ROOT, "missing")
    ws.unlink(d.ino, "f")
    ws.rmdir(ROOT, "d")
    assert names(ws) == ["file"]
    assert ws.getattr(ROOT).nlink == 2
    raises_errno(errno.ENOENT, ws.getattr, d.ino)


def test_unlinked_open_file_lives_until_release(ws: WorkingState) -> None:
    ino = write_file(ws, ROOT, "f", b"still here")
    ws.open_handle(ino)
    ws.unlink(ROOT, "f")
    assert ws.getattr(ino).nlink == 0
    assert ws.read(ino, 0, 100) == b"still here"
    ws.write(ino, 0, b"STILL")
    assert ws.read(ino, 0, 100) == b"STILL here"
    ws.release_handle(ino)
    raises_errno(errno.ENOENT, ws.getattr, ino)
    assert ws.statfs().files == 0


# --- rename ------------------------------------------------------------------------


def test_rename_within_and_across_directories(ws: WorkingState) -> None:
    ino = write_file(ws, ROOT, "a", b"A")
    d = ws.mkdir(ROOT, "d", 0o755)
    ws.rename(ROOT, "a", ROOT, "b")
    assert names(ws) == ["b", "d"]
    ws.rename(ROOT, "b", d.ino, "c")
    assert names(ws) == ["d"] and names(ws, d.ino) == ["c"]
    assert ws.lookup(d.ino, "c").ino == ino
    raises_errno(errno.ENOENT, ws.rename, ROOT, "b", ROOT, "x")


def test_rename_over_existing_file_frees_it(ws: WorkingState) -> None:
    a = write_file(ws, ROOT, "a", b"new")
    b = write_file(ws, ROOT, "b", b"old")
    ws.rename(ROOT, "a", ROOT, "b")
    assert names(ws) == ["b"]
    assert ws.lookup(ROOT, "b").ino == a
    assert ws.read(a, 0, 10) == b"new"
    raises_errno(errno.ENOENT, ws.getattr, b)
    assert ws.statfs().files == 1 and ws.statfs().bytes == 3


def test_rename_directory_over_empty_directory(ws: WorkingState) -> None:
    src = ws.mkdir(ROOT, "src", 0o755)
    ws.create(src.ino, "inside", 0o644)
    dst = ws.mkdir(ROOT, "dst", 0o755)
    ws.rename(ROOT, "src", ROOT, "dst")
    assert names(ws) == ["dst"]
    assert ws.lookup(ROOT, "dst").ino == src.ino
    assert names(ws, src.ino) == ["inside"]
    raises_errno(errno.ENOENT, ws.getattr, dst.ino)
    assert ws.getattr(ROOT).nlink == 3
    assert ws.statfs().dirs == 1


def test_rename_posix_edge_cases(ws: WorkingState) -> None:
    d = ws.mkdir(ROOT, "d", 0o755)
    full = ws.mkdir(ROOT, "full", 0o755)
    ws.create(full.ino, "x", 0o644)
    sub = ws.mkdir(d.ino, "sub", 0o755)
    f = write_file(ws, ROOT, "f", b"f")
    raises_errno(errno.ENOTEMPTY, ws.rename, ROOT, "d", ROOT, "full")
    raises_errno(errno.ENOTDIR, ws.rename, ROOT, "d", ROOT, "f")
    raises_errno(errno.EISDIR, ws.rename, ROOT, "f", ROOT, "d")
    raises_errno(errno.EINVAL, ws.rename, ROOT, "d", sub.ino, "loop")
    raises_errno(errno.EINVAL, ws.rename, ROOT, "d", d.ino, "self")
    raises_errno(errno.ENOTDIR, ws.rename, ROOT, "f", f, "x")
    raises_errno(errno.EEXIST, ws.rename, ROOT, "f", ROOT, "d", noreplace=True)
    ws.rename(ROOT, "f", ROOT, "f")  # same name: nothing happens
    ws.link(f, ROOT, "g")
    ws.rename(ROOT, "f", ROOT, "g")  # two names of one inode: nothing happens
    assert names(ws) == ["d", "f", "full", "g"]
    assert ws.getattr(f).nlink == 2
    # moving a directory between parents fixes both link counts and '..'
    ws.rename(d.ino, "sub", full.ino, "sub")
    assert ws.getattr(d.ino).nlink == 2 and ws.getattr(full.ino).nlink == 3
    assert ws.lookup(sub.ino, "..").ino == full.ino


# --- symlinks, hard links ----------------------------------------------------------


def test_symlink_and_readlink(ws: WorkingState) -> None:
    s = ws.symlink(ROOT, "l", "../some/where", uid=3)
    assert s.kind == Kind.SYMLINK and s.size == len("../some/where") and s.uid == 3
    assert ws.readlink(s.ino) == "../some/where"
    raises_errno(errno.EEXIST, ws.symlink, ROOT, "l", "x")
    raises_errno(errno.EINVAL, ws.readlink, ws.create(ROOT, "f", 0o644).ino)
    raises_errno(errno.EINVAL, ws.read, s.ino, 0, 10)


def test_hard_links(ws: WorkingState) -> None:
    ino = write_file(ws, ROOT, "a", b"shared")
    d = ws.mkdir(ROOT, "d", 0o755)
    a = ws.link(ino, d.ino, "b")
    assert a.ino == ino and a.nlink == 2
    assert ws.lookup(d.ino, "b").ino == ino
    raises_errno(errno.EPERM, ws.link, d.ino, ROOT, "dirlink")
    raises_errno(errno.EEXIST, ws.link, ino, ROOT, "a")
    ws.write(ino, 0, b"SHARED")
    ws.unlink(ROOT, "a")
    assert ws.getattr(ino).nlink == 1
    assert ws.read(ws.lookup(d.ino, "b").ino, 0, 10) == b"SHARED"
    assert ws.statfs().files == 1


# --- attributes and xattrs ---------------------------------------------------------


def test_setattr(ws: WorkingState) -> None:
    ino = write_file(ws, ROOT, "f", b"0123456789")
    before = ws.getattr(ino)
    a = ws.setattr(ino, mode=0o4711, uid=5, gid=6, atime_ns=11, mtime_ns=22)
    assert (a.mode, a.uid, a.gid, a.atime_ns, a.mtime_ns) == (0o4711, 5, 6, 11, 22)
    assert a.ctime_ns >= before.ctime_ns
    a = ws.setattr(ino, size=4)
    assert a.size == 4 and ws.read(ino, 0, 100) == b"0123"
    raises_errno(errno.EISDIR, ws.setattr, ws.mkdir(ROOT, "d", 0o755).ino, size=0)
    raises_errno(errno.ENOENT, ws.setattr, 9999, mode=0o600)


def test_xattrs(ws: WorkingState) -> None:
    ino = ws.create(ROOT, "f", 0o644).ino
    assert ws.listxattr(ino) == []
    raises_errno(errno.ENODATA, ws.getxattr, ino, "user.a")
    ws.setxattr(ino, "user.b", b"2")
    ws.setxattr(ino, "user.a", b"1")
    assert ws.listxattr(ino) == ["user.a", "user.b"]
    assert ws.getxattr(ino, "user.a") == b"1"
    raises_errno(errno.EEXIST, ws.setxattr, ino, "user.a", b"x", XATTR_CREATE)
    raises_errno(errno.ENODATA, ws.setxattr, ino, "user.c", b"x", XATTR_REPLACE)
    ws.setxattr(ino, "user.a", b"one", XATTR_REPLACE)
    assert ws.getxattr(ino, "user.a") == b"one"
    ws.removexattr(ino, "user.a")
    raises_errno(errno.ENODATA, ws.removexattr, ino, "user.a")
    assert ws.listxattr(ino) == ["user.b"]
    raises_errno(errno.ERANGE, ws.setxattr, ino, "", b"x")
    raises_errno(errno.ERANGE, ws.setxattr, ino, "u" * 256, b"x")
    raises_errno(errno.E2BIG, ws.setxattr, ino, "user.big", bytes(64 * 1024 + 1))
    ws.setxattr(ROOT, "user.root", b"r")  # directories (and the root) have xattrs too
    assert ws.getxattr(ROOT, "user.root") == b"r"


def test_statfs_counts(ws: WorkingState) -> None:
    write_file(ws, ROOT, "a", b"x" * 10)
    d = ws.mkdir(ROOT, "d", 0o755)
    write_file(ws, d.ino, "b", b"y" * 5)
    ws.symlink(ROOT, "l", "a")
    st = ws.statfs()
    assert (st.bytes, st.files, st.dirs, st.chunks) == (15, 2, 1, 2)
    assert st.dirty_bytes > 0


# --- threads -------------------------------------------------------------------------


def test_concurrent_operations_from_many_threads(ws: WorkingState) -> None:
    """FUSE runs several workers; every operation must be safe against the others."""
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            d = ws.mkdir(ROOT, f"d{n}", 0o755)
            for i in range(30):
                ino = ws.create(d.ino, f"f{i}", 0o644).ino
                ws.write(ino, 0, f"{n}:{i}".encode() * 100)
                if i % 3 == 0:
                    ws.rename(d.ino, f"f{i}", d.ino, f"r{i}")
                if i % 5 == 0:
                    ws.unlink(d.ino, f"r{i}" if i % 3 == 0 else f"f{i}")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for n in range(6):
        d = ws.lookup(ROOT, f"d{n}").ino
        listing = {e.name: e.attr for e in ws.readdir(d)}
        assert len(listing) == 30 - 6
        for i in range(30):
            if i % 5:
                name = f"r{i}" if i % 3 == 0 else f"f{i}"
                assert ws.read(listing[name].ino, 0, 10_000) == f"{n}:{i}".encode() * 100
    assert ws.statfs().files == 6 * 24
