"""Many files in one directory: create, list, stat, read, commit, remount, delete.

10k files run on both stores; 100k (``slow``) on the local store. A big directory is
paged in the store (DESIGN.md), so the read-only mount of the committed version reads it
page by page; the listing must still be complete, sorted consistently and exact.
"""

from __future__ import annotations

import os
import time

import pytest

from tests.integration.fs.conftest import Mount, Strata


def _name(i: int) -> str:
    return f"file-{i:06d}.txt"


def _many_files(strata: Strata, m: Mount, n: int) -> dict[str, float]:
    timings: dict[str, float] = {}
    big = m.path / "big"
    big.mkdir()
    t = time.monotonic()
    for i in range(n):
        fd = os.open(big / _name(i), os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644)
        os.write(fd, f"{i}\n".encode())
        os.close(fd)
    timings["create"] = time.monotonic() - t
    expected = {_name(i) for i in range(n)}

    t = time.monotonic()
    listing = os.listdir(big)
    timings["list"] = time.monotonic() - t
    assert len(listing) == n and set(listing) == expected

    t = time.monotonic()
    for i in range(0, n, 7):
        assert os.stat(big / _name(i)).st_size == len(f"{i}\n")
    for i in range(0, n, 97):
        assert (big / _name(i)).read_text() == f"{i}\n"
    timings["stat+read"] = time.monotonic() - t

    t = time.monotonic()
    ref = m.commit(f"{n} files")
    timings["commit"] = time.monotonic() - t

    ro = strata.mount(ref)
    t = time.monotonic()
    ro_listing = os.listdir(ro.path / "big")
    timings["ro list"] = time.monotonic() - t
    assert len(ro_listing) == n and set(ro_listing) == expected
    # Lookups that land in different pages of the paged directory.
    for i in [0, 1, n // 3, n // 2, n - 2, n - 1]:
        assert (ro.path / "big" / _name(i)).read_text() == f"{i}\n"
    assert not (ro.path / "big" / "file-missing").exists()

    # Delete every other file, then all: counts stay exact.
    t = time.monotonic()
    for i in range(0, n, 2):
        os.unlink(big / _name(i))
    assert len(os.listdir(big)) == n // 2
    ref2 = m.commit("half deleted")
    for i in range(1, n, 2):
        os.unlink(big / _name(i))
    os.rmdir(big)
    timings["delete"] = time.monotonic() - t
    ro2 = strata.mount(ref2)
    assert len(os.listdir(ro2.path / "big")) == n // 2
    assert os.listdir(m.path) == []
    return timings


def test_10k_files_in_one_directory(strata: Strata, mounted: Mount) -> None:
    timings = _many_files(strata, mounted, 10_000)
    print("10k files:", {k: f"{v:.1f}s" for k, v in timings.items()})


@pytest.mark.slow
@pytest.mark.timeout(1800)  # ~100k creates through FUSE: minutes on a loaded 2-core box
def test_100k_files_in_one_directory(local_strata: Strata) -> None:
    m = local_strata.mount(local_strata.create("vol"))
    timings = _many_files(local_strata, m, 100_000)
    print("100k files:", {k: f"{v:.1f}s" for k, v in timings.items()})
