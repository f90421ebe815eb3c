"""ChunkCache: bounded size, LRU order, verification, and sharing a directory."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from strata.chunks.cache import ChunkCache
from strata.chunks.hashing import content_hash


def blob(i: int, size: int = 100) -> tuple[str, bytes]:
    data = i.to_bytes(4, "big") * (size // 4)
    return content_hash(data), data


def test_put_get_and_counters(tmp_path: Path) -> None:
    cache = ChunkCache(tmp_path, 10_000)
    d, data = blob(1)
    assert cache.get(d) is None
    cache.put(d, data)
    assert cache.get(d) == data
    assert d in cache
    s = cache.stats()
    assert (s.hits, s.misses, s.bytes) == (1, 1, 100)


def test_eviction_keeps_the_bound_and_drops_least_recently_used(tmp_path: Path) -> None:
    cache = ChunkCache(tmp_path, 300, low_water=1.0)
    (a, da), (b, db), (c, dc), (d, dd) = (blob(i) for i in range(4))
    cache.put(a, da)
    cache.put(b, db)
    cache.put(c, dc)
    assert cache.get(a) == da  # a is now more recent than b and c
    cache.put(d, dd)
    assert [x in cache for x in (a, b, c, d)] == [True, False, True, True]
    assert cache.disk_usage() == 300
    cache.put(b, db)  # b comes back; c is now the least recently used
    assert [x in cache for x in (a, b, c, d)] == [True, True, False, True]
    assert cache.stats().evictions == 2


def test_eviction_goes_down_to_the_low_water_mark(tmp_path: Path) -> None:
    cache = ChunkCache(tmp_path, 1000, low_water=0.5)
    for i in range(11):
        cache.put(*blob(i))
    assert cache.disk_usage() <= 500
    assert cache.stats().bytes == cache.disk_usage()


def test_total_never_exceeds_the_bound(tmp_path: Path) -> None:
    rng = random.Random(7)
    cache = ChunkCache(tmp_path, 5000)
    for i in range(200):
        cache.put(*blob(i, rng.randrange(4, 900, 4)))
        assert cache.disk_usage() <= 5000


def test_larger_than_the_cache_is_not_cached(tmp_path: Path) -> None:
    cache = ChunkCache(tmp_path, 50)
    d, data = blob(1)
    cache.put(d, data)
    assert d not in cache


@pytest.mark.parametrize(
    "tamper",
    [lambda b: b[:-1], lambda b: b"x" + b[1:], lambda b: b""],
    ids=["truncated", "flipped", "empty"],
)
def test_tampered_file_is_a_miss_and_removed(tmp_path: Path, tamper) -> None:
    cache = ChunkCache(tmp_path, 10_000)
    d, data = blob(1)
    cache.put(d, data)
    path = tmp_path / d[:2] / d
    path.write_bytes(tamper(data))
    assert cache.get(d) is None
    assert not path.exists()
    assert cache.stats().corrupt == 1


def test_file_vanishing_is_tolerated(tmp_path: Path) -> None:
    cache = ChunkCache(tmp_path, 10_000)
    d, data = blob(1)
    cache.put(d, data)
    (tmp_path / d[:2] / d).unlink()  # another process evicted it
    assert cache.get(d) is None
    cache.discard(d)
    cache.put(d, data)
    assert cache.get(d) == data


def test_two_caches_sharing_a_directory(tmp_path: Path) -> None:
    """Stands in for two processes: separate counters, one directory, one bound."""
    one = ChunkCache(tmp_path, 1000, low_water=1.0)
    two = ChunkCache(tmp_path, 1000, low_water=1.0)
    for i in range(8):
        one.put(*blob(i))
    d, data = blob(0)
    assert two.get(d) == data  # sees what the other wrote
    for i in range(8, 11):
        two.put(*blob(i))  # its rescan counts the other's files too
    assert tmp_path.joinpath(".lock").exists()
    assert one.disk_usage() <= 1000
    assert d in two  # recently used by two, so kept
    for i in range(11):
        got = one.get(blob(i)[0])
        assert got is None or got == blob(i)[1]


def test_concurrent_threads_never_see_wrong_bytes(tmp_path: Path) -> None:
    cache = ChunkCache(tmp_path, 4000)
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(300):
                d, data = blob(rng.randrange(60))
                if rng.random() < 0.5:
                    cache.put(d, data)
                else:
                    got = cache.get(d)
                    assert got is None or got == data
        except BaseException as exc:  # re-raised in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert cache.stats().corrupt == 0
    cache.put(*blob(99))  # settles the bound after the races
    assert cache.disk_usage() <= 4000


def test_startup_counts_existing_files_and_removes_stale_temp_files(tmp_path: Path) -> None:
    first = ChunkCache(tmp_path, 10_000)
    for i in range(3):
        first.put(*blob(i))
    sub = tmp_path / "ab"
    sub.mkdir()
    stale, fresh = sub / ".tmp-1-old", sub / ".tmp-2-new"
    stale.write_bytes(b"partial")
    fresh.write_bytes(b"partial")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    again = ChunkCache(tmp_path, 10_000)
    assert again.stats().bytes == 300
    assert not stale.exists() and fresh.exists()


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        ChunkCache(tmp_path, -1)
    with pytest.raises(ValueError):
        ChunkCache(tmp_path, 10, low_water=2)
    with pytest.raises(ValueError):
        ChunkCache(tmp_path, 10).get("nope")


_WRITER = """
import sys
from strata.chunks.cache import ChunkCache
from strata.chunks.hashing import content_hash

cache = ChunkCache(sys.argv[1], 20_000, low_water=1.0)
for i in range(int(sys.argv[2]), int(sys.argv[2]) + 150):
    data = i.to_bytes(4, "big") * 100
    cache.put(content_hash(data), data)
    got = cache.get(content_hash(data))
    assert got is None or got == data
"""


def test_two_processes_share_one_bound(tmp_path: Path) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), str(start)])
        for start in (0, 1000)
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    on_disk = sum(f.stat().st_size for f in tmp_path.glob("??/*"))
    assert 0 < on_disk <= 20_000
    # the shared count both processes kept (in the lock file) matches the disk exactly
    assert int.from_bytes((tmp_path / ".lock").read_bytes(), "little") == on_disk
