"""POSIX behaviours on a real writable mount, each checked against what Linux does.

Every test runs on both stores (local directory and the real S3 server) and ends with
the mount still alive (checked by the fixture). Behaviours that must outlive the daemon
(hard links, modes, times, xattrs, sparse files) are also checked after commit and a
fresh mount of the committed version.
"""

from __future__ import annotations

import errno
import mmap
import os
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from tests.integration.fs.conftest import Mount, Strata
from tests.integration.fs.helpers import assert_same_tree, errno_of, snapshot

MiB = 1 << 20
BLOCK = 4 * MiB  # the chunk size: tests cross block boundaries on purpose


def pattern(n: int, seed: int = 0) -> bytes:
    """Deterministic bytes that differ at every block offset (catches misplaced blocks)."""
    unit = bytes((i * 7 + seed) % 251 for i in range(251))
    return (unit * (n // len(unit) + 1))[:n]


def remount_committed(strata: Strata, m: Mount) -> Mount:
    """Commit ``m`` and mount that version read-only elsewhere."""
    return strata.mount(m.commit("checkpoint"))


# --- files -----------------------------------------------------------------------------


def test_file_write_read_overwrite(mounted: Mount) -> None:
    f = mounted.path / "data.bin"
    body = pattern(BLOCK * 2 + 12345)
    f.write_bytes(body)
    assert f.stat().st_size == len(body)
    assert f.read_bytes() == body
    # Overwrite a range straddling the first block boundary, through an O_RDWR handle.
    patch = b"\xaa" * 10000
    with open(f, "r+b") as h:
        h.seek(BLOCK - 5000)
        h.write(patch)
    expected = body[: BLOCK - 5000] + patch + body[BLOCK + 5000 :]
    assert f.read_bytes() == expected
    # pread/pwrite at arbitrary offsets.
    fd = os.open(f, os.O_RDWR)
    try:
        os.pwrite(fd, b"xyz", 7)
        assert os.pread(fd, 10, 5) == expected[5:7] + b"xyz" + expected[10:15]
        assert os.pread(fd, 100, len(body) - 3) == expected[-3:]  # short read at EOF
        assert os.pread(fd, 100, len(body) + 10) == b""
    finally:
        os.close(fd)


def test_create_exclusive_and_missing_paths(mounted: Mount) -> None:
    p = mounted.path
    (p / "a").write_text("a")
    assert errno_of(lambda: os.open(p / "a", os.O_CREAT | os.O_EXCL | os.O_WRONLY)) == errno.EEXIST
    assert errno_of(lambda: os.stat(p / "missing")) == errno.ENOENT
    assert errno_of(lambda: os.open(p / "missing", os.O_RDONLY)) == errno.ENOENT
    assert errno_of(lambda: os.stat(p / "a" / "b")) == errno.ENOTDIR
    assert errno_of(lambda: os.mkdir(p / "a" / "b")) == errno.ENOTDIR
    assert errno_of(lambda: os.open(p / "a", os.O_RDONLY | os.O_DIRECTORY)) == errno.ENOTDIR
    with open(p / "a", "w") as h:  # O_TRUNC of an existing file
        h.write("bb")
    assert (p / "a").read_text() == "bb"


def test_names(mounted: Mount) -> None:
    p = mounted.path
    names = ["x" * 255, "snowman-\u2603", "with space", "new\nline", "-dash", ".hidden", "a:b;c"]
    for i, name in enumerate(names):
        (p / name).write_text(str(i))
    assert sorted(os.listdir(p)) == sorted(names)
    for i, name in enumerate(names):
        assert (p / name).read_text() == str(i)
    assert errno_of(lambda: (p / ("y" * 256)).write_text("")) == errno.ENAMETOOLONG


def test_open_unlinked_file_lives_until_closed(mounted: Mount) -> None:
    f = mounted.path / "tmp"
    fd = os.open(f, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        os.write(fd, b"still here")
        os.unlink(f)
        assert not f.exists()
        os.write(fd, b" and more")
        assert os.pread(fd, 100, 0) == b"still here and more"
        assert os.fstat(fd).st_nlink == 0
    finally:
        os.close(fd)
    assert os.listdir(mounted.path) == []


def test_mknod_special_files_refused(mounted: Mount) -> None:
    assert errno_of(lambda: os.mkfifo(mounted.path / "fifo")) == errno.EPERM
    assert not (mounted.path / "fifo").exists()


def test_concurrent_writers(mounted: Mount) -> None:
    """Several threads writing their own files at once (the daemon runs 8 workers)."""
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            body = pattern(3 * MiB + i, seed=i)
            (mounted.path / f"w{i}").write_bytes(body)
            assert (mounted.path / f"w{i}").read_bytes() == body
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    for i in range(8):
        assert (mounted.path / f"w{i}").read_bytes() == pattern(3 * MiB + i, seed=i)


# --- directories -----------------------------------------------------------------------


def test_directories(mounted: Mount) -> None:
    p = mounted.path
    (p / "a" / "b" / "c").mkdir(parents=True)
    (p / "a" / "b" / "c" / "f").write_text("f")
    (p / "a" / "e").mkdir()
    assert sorted(os.listdir(p / "a")) == ["b", "e"]
    assert errno_of(lambda: os.mkdir(p / "a")) == errno.EEXIST
    assert errno_of(lambda: os.rmdir(p / "a")) == errno.ENOTEMPTY
    assert errno_of(lambda: os.unlink(p / "a")) == errno.EISDIR
    assert errno_of(lambda: os.rmdir(p / "a" / "b" / "c" / "f")) == errno.ENOTDIR
    assert errno_of(lambda: os.rmdir(p / "nope")) == errno.ENOENT
    os.rmdir(p / "a" / "e")
    assert os.listdir(p / "a") == ["b"]
    # Once listed, a directory's link count is 2 + its subdirectories.
    os.listdir(p / "a")
    assert os.stat(p / "a").st_nlink in (1, 3)
    os.mkdir(p / "m", 0o700)
    assert stat.S_IMODE(os.stat(p / "m").st_mode) == 0o700 & ~_umask()
    # Many entries: readdir with offsets across several getdents calls.
    big = p / "big"
    big.mkdir()
    names = {f"entry-{i:04d}-{'z' * 40}" for i in range(1500)}
    for name in names:
        (big / name).touch()
    assert set(os.listdir(big)) == names
    with os.scandir(big) as it:
        assert {e.name for e in it if e.is_file()} == names


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --- symlinks --------------------------------------------------------------------------


def test_symlinks(strata: Strata, mounted: Mount) -> None:
    p = mounted.path
    (p / "dir").mkdir()
    (p / "dir" / "file").write_text("target content")
    os.symlink("dir/file", p / "rel")
    os.symlink("/nonexistent/absolute", p / "dangling")
    os.symlink("dir", p / "dirlink")
    os.symlink("../rel", p / "dir" / "up")
    assert os.readlink(p / "rel") == "dir/file"
    assert (p / "rel").read_text() == "target content"
    assert (p / "dir" / "up").read_text() == "target content"
    assert os.listdir(p / "dirlink") == ["file", "up"]
    st = os.lstat(p / "dangling")
    assert stat.S_ISLNK(st.st_mode) and st.st_size == len("/nonexistent/absolute")
    assert not (p / "dangling").exists()
    assert errno_of(lambda: os.symlink("x", p / "rel")) == errno.EEXIST
    assert errno_of(lambda: os.readlink(p / "dir")) == errno.EINVAL
    (p / "rel").write_text("through the link")
    assert (p / "dir" / "file").read_text() == "through the link"
    before = snapshot(p)
    ro = remount_committed(strata, mounted)
    assert_same_tree(before, ro.path)


# --- hard links ------------------------------------------------------------------------


def test_hard_links(mounted: Mount) -> None:
    p = mounted.path
    (p / "d").mkdir()
    (p / "orig").write_bytes(b"shared")
    os.link(p / "orig", p / "d" / "alias")
    os.link(p / "orig", p / "third")
    a, b = os.stat(p / "orig"), os.stat(p / "d" / "alias")
    assert a.st_ino == b.st_ino and a.st_nlink == b.st_nlink == 3
    with open(p / "d" / "alias", "ab") as h:
        h.write(b" content")
    assert (p / "orig").read_bytes() == b"shared content"
    os.unlink(p / "third")
    assert os.stat(p / "orig").st_nlink == 2
    assert errno_of(lambda: os.link(p / "d", p / "dlink")) == errno.EPERM
    assert errno_of(lambda: os.link(p / "orig", p / "d" / "alias")) == errno.EEXIST
    assert errno_of(lambda: os.link(p / "missing", p / "x")) == errno.ENOENT
    # Renaming one name onto another name of the same file changes nothing (POSIX).
    os.rename(p / "orig", p / "d" / "alias")
    assert (p / "orig").exists() and os.stat(p / "orig").st_nlink == 2


def test_hard_links_survive_commit_and_remount(strata: Strata, mounted: Mount) -> None:
    p = mounted.path
    (p / "x" / "y").mkdir(parents=True)
    (p / "big").write_bytes(pattern(BLOCK + 100))
    os.link(p / "big", p / "x" / "y" / "big2")
    (p / "small").write_text("s")
    os.link(p / "small", p / "x" / "small2")
    os.link(p / "small", p / "small3")
    expected = snapshot(p)
    assert expected.links == {("big", "x/y/big2"), ("small", "small3", "x/small2")}
    ref = mounted.commit("links")
    ro = strata.mount(ref)
    assert_same_tree(expected, ro.path)
    # And a writable mount of the head after the first daemon is gone.
    mounted.umount()
    rw = strata.mount("vol")
    assert_same_tree(expected, rw.path)
    # The link group still behaves as one file there.
    with open(rw.path / "x" / "small2", "a") as h:
        h.write("+")
    assert (rw.path / "small").read_text() == "s+"
    assert (rw.path / "small3").read_text() == "s+"
    os.unlink(rw.path / "small3")
    assert os.stat(rw.path / "small").st_nlink == 2


# --- rename ----------------------------------------------------------------------------


def test_rename(mounted: Mount) -> None:
    p = mounted.path
    (p / "a").write_text("A")
    (p / "b").write_text("B")
    (p / "d1" / "sub").mkdir(parents=True)
    (p / "d1" / "sub" / "f").write_text("F")
    (p / "d2").mkdir()
    (p / "full").mkdir()
    (p / "full" / "x").touch()

    os.rename(p / "a", p / "a2")  # same directory
    assert (p / "a2").read_text() == "A" and not (p / "a").exists()
    os.rename(p / "a2", p / "b")  # over an existing file
    assert (p / "b").read_text() == "A"
    assert sorted(os.listdir(p)) == ["b", "d1", "d2", "full"]
    os.rename(p / "d1" / "sub", p / "d2" / "moved")  # a directory, across directories
    assert (p / "d2" / "moved" / "f").read_text() == "F"
    assert os.listdir(p / "d1") == []
    os.rename(p / "d2" / "moved", p / "d1")  # over an empty directory
    assert (p / "d1" / "f").read_text() == "F"
    assert errno_of(lambda: os.rename(p / "d1", p / "full")) == errno.ENOTEMPTY
    assert errno_of(lambda: os.rename(p / "b", p / "d2")) == errno.EISDIR
    assert errno_of(lambda: os.rename(p / "d2", p / "b")) == errno.ENOTDIR
    assert errno_of(lambda: os.rename(p / "d1", p / "d1" / "inside")) == errno.EINVAL
    assert errno_of(lambda: os.rename(p / "missing", p / "x")) == errno.ENOENT
    os.rename(p / "b", p / "b")  # onto itself: nothing happens
    assert (p / "b").read_text() == "A"


def test_rename_over_open_file_keeps_its_data(mounted: Mount) -> None:
    """The replaced file lives on for whoever has it open (write-to-temp-then-rename)."""
    p = mounted.path
    (p / "config").write_text("old")
    with open(p / "config") as old:
        (p / "config.tmp").write_text("new")
        os.replace(p / "config.tmp", p / "config")
        assert old.read() == "old"
    assert (p / "config").read_text() == "new"
    assert os.listdir(p) == ["config"]


# --- attributes --------------------------------------------------------------------------


def test_chmod_chown_utimens(strata: Strata, mounted: Mount) -> None:
    p = mounted.path
    f, d = p / "f", p / "d"
    f.write_text("x")
    d.mkdir()
    os.chmod(f, 0o640)
    os.chmod(d, 0o1750)
    os.chown(f, 1234, 5678)
    os.chown(d, 42, -1)
    atime, mtime = 1_000_000_001_123_456_789, 1_500_000_000_987_654_321
    os.utime(f, ns=(atime, mtime))
    os.utime(d, ns=(atime, mtime))
    ctime_before = os.stat(f).st_ctime_ns
    os.chmod(f, 0o644)
    st = os.stat(f)
    assert stat.S_IMODE(st.st_mode) == 0o644
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    assert st.st_mtime_ns == mtime and st.st_atime_ns == atime
    assert st.st_ctime_ns >= ctime_before
    sd = os.stat(d)
    assert stat.S_IMODE(sd.st_mode) == 0o1750 and sd.st_uid == 42
    # Writing moves mtime to now.
    f.write_text("y")
    assert os.stat(f).st_mtime_ns > mtime
    os.utime(f, ns=(atime, mtime))
    # Symlink ownership (lchown) and a utimens of "now".
    os.symlink("f", p / "l")
    os.chown(p / "l", 7, 8, follow_symlinks=False)
    assert (os.lstat(p / "l").st_uid, os.lstat(p / "l").st_gid) == (7, 8)
    assert os.stat(p / "l").st_uid == 1234

    ro = remount_committed(strata, mounted)
    st = os.stat(ro.path / "f")
    assert stat.S_IMODE(st.st_mode) == 0o644
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    assert st.st_mtime_ns == mtime
    sd = os.stat(ro.path / "d")
    assert stat.S_IMODE(sd.st_mode) == 0o1750 and sd.st_uid == 42 and sd.st_mtime_ns == mtime
    assert os.lstat(ro.path / "l").st_uid == 7


# --- truncate and sparse files ---------------------------------------------------------


@pytest.mark.parametrize(
    "steps",
    [
        [("write", BLOCK + 10), ("trunc", 100), ("trunc", BLOCK * 2 + 1)],
        [("write", 3 * BLOCK), ("trunc", BLOCK), ("trunc", 0), ("write", 5)],
        [("write", 1000), ("trunc", BLOCK * 3), ("write", 10), ("trunc", BLOCK - 1)],
    ],
    ids=["shrink-then-grow", "to-block-edge-and-zero", "grow-hole-then-shrink"],
)
def test_truncate(strata: Strata, mounted: Mount, steps: list[tuple[str, int]]) -> None:
    """Shrink and grow across block boundaries; bytes past a shrink read back as zeros."""
    f = mounted.path / "t"
    model = bytearray()
    with open(f, "w+b") as h:
        for i, (op, n) in enumerate(steps):
            if op == "write":
                data = pattern(n, seed=i + 1)
                h.seek(0)
                h.write(data)
                h.flush()
                model[: len(data)] = data
            else:
                h.truncate(n)
                model = model[:n] + bytes(max(0, n - len(model)))
            assert os.fstat(h.fileno()).st_size == len(model)
    assert f.read_bytes() == bytes(model)
    os.truncate(f, len(model) // 2)  # by path (setattr without a handle)
    del model[len(model) // 2 :]
    assert f.read_bytes() == bytes(model)
    ro = remount_committed(strata, mounted)
    assert (ro.path / "t").read_bytes() == bytes(model)


def test_sparse_file(strata: Strata, mounted: Mount) -> None:
    f = mounted.path / "sparse"
    with open(f, "wb") as h:
        h.write(b"head")
        h.seek(BLOCK * 2 + 7)  # seek past the end, then write: a hole in between
        h.write(b"middle")
        h.seek(BLOCK * 5)
        h.write(b"tail")
    size = BLOCK * 5 + 4
    assert f.stat().st_size == size
    with open(f, "rb") as h:
        assert h.read(4) == b"head"
        assert h.read(BLOCK * 2 + 3) == bytes(BLOCK * 2 + 3)  # the hole reads as zeros
        assert h.read(6) == b"middle"
        h.seek(BLOCK * 4)
        assert h.read() == bytes(BLOCK) + b"tail"
    ro = remount_committed(strata, mounted)
    with open(ro.path / "sparse", "rb") as h:
        assert h.read(4) == b"head"
        h.seek(BLOCK * 2 + 7)
        assert h.read(6) == b"middle"
        h.seek(BLOCK + 5)
        assert h.read(100) == bytes(100)
    assert (ro.path / "sparse").stat().st_size == size


def test_large_sparse_file_beyond_4gib(strata: Strata, mounted: Mount) -> None:
    """Offsets past 2**32 (no 32-bit truncation anywhere), without writing 4 GiB."""
    f = mounted.path / "huge"
    offsets = [(1 << 32) - 3 * MiB, 1 << 32, (5 << 30) + 12345]  # straddles 4 GiB, then 5 GiB
    chunks = {off: pattern(2 * MiB + off % 1000, seed=off % 250) for off in offsets}
    fd = os.open(f, os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        for off, data in chunks.items():
            assert os.pwrite(fd, data, off) == len(data)
    finally:
        os.close(fd)
    end = max(off + len(d) for off, d in chunks.items())
    assert f.stat().st_size == end > 5 << 30

    def check(path: Path) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            for off, data in chunks.items():
                assert os.pread(fd, len(data), off) == data, f"at {off}"
            assert os.pread(fd, MiB, 1 << 31) == bytes(MiB)  # hole
            assert os.pread(fd, 10, end - 5) == chunks[offsets[-1]][-5:]
        finally:
            os.close(fd)

    check(f)
    ro = remount_committed(strata, mounted)
    assert (ro.path / "huge").stat().st_size == end
    check(ro.path / "huge")


# --- xattrs ----------------------------------------------------------------------------


def test_xattrs(strata: Strata, mounted: Mount) -> None:
    p = mounted.path
    f, d = p / "f", p / "d"
    f.write_text("x")
    d.mkdir()
    os.setxattr(f, "user.one", b"1")
    os.setxattr(f, "user.bin", bytes(range(256)))
    os.setxattr(f, "user.empty", b"")
    os.setxattr(d, "user.dir", b"on a directory")
    os.setxattr(f, "user.big", b"v" * 60000)
    assert sorted(os.listxattr(f)) == ["user.big", "user.bin", "user.empty", "user.one"]
    assert os.getxattr(f, "user.bin") == bytes(range(256))
    assert os.getxattr(f, "user.empty") == b""
    os.setxattr(f, "user.one", b"uno")  # replace
    assert os.getxattr(f, "user.one") == b"uno"
    assert errno_of(lambda: os.getxattr(f, "user.missing")) == errno.ENODATA
    assert errno_of(lambda: os.setxattr(f, "user.one", b"x", os.XATTR_CREATE)) == errno.EEXIST
    assert errno_of(lambda: os.setxattr(f, "user.new", b"x", os.XATTR_REPLACE)) == errno.ENODATA
    assert errno_of(lambda: os.removexattr(f, "user.missing")) == errno.ENODATA
    os.removexattr(f, "user.empty")
    assert "user.empty" not in os.listxattr(f)
    # Linux refuses user.* on symlinks in the VFS, whatever the filesystem.
    os.symlink("f", p / "l")
    assert errno_of(lambda: os.setxattr(p / "l", "user.x", b"1", follow_symlinks=False)) in (
        errno.EPERM,
        errno.ENOTSUP,
    )
    # The xattrs travel with the file through rename and hard links.
    os.rename(f, p / "g")
    os.link(p / "g", p / "h")
    assert os.getxattr(p / "h", "user.one") == b"uno"
    before = snapshot(p)
    ro = remount_committed(strata, mounted)
    assert_same_tree(before, ro.path)
    assert os.getxattr(ro.path / "g", "user.big") == b"v" * 60000
    assert os.getxattr(ro.path / "d", "user.dir") == b"on a directory"


# --- fsync, statfs, O_APPEND, mmap -----------------------------------------------------


def test_fsync_and_fdatasync(mounted: Mount) -> None:
    f = mounted.path / "durable"
    fd = os.open(f, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.write(fd, pattern(BLOCK + 1))
        os.fsync(fd)
        os.pwrite(fd, b"more", 10)
        os.fdatasync(fd)
    finally:
        os.close(fd)
    dfd = os.open(mounted.path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)  # fsyncdir
    finally:
        os.close(dfd)
    os.sync()
    data = bytearray(pattern(BLOCK + 1))
    data[10:14] = b"more"
    assert f.read_bytes() == bytes(data)


def test_statfs(mounted: Mount) -> None:
    before = os.statvfs(mounted.path)
    assert before.f_bsize > 0 and before.f_frsize > 0
    assert before.f_namemax == 255
    assert 0 < before.f_bfree <= before.f_blocks
    assert before.f_bavail <= before.f_blocks
    assert before.f_files > 0
    (mounted.path / "f").write_bytes(pattern(3 * MiB))
    after = os.statvfs(mounted.path)
    used = lambda s: (s.f_blocks - s.f_bfree) * s.f_frsize  # noqa: E731
    assert used(after) - used(before) >= 3 * MiB
    assert after.f_ffree <= after.f_files


def test_o_append(mounted: Mount) -> None:
    f = mounted.path / "log"
    f.write_bytes(b"start\n")
    a = os.open(f, os.O_WRONLY | os.O_APPEND)
    b = os.open(f, os.O_WRONLY | os.O_APPEND)
    try:
        for i in range(50):
            os.write(a if i % 2 else b, f"line {i}\n".encode())
        os.lseek(a, 0, os.SEEK_SET)  # O_APPEND ignores the file offset
        os.write(a, b"last\n")
        os.pwrite(b, b"pw\n", 0)  # on Linux, pwrite on O_APPEND appends too
    finally:
        os.close(a)
        os.close(b)
    lines = [f"line {i}\n" for i in range(50)]
    assert f.read_text() == "start\n" + "".join(lines) + "last\npw\n"
    # Appends past a block boundary.
    with open(f, "ab") as h:
        h.write(pattern(BLOCK))
    with open(f, "ab") as h:
        h.write(b"end")
    assert f.read_bytes().endswith(pattern(BLOCK) + b"end")


def test_mmap(mounted: Mount) -> None:
    f = mounted.path / "mapped"
    body = pattern(BLOCK + 3 * 4096 + 17)
    f.write_bytes(body)
    with open(f, "rb") as h, mmap.mmap(h.fileno(), 0, access=mmap.ACCESS_READ) as m:
        assert len(m) == len(body)
        assert m[:100] == body[:100]
        assert m[BLOCK - 10 : BLOCK + 10] == body[BLOCK - 10 : BLOCK + 10]
        assert m[-17:] == body[-17:]
        assert m[:] == body
    # A shared writable mapping (databases use them) writes through to the file.
    with open(f, "r+b") as h, mmap.mmap(h.fileno(), 0) as m:
        m[4096:4100] = b"MMAP"
        m.flush()
    assert f.read_bytes()[4096:4100] == b"MMAP"


def test_posix_acl_xattrs_refused_so_copies_keep_their_modes(
    strata: Strata, mounted: Mount
) -> None:
    """``cp -a`` sets ``system.posix_acl_access`` instead of chmod when that succeeds;
    the mount has no ACLs, so it must refuse it and cp falls back to chmod."""
    src = strata.tmp / "src"
    src.mkdir()
    (src / "f").write_text("x")
    os.chmod(src / "f", 0o644)
    os.chmod(src, 0o751)
    subprocess.run(["cp", "-a", str(src), str(mounted.path / "copy")], check=True)
    assert stat.S_IMODE(os.stat(mounted.path / "copy" / "f").st_mode) == 0o644
    assert stat.S_IMODE(os.stat(mounted.path / "copy").st_mode) == 0o751
    f = mounted.path / "copy" / "f"
    # A well-formed access ACL equivalent to mode 0644 (the kernel validates it first).
    acl = bytes.fromhex("0200000001000600ffffffff04000400ffffffff20000400ffffffff")
    assert errno_of(lambda: os.setxattr(f, "system.posix_acl_access", acl)) == errno.EOPNOTSUPP
    assert errno_of(lambda: os.getxattr(f, "system.posix_acl_access")) == errno.EOPNOTSUPP
    assert os.listxattr(f) == []


def test_o_direct_fallocate_and_long_symlink_targets(strata: Strata, mounted: Mount) -> None:
    p = mounted.path
    # posix_fallocate: FUSE (libfuse 2) has no fallocate; glibc falls back to writes.
    fd = os.open(p / "falloc", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.posix_fallocate(fd, 0, 3 * MiB)
        assert os.fstat(fd).st_size == 3 * MiB
    finally:
        os.close(fd)
    assert (p / "falloc").read_bytes() == bytes(3 * MiB)
    # O_DIRECT needs aligned buffers: an anonymous mmap is page-aligned.
    with mmap.mmap(-1, 2 * 4096) as buf:
        buf.write(b"D" * (2 * 4096))
        fd = os.open(p / "direct", os.O_CREAT | os.O_RDWR | os.O_DIRECT, 0o644)
        try:
            assert os.write(fd, buf) == 2 * 4096
        finally:
            os.close(fd)
    assert (p / "direct").read_bytes() == b"D" * (2 * 4096)
    # Symlink targets up to PATH_MAX - 1.
    os.symlink("t" * 4095, p / "longest")
    assert os.readlink(p / "longest") == "t" * 4095
    assert errno_of(lambda: os.symlink("t" * 4096, p / "toolong")) == errno.ENAMETOOLONG
    ro = remount_committed(strata, mounted)
    assert os.readlink(ro.path / "longest") == "t" * 4095
    assert (ro.path / "direct").read_bytes() == b"D" * (2 * 4096)


def test_root_directory_attributes_are_versioned(strata: Strata, mounted: Mount) -> None:
    p = mounted.path
    os.chown(p, 1000, 1000)
    os.chmod(p, 0o770)
    os.setxattr(p, "user.purpose", b"workspace")
    ro = remount_committed(strata, mounted)
    st = os.stat(ro.path)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o770, 1000, 1000)
    assert os.getxattr(ro.path, "user.purpose") == b"workspace"
