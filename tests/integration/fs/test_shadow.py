"""A randomized sequence of operations on a mount, checked against a local directory.

Each operation (write at offset, truncate, mkdir, rmdir, unlink, rename, link, symlink,
chmod, setxattr/removexattr, commit) is generated from the shadow directory's current
tree, so names collide often (rename over existing entries, EEXIST, ENOTEMPTY, …). It
is applied to both trees and must have the same outcome: the same result, or the same
errno. The full trees are compared every few operations, after every commit, at the
end, after a writable remount and after a kill -9 and recovery in the middle of the
sequence, and finally on a read-only mount of the committed version.

Seeded, so a failure replays exactly: the failure message lists the operations. Run a
longer soak with ``STRATA_SHADOW_OPS=3000 STRATA_SHADOW_SEEDS=1,2,3,4,5``.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from strata.fs.control import commit_mount
from tests.integration.fs.conftest import Strata
from tests.integration.fs.helpers import Snapshot, diff_snapshots, snapshot

BLOCK = 4 << 20
NAMES = ["a", "b", "c", "dd", "e"]
XATTRS = ["user.k1", "user.k2", "user.k3"]
N_OPS = int(os.environ.get("STRATA_SHADOW_OPS", "250"))
SEEDS = [int(s) for s in os.environ.get("STRATA_SHADOW_SEEDS", "11,22").split(",")]
CHECK_EVERY = 40


@dataclass(frozen=True)
class Op:
    """One operation with concrete arguments; ``apply(root)`` runs it under ``root``."""

    name: str
    args: tuple[object, ...]
    fn: Callable[..., object]

    def apply(self, root: Path) -> tuple[str, object]:
        try:
            return ("ok", self.fn(root, *self.args))
        except OSError as exc:
            return ("err", errno.errorcode.get(exc.errno or 0, exc.errno))

    def __str__(self) -> str:
        shown = [f"<{len(a)} bytes>" if isinstance(a, bytes) else repr(a) for a in self.args]
        return f"{self.name}({', '.join(shown)})"


# --- the operations (never follow a symlink: targets may point anywhere) ---------------


def _open_nofollow(path: Path, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW, 0o644)


def op_write(root: Path, rel: str, offset: int, data: bytes) -> int:
    fd = _open_nofollow(root / rel, os.O_WRONLY | os.O_CREAT)
    try:
        return os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def op_append(root: Path, rel: str, data: bytes) -> int:
    fd = _open_nofollow(root / rel, os.O_WRONLY | os.O_APPEND)
    try:
        return os.write(fd, data)
    finally:
        os.close(fd)


def op_truncate(root: Path, rel: str, size: int) -> None:
    fd = _open_nofollow(root / rel, os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
    finally:
        os.close(fd)


def op_read(root: Path, rel: str, offset: int, size: int) -> bytes:
    fd = _open_nofollow(root / rel, os.O_RDONLY)
    try:
        return os.pread(fd, size, offset)
    finally:
        os.close(fd)


def op_mkdir(root: Path, rel: str, mode: int) -> None:
    os.mkdir(root / rel, mode)


def op_rmdir(root: Path, rel: str) -> None:
    os.rmdir(root / rel)


def op_unlink(root: Path, rel: str) -> None:
    os.unlink(root / rel)


def op_rename(root: Path, src: str, dst: str) -> None:
    os.rename(root / src, root / dst)


def op_link(root: Path, src: str, dst: str) -> None:
    os.link(root / src, root / dst, follow_symlinks=False)


def op_symlink(root: Path, target: str, rel: str) -> None:
    os.symlink(target, root / rel)


def op_chmod(root: Path, rel: str, mode: int) -> None:
    if stat.S_ISLNK(os.lstat(root / rel).st_mode):
        return  # Linux has no lchmod; chmod would follow the link out of the tree
    os.chmod(root / rel, mode)


def op_setxattr(root: Path, rel: str, name: str, value: bytes) -> None:
    os.setxattr(root / rel, name, value, follow_symlinks=False)


def op_removexattr(root: Path, rel: str, name: str) -> None:
    os.removexattr(root / rel, name, follow_symlinks=False)


def op_stat(root: Path, rel: str) -> tuple[str, int, int]:
    st = os.lstat(root / rel)
    kind = "d" if stat.S_ISDIR(st.st_mode) else "l" if stat.S_ISLNK(st.st_mode) else "f"
    return kind, stat.S_IMODE(st.st_mode), st.st_size if kind != "d" else 0


# --- generation --------------------------------------------------------------------------


class Generator:
    """Random operations over the names that exist in the shadow tree right now."""

    def __init__(self, seed: int, shadow: Path) -> None:
        self.rng = random.Random(seed)
        self.shadow = shadow

    def _entries(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for dirpath, dirnames, filenames in os.walk(self.shadow):
            rel = os.path.relpath(dirpath, self.shadow)
            prefix = "" if rel == "." else rel + "/"
            for d in list(dirnames):  # os.walk lists symlinks to directories here
                if os.path.islink(os.path.join(dirpath, d)):
                    dirnames.remove(d)
                    out.append((prefix + d, "l"))
                else:
                    out.append((prefix + d, "d"))
            for f in filenames:
                is_link = os.path.islink(os.path.join(dirpath, f))
                out.append((prefix + f, "l" if is_link else "f"))
        return sorted(out)

    def _offset(self) -> int:
        r = self.rng.random()
        if r < 0.6:
            return self.rng.randrange(0, 64 << 10)
        if r < 0.9:  # around a block boundary
            return self.rng.choice([BLOCK, 2 * BLOCK]) + self.rng.randrange(-70000, 70000)
        return self.rng.randrange(0, 3 * BLOCK)  # leaves holes

    def _data(self) -> bytes:
        n = self.rng.choice([1, 7, 4096, 5000, 65536, 150000])
        return self.rng.randbytes(n)

    def next(self) -> Op:
        rng = self.rng
        entries = self._entries()
        dirs = [""] + [p for p, k in entries if k == "d"]
        files = [p for p, k in entries if k == "f"]
        names = [p for p, _ in entries]

        def new_path() -> str:
            parent = rng.choice(dirs)
            return f"{parent}/{rng.choice(NAMES)}" if parent else rng.choice(NAMES)

        def some_path(existing: float = 0.7) -> str:
            return rng.choice(names) if names and rng.random() < existing else new_path()

        def a_file() -> str:
            return rng.choice(files) if files and rng.random() < 0.85 else some_path()

        kinds = [
            ("write", 24),
            ("append", 4),
            ("truncate", 6),
            ("read", 4),
            ("mkdir", 10),
            ("rmdir", 5),
            ("unlink", 8),
            ("rename", 12),
            ("link", 6),
            ("symlink", 5),
            ("chmod", 5),
            ("setxattr", 6),
            ("removexattr", 2),
            ("stat", 2),
            ("commit", 2),
        ]
        kind = rng.choices([k for k, _ in kinds], [w for _, w in kinds])[0]
        if kind == "write":
            return Op(kind, (a_file(), self._offset(), self._data()), op_write)
        if kind == "append":
            return Op(kind, (a_file(), self._data()), op_append)
        if kind == "truncate":
            return Op(kind, (a_file(), self._offset()), op_truncate)
        if kind == "read":
            return Op(kind, (a_file(), self._offset(), rng.choice([10, 70000, BLOCK])), op_read)
        if kind == "mkdir":
            return Op(kind, (some_path(0.2), rng.choice([0o755, 0o700, 0o775])), op_mkdir)
        if kind == "rmdir":
            return Op(kind, (some_path(),), op_rmdir)
        if kind == "unlink":
            return Op(kind, (some_path(),), op_unlink)
        if kind == "rename":
            return Op(kind, (some_path(0.9), some_path(0.5)), op_rename)
        if kind == "link":
            return Op(kind, (some_path(0.9), some_path(0.3)), op_link)
        if kind == "symlink":
            target = rng.choice([*NAMES, "../a", "dd/b", "/abs/elsewhere", "x" * 200])
            return Op(kind, (target, some_path(0.2)), op_symlink)
        if kind == "chmod":
            return Op(
                kind, (some_path(0.9), rng.choice([0o600, 0o644, 0o755, 0o700, 0o1777])), op_chmod
            )
        if kind == "setxattr":
            # ext4 (the shadow) keeps all xattrs of an inode in one 4 KiB block
            value = rng.randbytes(rng.choice([0, 3, 100, 1000]))
            return Op(kind, (some_path(0.9), rng.choice(XATTRS), value), op_setxattr)
        if kind == "removexattr":
            return Op(kind, (some_path(0.9), rng.choice(XATTRS)), op_removexattr)
        if kind == "stat":
            return Op(kind, (some_path(),), op_stat)
        return Op("commit", (), lambda root: None)


def _compare(shadow: Path, mount: Path, log: list[str], when: str) -> None:
    problems = diff_snapshots(snapshot(shadow), snapshot(mount))
    if problems:
        raise AssertionError(
            f"mount differs from the shadow directory {when}:\n  "
            + "\n  ".join(problems)
            + "\n--- operations (seed replay) ---\n"
            + "\n".join(log[-80:])
        )


#: kernel caches as users get them, and none at all: without caches every lookup and
#: stat is answered by the daemon, so its answers are checked, not the kernel's copies
CACHES = {
    "cached": (),
    "uncached": ("--attr-cache", "0", "--entry-cache", "0", "--dir-entry-cache", "0"),
}


#: (seed, kernel caches, volume kind). A high-throughput volume batches metadata
#: transactions, so a kill may lose what nobody fsync'ed: it is fsync'ed before the kill.
DEFAULT_RUNS = [(11, "cached", "normal"), (22, "uncached", "normal"), (33, "cached", "fast")]
RUNS = (
    [(seed, c, kind) for seed in SEEDS for c in CACHES for kind in ("normal", "fast")]
    if "STRATA_SHADOW_SEEDS" in os.environ
    else DEFAULT_RUNS
)


@pytest.mark.slow
@pytest.mark.parametrize(("seed", "caches", "kind"), RUNS)
def test_random_ops_match_shadow_directory(
    strata: Strata, seed: int, caches: str, kind: str, tmp_path: Path
) -> None:
    flags = CACHES[caches]
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    os.chmod(shadow, 0o755)
    volume = "shadow"
    strata.cli("volume", "create", volume, *(["--high-throughput"] if kind == "fast" else []))
    m = strata.mount(volume, None, *flags)
    os.chmod(m.path, 0o755)
    gen = Generator(seed, shadow)
    log: list[str] = []
    # Restarts of the daemon in the middle: a clean unmount, then a crash. Every op
    # above returned before the kill, and a process crash (unlike a power cut) loses
    # nothing the kernel already has: the recovered tree must equal the shadow exactly.
    restarts = {N_OPS // 3: "umount", 2 * N_OPS // 3: "kill -9"}

    for i in range(N_OPS):
        op = gen.next()
        if op.name == "commit":
            log.append(f"{i}: commit -> {commit_mount(m.path, f'op {i}')}")
            _compare(shadow, m.path, log, f"after the commit at op {i}")
            continue
        expected = op.apply(shadow)
        actual = op.apply(m.path)
        log.append(f"{i}: {op} -> {expected[0]} {_short(expected[1])}")
        if expected != actual:
            raise AssertionError(
                f"op {i} {op}: shadow gave {_short(expected)}, mount gave {_short(actual)}\n"
                + "--- operations (seed replay) ---\n"
                + "\n".join(log[-80:])
            )
        if i % CHECK_EVERY == CHECK_EVERY - 1:
            _compare(shadow, m.path, log, f"after op {i}")
        if i in restarts:
            # Mount the head again: the uncommitted overlay is reloaded (or recovered)
            # from the cache dir, over a base that has some commits in it.
            how = restarts[i]
            if how == "umount":
                m.umount()
            else:
                if kind == "fast":
                    fsync_dir(m.path)
                m.kill9()
            m = strata.mount(volume, m.path, *flags)
            log.append(f"{i}: remounted writable after {how}")
            _compare(shadow, m.path, log, f"after the writable remount ({how}) at op {i}")

    _compare(shadow, m.path, log, "at the end")
    ref = m.commit("final")
    ro = strata.mount(ref)
    _compare(shadow, ro.path, log, f"on the read-only mount of {ref}")
    ro.umount()
    m.umount()
    rw = strata.mount(volume, None, *flags)
    _compare(shadow, rw.path, log, "on a writable mount of the committed head")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."


def test_generator_is_deterministic(tmp_path: Path) -> None:
    """The same seed gives the same operations (so a failure replays)."""
    runs = []
    for _ in range(2):
        shadow = tmp_path / f"s{len(runs)}"
        shadow.mkdir()
        gen = Generator(5, shadow)
        ops = []
        for _ in range(60):
            op = gen.next()
            if op.name != "commit":
                op.apply(shadow)
            ops.append(str(op))
        runs.append(ops)
    assert runs[0] == runs[1]


#: errors racing threads may legitimately get; anything else (EIO above all) is a bug
_RACE_ERRNOS = {
    errno.ENOENT,
    errno.EEXIST,
    errno.ENOTEMPTY,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EINVAL,
    errno.EPERM,
}


def _link_count_problems(snap: Snapshot) -> list[str]:
    """Every name of a file is inside the tree, so nlink must equal its group size."""
    grouped = {path: len(group) for group in snap.links for path in group}
    return [
        f"{path}: nlink {node.nlink} but {grouped.get(path, 1)} name(s)"
        for path, node in snap.nodes.items()
        if node.kind == "f" and node.nlink != grouped.get(path, 1)
    ]


@pytest.mark.slow
def test_parallel_namespace_churn(strata: Strata) -> None:
    """Threads racing over a few shared names (the daemon serves with 8 workers): no
    unexpected errno, link counts that add up, and the same tree after commit on a
    read-only mount and after a writable remount."""
    volume = strata.create("churn")
    m = strata.mount(volume)
    dirs = ["", "d0", "d1", "d0/e"]
    unexpected: list[str] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)

        def path() -> Path:
            return m.path / rng.choice(dirs) / rng.choice(NAMES)

        for _ in range(300):
            kind = rng.choice(
                ["write", "write", "rename", "unlink", "mkdir", "rmdir", "link", "trunc", "read"]
            )
            try:
                if kind == "write":
                    op_write(
                        m.path,
                        str(path().relative_to(m.path)),
                        rng.randrange(0, 1 << 20),
                        rng.randbytes(rng.choice([10, 5000, 70000])),
                    )
                elif kind == "rename":
                    os.rename(path(), path())
                elif kind == "unlink":
                    os.unlink(path())
                elif kind == "mkdir":
                    os.mkdir(m.path / rng.choice(["d0", "d1", "d0/e"]))
                elif kind == "rmdir":
                    os.rmdir(m.path / rng.choice(["d0", "d1", "d0/e"]))
                elif kind == "link":
                    os.link(path(), path())
                elif kind == "trunc":
                    os.truncate(path(), rng.randrange(0, 1 << 20))
                else:
                    with open(path(), "rb") as f:
                        f.read()
            except OSError as exc:
                if exc.errno not in _RACE_ERRNOS:
                    unexpected.append(f"{kind}: {exc!r}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not unexpected, unexpected[:20]

    live = snapshot(m.path)
    assert not _link_count_problems(live), _link_count_problems(live)
    assert not diff_snapshots(live, snapshot(m.path))  # stable when nothing changes
    ref = m.commit("after the churn")
    assert not diff_snapshots(live, snapshot(strata.mount(ref).path)), ref
    m.umount()
    again = strata.mount(volume)
    problems = diff_snapshots(live, snapshot(again.path))
    assert not problems, problems


@pytest.mark.slow
@pytest.mark.allow_daemon_errors
def test_kill9_without_fsync_leaves_a_consistent_tree(strata: Strata, tmp_path: Path) -> None:
    """On a high-throughput volume a kill may lose the last, un-fsync'ed batch of
    operations; what comes back must still be a sane tree: every file readable (no
    EIO), link counts that add up, and a commit that reads back the same."""
    strata.cli("volume", "create", "fast", "--high-throughput")
    m = strata.mount("fast")
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    gen = Generator(44, shadow)
    for round_ in range(3):
        for _ in range(150):
            op = gen.next()
            if op.name != "commit":
                op.apply(shadow)
                op.apply(m.path)
        m.kill9()
        m = strata.mount("fast", m.path)
        recovered = snapshot(m.path)  # reads every file: EIO would raise here
        assert not _link_count_problems(recovered), (round_, _link_count_problems(recovered))
        ref = m.commit(f"after crash {round_}")
        ro = strata.mount(ref)
        problems = diff_snapshots(recovered, snapshot(ro.path))
        assert not problems, (round_, problems)
        ro.umount()
        # Continue from what survived: the shadow becomes the recovered tree.
        shutil.rmtree(shadow)
        shutil.copytree(m.path, shadow, symlinks=True)
