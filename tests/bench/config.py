"""Workload sizes: the issue's full sizes, and a quick set 10-100x smaller for smoke runs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


@dataclass(frozen=True)
class BenchConfig:
    """Every size a workload uses, in one place so quick mode is one switch."""

    runs: int = 3
    quick: bool = False
    seq_bytes: int = 2 * GiB  # sequential write/read file
    seq_io: int = 1 * MiB  # I/O size of the sequential workloads
    small_files: int = 10_000  # create/stat/read/delete
    small_file_size: int = 4 * KiB
    small_fanout: int = 100  # files per directory in the small-file tree
    rand_file_bytes: int = 1 * GiB  # random-read file
    rand_io: int = 4 * KiB
    rand_read_bytes: int = 64 * MiB  # bytes read per run (16k reads: mostly cold pages)
    git_files: int = 3_000  # files in the synthetic repository
    git_bytes: int = 30 * MiB
    tar_files: int = 20_000  # files in the synthetic source tarball
    tar_bytes: int = 200 * MiB
    big_volume_files: int = 100_000  # fork / commit / mount-latency volume
    small_volume_files: int = 100  # the same, to show those costs are flat in size
    volume_fanout: int = 1_000  # files per directory in the fork/commit/mount volumes

    @classmethod
    def quick_config(cls, runs: int = 3) -> BenchConfig:
        """Sizes for a smoke run (minutes, not tens of minutes); same code paths."""
        return cls(
            runs=runs,
            quick=True,
            seq_bytes=64 * MiB,
            small_files=1_000,
            small_fanout=50,
            rand_file_bytes=64 * MiB,
            rand_read_bytes=8 * MiB,
            git_files=300,
            git_bytes=3 * MiB,
            tar_files=2_000,
            tar_bytes=20 * MiB,
            big_volume_files=5_000,
            volume_fanout=500,
        )

    def as_dict(self) -> dict[str, int | bool]:
        return dataclasses.asdict(self)


def human_bytes(n: int) -> str:
    """``2 GiB``, ``64 MiB``, ``4 KiB``: labels that match what the sizes were chosen as."""
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} B"


def human_count(n: int) -> str:
    """``100k``, ``10k``, ``300``: file counts as the workload names say them."""
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)
