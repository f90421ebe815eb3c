"""Mount lifecycle through the CLI: commit while mounted, read-only mounts, one writer,
crashes (kill -9) and recovery, forks, finalize, mount options that change behaviour.
"""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from strata.fs.mountpoint import is_dead_mount
from strata.meta.seal import request_seal, wait_seal
from strata.store import open_store
from tests.integration.fs.conftest import CliError, Mount, Strata, is_fuse_mounted
from tests.integration.fs.helpers import assert_same_tree, errno_of, snapshot, wait_for

MiB = 1 << 20
REF = re.compile(r"^[a-z0-9][a-z0-9-]*@[a-z0-9]+$")


def fill(root: Path, tag: str) -> None:
    """A small tree with every kind of entry, its content depending on ``tag``."""
    (root / "dir" / "sub").mkdir(parents=True, exist_ok=True)
    (root / "dir" / "sub" / "file.txt").write_text(f"{tag}\n" * 100)
    (root / "big.bin").write_bytes(tag.encode() * (5 * MiB // len(tag)))
    (root / f"only-in-{tag}").write_text(tag)
    link = root / "link"
    if not link.is_symlink():
        os.symlink("dir/sub/file.txt", link)
    if not (root / "hard").exists():
        os.link(root / "dir" / "sub" / "file.txt", root / "hard")
    os.setxattr(root / "dir", "user.tag", tag.encode())


def test_commit_while_mounted_then_mount_that_version_read_only(
    strata: Strata, mounted: Mount
) -> None:
    fill(mounted.path, "one")
    first = snapshot(mounted.path)
    ref = mounted.commit("first")
    assert REF.match(ref) and ref.startswith("vol@"), ref
    # Keep writing after the commit: the version must not see any of it.
    fill(mounted.path, "two")
    (mounted.path / "only-in-one").unlink()
    second = snapshot(mounted.path)
    ro = strata.mount(ref)
    assert ro.read_only
    assert_same_tree(first, ro.path)
    assert_same_tree(second, mounted.path)  # the writer is undisturbed
    ref2 = mounted.commit("second")
    assert ref2 != ref
    ro2 = strata.mount(ref2)
    assert_same_tree(second, ro2.path)
    assert_same_tree(first, ro.path)  # versions are immutable
    log = strata.cli("volume", "log", "vol").stdout
    assert ref.split("@")[1] in log and ref2.split("@")[1] in log
    diff = strata.cli("volume", "diff", ref, ref2).stdout
    assert "only-in-one" in diff and "only-in-two" in diff


def test_commit_of_an_unchanged_mount_and_an_empty_volume(strata: Strata, mounted: Mount) -> None:
    empty = mounted.commit("nothing yet")
    ro = strata.mount(empty)
    assert os.listdir(ro.path) == []
    again = mounted.commit("still nothing")
    assert REF.match(again)


def test_read_only_mount_refuses_writes_with_erofs(strata: Strata, mounted: Mount) -> None:
    fill(mounted.path, "ro")
    ref = mounted.commit("for read-only")
    ro = strata.mount(ref)
    p = ro.path
    assert (p / "dir" / "sub" / "file.txt").read_text().startswith("ro")
    refusals = {
        "create": lambda: os.open(p / "new", os.O_CREAT | os.O_WRONLY, 0o644),
        "open-write": lambda: os.open(p / "big.bin", os.O_WRONLY),
        "open-rdwr": lambda: os.open(p / "big.bin", os.O_RDWR),
        "open-trunc": lambda: os.open(p / "big.bin", os.O_RDONLY | os.O_TRUNC),
        "truncate": lambda: os.truncate(p / "big.bin", 0),
        "mkdir": lambda: os.mkdir(p / "newdir"),
        "rmdir": lambda: os.rmdir(p / "dir" / "sub"),
        "unlink": lambda: os.unlink(p / "big.bin"),
        "rename": lambda: os.rename(p / "big.bin", p / "moved"),
        "symlink": lambda: os.symlink("x", p / "sym"),
        "link": lambda: os.link(p / "big.bin", p / "hard2"),
        "chmod": lambda: os.chmod(p / "big.bin", 0o600),
        "chown": lambda: os.chown(p / "big.bin", 1, 1),
        "utime": lambda: os.utime(p / "big.bin", (1, 1)),
        "setxattr": lambda: os.setxattr(p / "big.bin", "user.x", b"1"),
        "removexattr": lambda: os.removexattr(p / "dir", "user.tag"),
        "mkfifo": lambda: os.mkfifo(p / "fifo"),
    }
    got = {name: errno_of(fn) for name, fn in refusals.items()}
    assert got == dict.fromkeys(refusals, errno.EROFS)
    assert os.statvfs(p).f_flag & os.ST_RDONLY  # mounted "ro": the kernel refuses first
    # Reads, xattrs and statfs work.
    assert os.getxattr(p / "dir", "user.tag") == b"ro"
    assert os.statvfs(p).f_namemax == 255
    # Committing a read-only mount is refused with a message, not a traceback.
    proc = strata.cli("commit", str(p), "-m", "x", check=False)
    assert proc.returncode != 0 and "read-only" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_read_only_flag_mounts_the_head(strata: Strata, mounted: Mount) -> None:
    fill(mounted.path, "head")
    expected = snapshot(mounted.path)
    mounted.commit("head")
    ro = strata.mount("vol", None, "--read-only")
    assert ro.read_only
    assert_same_tree(expected, ro.path)
    assert errno_of(lambda: (ro.path / "x").write_text("x")) == errno.EROFS


def test_second_writable_mount_of_a_volume_fails(strata: Strata, mounted: Mount) -> None:
    (mounted.path / "f").write_text("first writer")
    # Same machine, same overlay (the default cache dir).
    other = strata.mountpoint()
    with pytest.raises(CliError) as exc:
        strata.mount("vol", other)
    assert "being written by" in exc.value.proc.stderr, exc.value.proc.stderr
    assert not is_fuse_mounted(other)
    # Another machine, as far as Strata can tell: a different cache dir.
    with pytest.raises(CliError) as exc:
        strata.mount("vol", other, "--cache-dir", str(strata.tmp / "elsewhere"))
    assert "being written by" in exc.value.proc.stderr, exc.value.proc.stderr
    assert not is_fuse_mounted(other)
    # The first writer was not fenced: it still writes and commits.
    (mounted.path / "f").write_text("still writing")
    ref = mounted.commit("after the refused mounts")
    ro = strata.mount(ref)
    assert (ro.path / "f").read_text() == "still writing"


@pytest.mark.allow_daemon_errors
def test_dead_mount_point_is_cleaned_by_the_next_mount(strata: Strata, mounted: Mount) -> None:
    (mounted.path / "f").write_text("x")
    mounted.kill9()
    wait_for(lambda: is_dead_mount(mounted.path), 10, "the mount to be dead (ENOTCONN)")
    assert errno_of(lambda: os.listdir(mounted.path)) == errno.ENOTCONN
    again = strata.mount("vol", mounted.path)
    assert not is_dead_mount(again.path)
    os.listdir(again.path)
    # Exactly one FUSE mount at that path: the dead one was removed, not stacked over.
    target = os.path.realpath(again.path)
    with open("/proc/self/mountinfo") as mountinfo:
        stacked = [line for line in mountinfo if line.split()[4] == target]
    assert len(stacked) == 1, stacked
    # And a read-only mount on a dead mount point works the same way.
    ref = again.commit("before the second crash")
    again.kill9()
    wait_for(lambda: is_dead_mount(again.path), 10, "the mount to be dead (ENOTCONN)")
    ro = strata.mount(ref, again.path)
    assert not is_dead_mount(ro.path)
    os.listdir(ro.path)
    # `strata umount` of a dead mount cleans it too.
    ro.kill9()
    wait_for(lambda: is_dead_mount(ro.path), 10, "the mount to be dead (ENOTCONN)")
    strata.cli("umount", str(ro.path))
    assert not is_fuse_mounted(ro.path)
    assert os.listdir(ro.path) == []


@pytest.mark.allow_daemon_errors
@pytest.mark.parametrize("kind", ["normal", "high-throughput"])
def test_kill9_after_fsync_keeps_fsynced_data(strata: Strata, kind: str) -> None:
    """Invariant 6: what a program fsync'ed survives kill -9 of the daemon (also on a
    high-throughput volume, whose metadata transactions are batched)."""
    strata.cli("volume", "create", "vol", *(["--high-throughput"] if kind != "normal" else []))
    mounted = strata.mount("vol")
    p = mounted.path
    fill(p, "committed")
    committed = snapshot(p)
    ref = mounted.commit("before the crash")

    (p / "work").mkdir()
    durable: dict[str, bytes] = {}
    for name, size in [("small", 100), ("block", 4 * MiB), ("multi", 9 * MiB + 17)]:
        data = os.urandom(size)
        fd = os.open(p / "work" / name, os.O_CREAT | os.O_WRONLY, 0o640)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        durable[f"work/{name}"] = data
    # Overwrite part of a committed file and append to a log, with fdatasync.
    fd = os.open(p / "big.bin", os.O_WRONLY)
    try:
        os.pwrite(fd, b"PATCHED", 4 * MiB - 3)
        os.fdatasync(fd)
    finally:
        os.close(fd)
    patched = bytearray((p / "big.bin").read_bytes())
    log = os.open(p / "work" / "log", os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
    try:
        for i in range(100):
            os.write(log, f"entry {i}\n".encode())
            os.fsync(log)
    finally:
        os.close(log)
    # Metadata changes made before an fsync are durable too.
    os.rename(p / "dir" / "sub" / "file.txt", p / "dir" / "renamed.txt")
    os.chmod(p / "work" / "small", 0o600)
    fd = os.open(p / "work" / "small", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    # Not fsync'ed: may or may not survive, but must not break anything.
    (p / "work" / "unsynced").write_bytes(os.urandom(MiB))

    mounted.kill9()
    again = strata.mount("vol", mounted.path)
    q = again.path
    for rel, data in durable.items():
        assert (q / rel).read_bytes() == data, rel
    assert (q / "big.bin").read_bytes() == bytes(patched)
    assert (q / "work" / "log").read_text() == "".join(f"entry {i}\n" for i in range(100))
    assert (q / "dir" / "renamed.txt").read_text() == "committed\n" * 100
    assert not (q / "dir" / "sub" / "file.txt").exists()
    assert os.stat(q / "work" / "small").st_mode & 0o777 == 0o600
    assert os.stat(q / "hard").st_nlink == 2  # the hard link followed the rename
    # The recovered state commits, and the version before the crash is intact.
    ref2 = again.commit("after recovery")
    ro2 = strata.mount(ref2)
    for rel, data in durable.items():
        assert (ro2.path / rel).read_bytes() == data, rel
    ro = strata.mount(ref)
    assert_same_tree(committed, ro.path)


@pytest.mark.allow_daemon_errors
def test_kill9_during_writes_never_corrupts_committed_versions(
    strata: Strata, mounted: Mount
) -> None:
    fill(mounted.path, "safe")
    expected = snapshot(mounted.path)
    ref = mounted.commit("safe")
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os,sys\n"
            "p=sys.argv[1]\n"
            "i=0\n"
            "while True:\n"
            "    open(os.path.join(p,f'f{i%50}'),'wb').write(os.urandom(300000))\n"
            "    i+=1\n",
            str(mounted.path),
        ],
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: len(os.listdir(mounted.path)) > 20, 60, "the writer to get going")
        mounted.kill9()
    finally:
        writer.kill()
        writer.wait(30)
    again = strata.mount("vol", mounted.path)
    os.listdir(again.path)
    assert (again.path / "dir" / "sub" / "file.txt").read_text() == "safe\n" * 100
    again.commit("after the crash")
    ro = strata.mount(ref)
    assert_same_tree(expected, ro.path)


def test_unmount_without_commit_keeps_the_working_state(strata: Strata, mounted: Mount) -> None:
    fill(mounted.path, "draft")
    expected = snapshot(mounted.path)
    mounted.umount()
    again = strata.mount("vol")
    assert_same_tree(expected, again.path)
    ref = again.finalize("finalized")
    assert REF.match(ref), ref
    assert not is_fuse_mounted(again.path)
    ro = strata.mount(ref)
    assert_same_tree(expected, ro.path)


def test_fork_and_mount_the_fork(strata: Strata, mounted: Mount) -> None:
    fill(mounted.path, "source")
    ref = mounted.commit("source v1")
    source_tree = snapshot(mounted.path)
    strata.cli("volume", "fork", ref, "forked")
    strata.cli("volume", "fork", "vol", "forked-head")  # a fork of the head also works
    fork = strata.mount("forked")
    assert_same_tree(source_tree, fork.path)
    # Writes to the fork do not reach the source (its live mount or its versions).
    fill(fork.path, "fork")
    (fork.path / "only-in-source").unlink()
    (fork.path / "dir" / "sub" / "file.txt").write_text("changed in the fork")
    fork_tree = snapshot(fork.path)
    fork_ref = fork.commit("fork v1")
    assert fork_ref.startswith("forked@")
    assert_same_tree(source_tree, mounted.path)
    assert_same_tree(source_tree, strata.mount(ref).path)
    assert_same_tree(fork_tree, strata.mount(fork_ref).path)
    # And writes to the source do not reach the fork.
    (mounted.path / "later").write_text("source only")
    mounted.commit("source v2")
    assert not (fork.path / "later").exists()
    head_fork = strata.mount("forked-head")
    assert_same_tree(source_tree, head_fork.path)
    # A fork's history goes back through the source.
    assert ref.split("@")[1] in strata.cli("volume", "log", "forked").stdout


def test_mount_options(strata: Strata) -> None:
    """The CLI options reach the daemon: cache dir, upload delay, caches, max uploads."""
    strata.create("vol")
    cache = strata.tmp / "my-cache"
    m = strata.mount(
        "vol",
        None,
        "--cache-dir",
        str(cache),
        "--max-uploads",
        "2",
        "--upload-delay",
        "1h",
        "--attr-cache",
        "0",
        "--entry-cache",
        "0",
        "--dir-entry-cache",
        "0",
        "--cache-size",
        "64Mi",
    )
    store = open_store(strata.store_url)
    chunks_before = {o.key for o in store.list("chunks/")}
    # A full block is sealed at once, but the upload waits an hour: deleting the file
    # before that means it is never uploaded.
    (m.path / "doomed").write_bytes(os.urandom(9 * MiB))
    (m.path / "keep").write_text("kept")
    assert list(cache.rglob("*.db")) or list(cache.rglob("working.db*")), list(cache.iterdir())
    (m.path / "doomed").unlink()
    ref = m.commit("with options")
    chunks_after = {o.key for o in store.list("chunks/")}
    assert len(chunks_after - chunks_before) <= 1  # at most the small file's block
    ro = strata.mount(ref)
    assert os.listdir(ro.path) == ["keep"]
    # Bad options fail before anything is mounted, naming the option.
    bad = strata.cli("mount", "vol", str(strata.tmp / "bad"), "--cache-size", "lots", check=False)
    assert bad.returncode != 0 and "size" in bad.stderr.lower(), bad.stderr
    assert not is_fuse_mounted(strata.tmp / "bad")


def test_mount_of_missing_volume_or_version_fails_cleanly(strata: Strata) -> None:
    for source in ("nosuchvolume", "nosuchvolume@abc123"):
        target = strata.mountpoint()
        proc = strata.cli("mount", source, str(target), check=False)
        assert proc.returncode != 0
        assert "nosuchvolume" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert not is_fuse_mounted(target)


def test_seal_request_through_the_store(strata: Strata, mounted: Mount) -> None:
    """A live writer is committed from outside through the store (no xattrs, no
    network path to the daemon): the way the operator and other machines ask."""
    fill(mounted.path, "sealed")
    expected = snapshot(mounted.path)
    store = open_store(strata.store_url)
    req = request_seal(store, "vol", "sealed from outside", "test")
    ref = wait_seal(store, req, timeout=60)
    assert REF.match(ref) and ref.startswith("vol@"), ref
    assert_same_tree(expected, strata.mount(ref).path)
    assert "sealed from outside" in strata.cli("volume", "log", "vol").stdout


def test_commit_while_files_are_open(strata: Strata, mounted: Mount) -> None:
    """Handles opened before a commit keep working after it, and the next commit has
    everything; a commit never waits for (or breaks) a writer."""
    p = mounted.path
    w = open(p / "growing.log", "wb")  # noqa: SIM115 - kept open across commits
    r = open(p / "growing.log", "rb")  # noqa: SIM115
    try:
        w.write(b"a" * (5 * MiB))
        w.flush()
        first = mounted.commit("one")
        w.write(b"b" * (5 * MiB))
        w.flush()
        assert r.read() == b"a" * (5 * MiB) + b"b" * (5 * MiB)
        second = mounted.commit("two")
        w.seek(MiB)
        w.write(b"c" * 10)
        w.flush()
    finally:
        w.close()
        r.close()
    assert (strata.mount(first).path / "growing.log").read_bytes() == b"a" * (5 * MiB)
    data = (strata.mount(second).path / "growing.log").read_bytes()
    assert data == b"a" * (5 * MiB) + b"b" * (5 * MiB)
    final = bytearray(data)
    final[MiB : MiB + 10] = b"c" * 10
    assert (p / "growing.log").read_bytes() == bytes(final)


def test_commit_during_concurrent_writes(strata: Strata, mounted: Mount) -> None:
    """Commits racing a busy writer: every committed file is one the writer wrote whole
    or is absent (files are written to a temp name and renamed into place)."""
    p = mounted.path
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        i = 0
        try:
            while not stop.is_set():
                body = (f"{i}:".encode() * 40000)[: 100000 + i]
                (p / "tmp").write_bytes(body)
                os.replace(p / "tmp", p / f"f{i % 20}")
                i += 1
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    refs = []
    try:
        wait_for(lambda: (p / "f5").exists(), 30, "the writer to get going")
        for n in range(3):
            refs.append(mounted.commit(f"racing {n}"))
    finally:
        stop.set()
        thread.join(60)
    assert not errors, errors
    for ref in refs:
        ro = strata.mount(ref)
        for f in ro.path.iterdir():
            if f.name == "tmp":
                continue  # caught between write and rename: any prefix is fine
            body = f.read_bytes()
            i = int(body.split(b":", 1)[0])
            assert body == (f"{i}:".encode() * 40000)[: 100000 + i], f"{ref}: {f.name}"
        ro.umount()


def test_umount_of_a_busy_mount_fails_cleanly(strata: Strata, mounted: Mount) -> None:
    (mounted.path / "f").write_text("x")
    with open(mounted.path / "f") as held:
        proc = strata.cli("umount", str(mounted.path), check=False)
        assert proc.returncode != 0, proc.stdout
        assert "busy" in proc.stderr.lower() and "Traceback" not in proc.stderr, proc.stderr
        mounted.assert_alive()
        assert held.read() == "x"
    mounted.umount()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch users")
def test_permission_bits_are_enforced_for_other_users(strata: Strata, mounted: Mount) -> None:
    """Mounted as root with allow_other + default_permissions: a pod's non-root user
    can use the mount, and the kernel enforces modes and ownership for it."""
    mounted.umount()  # pytest's tmp tree is private (0700): mount where others can reach
    m = strata.mount("vol", strata.public_dir() / "mnt")
    p = m.path
    os.chmod(p, 0o755)
    (p / "public.txt").write_text("public")
    (p / "secret.txt").write_text("secret")
    os.chmod(p / "secret.txt", 0o600)
    (p / "shared").mkdir(mode=0o777)
    os.chmod(p / "shared", 0o777)
    (p / "mine").mkdir()
    os.chown(p / "mine", 65534, 65534)

    script = (
        "import errno, json, os, sys\n"
        "p = sys.argv[1]\n"
        "def e(f):\n"
        "    try:\n"
        "        f()\n"
        "        return 0\n"
        "    except OSError as x:\n"
        "        return x.errno\n"
        "out = {\n"
        "  'read-public': e(lambda: open(p + '/public.txt').read()),\n"
        "  'read-secret': e(lambda: open(p + '/secret.txt').read()),\n"
        "  'write-public': e(lambda: open(p + '/public.txt', 'a').write('x')),\n"
        "  'create-root': e(lambda: open(p + '/new.txt', 'w').close()),\n"
        "  'create-shared': e(lambda: open(p + '/shared/new.txt', 'w').close()),\n"
        "  'create-own': e(lambda: open(p + '/mine/new.txt', 'w').close()),\n"
        "  'chmod-other': e(lambda: os.chmod(p + '/public.txt', 0o777)),\n"
        "}\n"
        "print(json.dumps(out))\n"
    )
    python = "/usr/bin/python3"  # the test's venv may not be readable by other users
    if not os.access(python, os.X_OK):
        pytest.skip("no system python3 to run as another user")
    proc = subprocess.run(
        [python, "-c", script, str(p)],
        user=65534,
        group=65534,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got == {
        "read-public": 0,
        "read-secret": errno.EACCES,
        "write-public": errno.EACCES,
        "create-root": errno.EACCES,
        "create-shared": 0,
        "create-own": 0,
        "chmod-other": errno.EPERM,
    }
    st = os.stat(p / "mine" / "new.txt")
    assert (st.st_uid, st.st_gid) == (65534, 65534)  # created with the caller's ids


def test_reads_through_a_small_chunk_cache(strata: Strata, mounted: Mount) -> None:
    """A read-only mount whose chunk cache (--cache-size) is smaller than the file
    evicts and re-fetches blocks from the store, and still reads the right bytes."""
    body = os.urandom(6 * MiB) * 3  # 18 MiB: five blocks, some sharing content
    (mounted.path / "big").write_bytes(body)
    ref = mounted.commit("big file")
    ro = strata.mount(ref, None, "--cache-size", "5Mi", "--cache-dir", str(strata.tmp / "c2"))
    for _ in range(2):
        assert (ro.path / "big").read_bytes() == body
    with open(ro.path / "big", "rb") as f:
        for off in (17 * MiB, 3, 9 * MiB - 1, 4 * MiB - 2):
            f.seek(off)
            assert f.read(1000) == body[off : off + 1000]


@pytest.mark.allow_daemon_errors
def test_missing_or_corrupt_chunks_read_as_eio(strata: Strata, mounted: Mount) -> None:
    """Damage in the store is EIO for the damaged file only, never wrong bytes, and
    the mount stays up (a read error must not escape a handler and end the mount)."""
    store = open_store(strata.store_url)
    (mounted.path / "healthy").write_text("fine")
    mounted.commit("healthy")
    before = {o.key for o in store.list("chunks/")}
    (mounted.path / "corrupt").write_bytes(os.urandom(5 * MiB))
    (mounted.path / "missing").write_bytes(os.urandom(5 * MiB))
    ref = mounted.commit("to be damaged")
    new = sorted({o.key for o in store.list("chunks/")} - before)
    assert len(new) >= 4, new  # two blocks per file, none shared
    for key in new:  # the same key, other bytes: the content hash no longer matches
        store.put(key, b"not the chunk you are looking for")
    # A fresh chunk cache, so every block comes from the store.
    ro = strata.mount(ref, None, "--cache-dir", str(strata.tmp / "ro-cache"))
    assert errno_of(lambda: (ro.path / "corrupt").read_bytes()) == errno.EIO
    for key in new:
        store.delete(key)
    assert errno_of(lambda: (ro.path / "missing").read_bytes()) == errno.EIO
    assert (ro.path / "healthy").read_text() == "fine"
    ro.assert_alive()
    bad = strata.bad_log_lines()
    assert not any("unexpected error" in line for line in bad), bad
