"""The workloads of the filesystem issue, one class each, timed around the real operations.

Each workload declares its metrics, prepares untimed state once per target, and returns
one value per metric per run. Anything a workload creates it removes again untimed, so
runs do not see each other's leftovers.
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.bench.config import BenchConfig, human_bytes, human_count
from tests.bench.fixtures import GIT, populate_volume, volume_relpath
from tests.bench.system import BenchError, drop_caches, payload, run, timed, tool
from tests.bench.targets import Target, Unsupported

MAIN = "main"  # the volume the throughput workloads run in
BIG, SMALL = "big", "small"  # the fork / commit / mount-latency volumes
MB = 1_000_000


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str  # "MB/s", "ops/s", "IOPS" or "s"
    higher_is_better: bool


@dataclass
class Context:
    """What workloads share: sizes, fixtures, and per-target state (volume versions)."""

    config: BenchConfig
    workdir: Path
    git_repo: Path
    tarball: Path
    fio: str | None = field(default_factory=lambda: tool("fio"))
    cold: bool = True  # False when caches cannot be dropped (not root): results are warm
    versions: dict[tuple[str, str], str | None] = field(default_factory=dict)
    fixture_seconds: dict[str, dict[str, float]] = field(default_factory=dict)
    _payload: tuple[str, bytes] | None = None

    def payload(self, size: int, seed: str) -> bytes:
        """Test data for this run, shared by all targets (separate stores: no dedup)."""
        if self._payload is None or self._payload[0] != f"{seed}/{size}":
            self._payload = None  # free the previous one before making the next
            self._payload = (f"{seed}/{size}", payload(size, seed))
        return self._payload[1]

    def drop_caches(self) -> None:
        self.cold = drop_caches() and self.cold

    def volume(self, target: Target, name: str) -> str | None:
        """Create, fill and seal the fork/commit/mount volume ``name`` once per target."""
        key = (target.name, name)
        if key not in self.versions:
            files = self.config.big_volume_files if name == BIG else self.config.small_volume_files
            start = time.perf_counter()
            root = target.create_volume(name)
            populate_volume(root, files, self.config.volume_fanout)
            self.versions[key] = target.seal(name)
            took = time.perf_counter() - start
            self.fixture_seconds.setdefault(target.name, {})[f"populate {name}"] = took
            print(f"  {target.name}: filled volume {name} ({files} files) in {took:.1f} s")
        return self.versions[key]


class Workload:
    key = ""
    title = ""
    measures = ""  # one sentence for the docs and the JSON

    def metrics(self, cfg: BenchConfig) -> list[Metric]:
        raise NotImplementedError

    def prepare(self, ctx: Context, target: Target) -> None:
        """Untimed set-up, once per target, before the first run."""

    def run(self, ctx: Context, target: Target, index: int) -> dict[str, float]:
        raise NotImplementedError

    def finish(self, ctx: Context, target: Target) -> None:
        """Untimed clean-up, once per target, after the last run."""


class SequentialIO(Workload):
    key = "seq"
    title = "Sequential write + cold read"
    measures = (
        "write one file in 1 MiB writes then fsync (MB/s incl. fsync and close); drop "
        "caches; read it back in 1 MiB reads (MB/s). Data is random and unique per run."
    )

    def metrics(self, cfg: BenchConfig) -> list[Metric]:
        size = human_bytes(cfg.seq_bytes)
        return [
            Metric("seq_write", f"seq write {size} (fsync)", "MB/s", True),
            Metric("seq_read", f"seq read {size} (cold)", "MB/s", True),
        ]

    def run(self, ctx: Context, target: Target, index: int) -> dict[str, float]:
        cfg = ctx.config
        data = memoryview(ctx.payload(cfg.seq_bytes, f"seq-{index}"))
        path = target.path(MAIN) / f"seq-{index}.bin"
        start = time.perf_counter()
        with open(path, "wb", buffering=0) as file:
            for offset in range(0, cfg.seq_bytes, cfg.seq_io):
                file.write(data[offset : offset + cfg.seq_io])
            os.fsync(file.fileno())
        write = time.perf_counter() - start
        ctx.drop_caches()
        buf, total = bytearray(cfg.seq_io), 0
        start = time.perf_counter()
        with open(path, "rb", buffering=0) as file:
            while n := file.readinto(buf):
                total += n
        read = time.perf_counter() - start
        if total != cfg.seq_bytes or buf[: cfg.seq_io] != data[-cfg.seq_io :]:
            raise BenchError(f"{path}: read back {total} bytes, or the last block differs")
        path.unlink()
        return {"seq_write": cfg.seq_bytes / write / MB, "seq_read": cfg.seq_bytes / read / MB}


class SmallFiles(Workload):
    key = "small"
    title = "Small files"
    measures = (
        "create N 4 KiB files (open/write/close) in directories of 100; drop caches; stat "
        "each; drop caches; read each; delete each. Operations per second of each phase."
    )

    def metrics(self, cfg: BenchConfig) -> list[Metric]:
        n = human_count(cfg.small_files)
        return [
            Metric("small_create", f"create {n} x 4 KiB", "ops/s", True),
            Metric("small_stat", f"stat {n} (cold)", "ops/s", True),
            Metric("small_read", f"read {n} (cold)", "ops/s", True),
            Metric("small_delete", f"delete {n}", "ops/s", True),
        ]

    def run(self, ctx: Context, target: Target, index: int) -> dict[str, float]:
        cfg = ctx.config
        n, size = cfg.small_files, cfg.small_file_size
        data = memoryview(ctx.payload(n * size, f"small-{index}"))
        root = target.path(MAIN) / f"small-{index}"
        root.mkdir()
        dirs = [root / f"d{i:03d}" for i in range(-(-n // cfg.small_fanout))]
        for directory in dirs:
            directory.mkdir()
        paths = [dirs[i // cfg.small_fanout] / f"f{i:05d}" for i in range(n)]
        rates: dict[str, float] = {}

        start = time.perf_counter()
        for i, path in enumerate(paths):
            with open(path, "wb", buffering=0) as file:
                file.write(data[i * size : (i + 1) * size])
        rates["small_create"] = n / (time.perf_counter() - start)

        ctx.drop_caches()
        start = time.perf_counter()
        for path in paths:
            os.stat(path)
        rates["small_stat"] = n / (time.perf_counter() - start)

        ctx.drop_caches()
        short = 0
        start = time.perf_counter()
        for path in paths:
            with open(path, "rb", buffering=0) as file:
                short += len(file.read(size + 1)) != size
        rates["small_read"] = n / (time.perf_counter() - start)
        if short:
            raise BenchError(f"{short} of {n} small files read back with the wrong size")

        start = time.perf_counter()
        for path in paths:
            os.unlink(path)
        rates["small_delete"] = n / (time.perf_counter() - start)
        for directory in dirs:
            directory.rmdir()
        root.rmdir()
        return rates


class RandomRead(Workload):
    key = "rand"
    title = "Random 4 KiB reads"
    measures = (
        "queue-depth-1 random 4 KiB reads over a 1 GiB file after dropping caches (fio "
        "psync when installed, else a Python pread loop; the same for every target)."
    )

    def metrics(self, cfg: BenchConfig) -> list[Metric]:
        label = f"rand read 4 KiB QD1 ({human_bytes(cfg.rand_file_bytes)} file, cold)"
        return [Metric("rand_read", label, "IOPS", True)]

    def _path(self, target: Target) -> Path:
        return target.path(MAIN) / "rand.bin"

    def prepare(self, ctx: Context, target: Target) -> None:
        cfg = ctx.config
        data = memoryview(ctx.payload(cfg.rand_file_bytes, "rand"))
        with open(self._path(target), "wb", buffering=0) as file:
            for offset in range(0, cfg.rand_file_bytes, cfg.seq_io):
                file.write(data[offset : offset + cfg.seq_io])
            os.fsync(file.fileno())

    def run(self, ctx: Context, target: Target, index: int) -> dict[str, float]:
        ctx.drop_caches()
        if ctx.fio:
            return {"rand_read": self._fio(ctx, self._path(target))}
        return {"rand_read": self._pread(ctx, self._path(target), index)}

    def _fio(self, ctx: Context, path: Path) -> float:
        cfg = ctx.config
        proc = run(
            [
                *(ctx.fio or "fio", "--name=randread", f"--filename={path}", "--rw=randread"),
                *(f"--bs={cfg.rand_io}", f"--size={cfg.rand_file_bytes}"),
                *(f"--io_size={cfg.rand_read_bytes}", "--ioengine=psync", "--iodepth=1"),
                *("--norandommap", "--randrepeat=0", "--readonly", "--output-format=json"),
            ]
        )
        result: dict[str, Any] = json.loads(proc.stdout[proc.stdout.index("{") :])
        read = result["jobs"][0]["read"]
        if read["total_ios"] < cfg.rand_read_bytes // cfg.rand_io:
            raise BenchError(f"fio did only {read['total_ios']} reads")
        return float(read["iops"])

    def _pread(self, ctx: Context, path: Path, index: int) -> float:
        cfg = ctx.config
        blocks, count = cfg.rand_file_bytes // cfg.rand_io, cfg.rand_read_bytes // cfg.rand_io
        rng = random.Random(index)
        offsets = [rng.randrange(blocks) * cfg.rand_io for _ in range(count)]
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
            start = time.perf_counter()
            for offset in offsets:
                os.pread(fd, cfg.rand_io, offset)
            return count / (time.perf_counter() - start)
        finally:
            os.close(fd)

    def finish(self, ctx: Context, target: Target) -> None:
        self._path(target).unlink(missing_ok=True)


class GitClone(Workload):
    key = "git"
    title = "git clone + git status"
    measures = (
        "`git clone --no-hardlinks` of a local synthetic repository (packed) into the "
        "volume; drop caches; `git status` in the clone (cold). Seconds."
    )

    def metrics(self, cfg: BenchConfig) -> list[Metric]:
        n = human_count(cfg.git_files)
        return [
            Metric("git_clone", f"git clone ({n} files)", "s", False),
            Metric("git_status", "git status (cold)", "s", False),
        ]

    def run(self, ctx: Context, target: Target, index: int) -> dict[str, float]:
        dst = target.path(MAIN) / f"clone-{index}"
        clone = timed([*GIT, "clone", "-q", "--no-hardlinks", ctx.git_repo, dst])
        ctx.drop_caches()
        start = time.perf_counter()
        status = run([*GIT, "status", "--porcelain"], cwd=dst)
        took = time.perf_counter() - start
        if status.stdout.strip():
            raise BenchError(f"git status in a fresh clone is not clean: {status.stdout[:300]}")
        target.remove_tree(dst)
        return {"git_clone": clone, "git_status": took}


class TarExtract(Workload):
    key = "tar"
    title = "Extract a source tarball"
    measures = "`tar -xf` of a synthetic uncompressed source tarball into the volume. Seconds."

    def metrics(self, cfg: BenchConfig) -> list[Metric]:
        label = f"tar -x ({human_count(cfg.tar_files)} files, {human_bytes(cfg.tar_bytes)})"
        return [Metric("tar_extract", label, "s", False)]

    def run(self, ctx: Context, target: Target, index: int) -> dict[str, float]:
        dst = target.path(MAIN) / f"tar-{index}"
        dst.mkdir()
        took = timed(["tar", "-xf", ctx.tarball, "-C", dst])
        target.remove_tree(dst)
        return {"tar_extract": took}


class Fork(Workload):
    key = "fork"
    title = "Fork a volume"
    measures = (
        "fork a sealed volume of 100k files and one of 100 files: `strata volume fork`, "
        "`juicefs clone` of the directory, `cp -a --reflink=auto` on the local disk. Seconds."
    )

    def metrics(self, cfg: BenchConfig) -> list[Metric]:
        big, small = human_count(cfg.big_volume_files), human_count(cfg.small_volume_files)
        return [
            Metric("fork_big", f"fork {big}-file volume", "s", False),
            Metric("fork_small", f"fork {small}-file volume", "s", False),
        ]

    def prepare(self, ctx: Context, target: Target) -> None:
        ctx.volume(target, BIG)
        ctx.volume(target, SMALL)

    def run(self, ctx: Context, target: Target, index: int) -> dict[str, float]:
        result = {}
        for name in (BIG, SMALL):
            new = f"{name}-fork-{index}"
            result[f"fork_{name}"] = target.fork(name, new, ctx.versions[(target.name, name)])
            target.drop_fork(name, new)
        return result


class Commit(Workload):
    key = "commit"
    title = "Commit after a 1-file change"
    measures = (
        "change one file in the live writable mount, then `strata commit MOUNTPOINT`, in "
        "the 100k-file volume and in the 100-file one (commit is O(change)). Seconds."
    )

    def metrics(self, cfg: BenchConfig) -> list[Metric]:
        big, small = human_count(cfg.big_volume_files), human_count(cfg.small_volume_files)
        return [
            Metric("commit_big", f"commit 1 change in {big} files", "s", False),
            Metric("commit_small", f"commit 1 change in {small} files", "s", False),
        ]

    def prepare(self, ctx: Context, target: Target) -> None:
        if not target.can_commit:
            raise Unsupported(f"{target.name} has no versions to commit")
        ctx.volume(target, BIG)
        ctx.volume(target, SMALL)

    def run(self, ctx: Context, target: Target, index: int) -> dict[str, float]:
        result = {}
        for name in (BIG, SMALL):
            files = ctx.config.big_volume_files if name == BIG else ctx.config.small_volume_files
            rel = volume_relpath((index * 7919) % files, ctx.config.volume_fanout)
            (target.path(name) / rel).write_bytes(f"changed in run {index}\n".encode())
            result[f"commit_{name}"] = target.commit(name)
        return result


class MountLatency(Workload):
    key = "mount"
    title = "Time to first byte of a mount"
    measures = (
        "drop caches, then time from starting the mount (Strata: `strata mount NAME@VERSION "
        "--read-only`; JuiceFS: `juicefs mount -d --read-only`) to the first byte of one "
        "file, for the 100k-file and the 100-file volume. Fresh cache dir each time. Seconds."
    )

    def metrics(self, cfg: BenchConfig) -> list[Metric]:
        big, small = human_count(cfg.big_volume_files), human_count(cfg.small_volume_files)
        return [
            Metric("ttfb_big", f"mount {big}-file version: first byte", "s", False),
            Metric("ttfb_small", f"mount {small}-file version: first byte", "s", False),
        ]

    def prepare(self, ctx: Context, target: Target) -> None:
        if not target.can_mount:
            raise Unsupported(f"{target.name} is not mounted")
        for name in (BIG, SMALL):
            ctx.volume(target, name)
            target.close_volume(name)

    def run(self, ctx: Context, target: Target, index: int) -> dict[str, float]:
        result = {}
        for name in (BIG, SMALL):
            files = ctx.config.big_volume_files if name == BIG else ctx.config.small_volume_files
            rel = volume_relpath(files // 2, ctx.config.volume_fanout)
            ctx.drop_caches()
            version = ctx.versions[(target.name, name)]
            result[f"ttfb_{name}"] = target.first_byte(name, version, rel)
        return result


WORKLOADS: list[Workload] = [
    SequentialIO(),
    SmallFiles(),
    RandomRead(),
    GitClone(),
    TarExtract(),
    Fork(),
    Commit(),
    MountLatency(),
]
