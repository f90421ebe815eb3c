"""A bounded on-disk cache of verified plaintext, keyed by content digest.

Layout: ``<directory>/<d[:2]>/<d>`` holds the plaintext of digest ``d``; ``.lock`` is
the eviction lock. Because the name *is* the content hash, the cache needs no index:
a file either hashes to its name or is garbage.

Why it is safe to share:

* Writes go to a temp file in the same directory and are renamed into place, so a
  reader (thread or process) sees a whole file or none.
* Every hit is re-hashed before it is returned (blake3 runs at several GB/s, cheap next
  to the read). A file that fails -- bit rot, a torn write after a power cut, someone
  editing the directory -- is deleted, counted as corrupt, and reported as a miss, so
  the caller refetches from the store. The cache never serves unverified bytes and
  never raises for bad local data.
* A file may vanish at any moment (another process evicted it); every path tolerates
  that as a miss.

Eviction is LRU by file mtime: a hit or a repeated put bumps the file's mtime to a
strictly increasing per-process clock, so order holds even inside one timer tick.
The bytes cached are counted in the ``.lock`` file itself (8 bytes, little-endian),
updated under its ``flock`` by every put and removal, so processes sharing the
directory share one total; a file is renamed into place and counted under the same
lock. When a put takes the total over ``max_bytes``, the process holding the lock
rescans the directory (which also corrects any drift, e.g. from a crash between a
rename and the count update) and deletes the least recently used files until
the total is at most ``low_water * max_bytes``; evicting below the limit amortises the
rescan. The total is thus at most ``max_bytes`` whenever the lock is free.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from strata.chunks import metrics
from strata.chunks.hashing import check_digest, content_hash, is_digest

_TMP_PREFIX = ".tmp-"
# A temp file this old is a crashed writer's leftover, not a write in progress.
_STALE_TMP_SECONDS = 3600.0


@dataclass(frozen=True)
class CacheStats:
    hits: int  # by this ChunkCache object
    misses: int
    evictions: int
    corrupt: int
    bytes: int  # cached in the directory, by every process sharing it


@dataclass(frozen=True)
class _File:
    path: Path
    size: int
    mtime_ns: int


class ChunkCache:
    """Bounded, verified, LRU on-disk cache of plaintext blobs by digest."""

    def __init__(
        self, directory: str | os.PathLike[str], max_bytes: int, *, low_water: float = 0.9
    ) -> None:
        if max_bytes < 0:
            raise ValueError(f"cache max_bytes must be >= 0, got {max_bytes}")
        if not 0.0 <= low_water <= 1.0:
            raise ValueError(f"cache low_water must be within [0, 1], got {low_water}")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.low_water = low_water
        self.directory.mkdir(parents=True, exist_ok=True)
        # _lock serialises this process's threads around the flock (which only
        # excludes other open files, i.e. other processes); _stats_lock guards counters.
        self._lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        self._last_ns = 0
        self._hits = self._misses = self._evictions = self._corrupt = 0
        with self._shared():
            self._write_total(sum(f.size for f in self._scan()))

    # --- lookups ---------------------------------------------------------------------

    def get(self, digest: str) -> bytes | None:
        """Return the verified plaintext for ``digest``, or None on a miss."""
        path = self._path(check_digest(digest))
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return self._miss()
        if content_hash(data) != digest:
            self._remove(path)
            with self._stats_lock:
                self._corrupt += 1
            metrics.CACHE_CORRUPT.inc()
            return self._miss()
        self._touch(path)
        with self._stats_lock:
            self._hits += 1
        metrics.CACHE_HITS.inc()
        return data

    def __contains__(self, digest: object) -> bool:
        return isinstance(digest, str) and is_digest(digest) and self._path(digest).exists()

    # --- updates ---------------------------------------------------------------------

    def put(self, digest: str, data: bytes | bytearray | memoryview) -> None:
        """Cache ``data``, which the caller has verified hashes to ``digest``.

        Data larger than the whole cache is not stored (it would evict everything and
        then itself).
        """
        path = self._path(check_digest(digest))
        if len(data) > self.max_bytes:
            return
        if path.exists():
            self._touch(path)
            return
        path.parent.mkdir(exist_ok=True)
        tmp = path.parent / f"{_TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex}"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            # No fsync: a torn file after a crash fails verification and is refetched.
            # Rename and count under the lock, so a rescan never sees an uncounted file.
            with self._shared():
                if path.exists():
                    return  # another thread or process cached it meanwhile
                os.replace(tmp, path)
                self._touch(path)
                total = self._read_total() + len(data)
                if total > self.max_bytes:
                    total = self._evict()
                self._write_total(total)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def discard(self, digest: str) -> None:
        """Drop ``digest`` from the cache if present."""
        self._remove(self._path(check_digest(digest)))

    # --- accounting ------------------------------------------------------------------

    def stats(self) -> CacheStats:
        with self._shared():
            total = self._read_total()
        with self._stats_lock:
            return CacheStats(self._hits, self._misses, self._evictions, self._corrupt, total)

    def disk_usage(self) -> int:
        """Bytes of cached files on disk right now (a directory scan; for tests/stats)."""
        return sum(f.size for f in self._scan())

    def close(self) -> None:
        """Release the lock file descriptor; cached files stay for the next process."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    # --- internals -------------------------------------------------------------------

    def _path(self, digest: str) -> Path:
        return self.directory / digest[:2] / digest

    def _miss(self) -> None:
        with self._stats_lock:
            self._misses += 1
        metrics.CACHE_MISSES.inc()
        return None

    def _touch(self, path: Path) -> None:
        """Mark ``path`` most recently used (mtime, not atime: noatime mounts exist)."""
        with self._stats_lock:
            now = max(time.time_ns(), self._last_ns + 1)
            self._last_ns = now
        with contextlib.suppress(FileNotFoundError):
            os.utime(path, ns=(now, now))

    def _remove(self, path: Path) -> None:
        with self._shared():
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                return  # someone else removed (and uncounted) it
            self._write_total(max(0, self._read_total() - size))

    @contextlib.contextmanager
    def _shared(self) -> Iterator[None]:
        """Hold the directory's lock: this process's threads and other processes."""
        with self._lock:
            if self._fd < 0:
                raise RuntimeError(f"chunk cache {self.directory} is closed")
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _read_total(self) -> int:
        raw = os.pread(self._fd, 8, 0)
        return int.from_bytes(raw, "little") if len(raw) == 8 else 0

    def _write_total(self, total: int) -> None:
        os.pwrite(self._fd, total.to_bytes(8, "little"), 0)

    def _scan(self) -> list[_File]:
        """Every cached file with its size and mtime; removes stale temp files."""
        files: list[_File] = []
        stale_before = time.time() - _STALE_TMP_SECONDS
        for sub in self.directory.iterdir():
            if not sub.is_dir() or len(sub.name) != 2:
                continue
            try:
                entries = list(os.scandir(sub))
            except FileNotFoundError:
                continue
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # evicted by someone else while we looked
                if entry.name.startswith(_TMP_PREFIX):
                    if st.st_mtime < stale_before:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(entry.path)
                    continue
                if is_digest(entry.name):
                    files.append(_File(Path(entry.path), st.st_size, st.st_mtime_ns))
        return files

    def _evict(self) -> int:
        """Delete LRU files down to the low-water mark; return the true total (locked)."""
        files = sorted(self._scan(), key=lambda f: f.mtime_ns)
        total = sum(f.size for f in files)
        target = int(self.max_bytes * self.low_water)
        evicted = 0
        for f in files:
            if total <= target:
                break
            with contextlib.suppress(FileNotFoundError):
                f.path.unlink()
            total -= f.size
            evicted += 1
        with self._stats_lock:
            self._evictions += evicted
        metrics.CACHE_EVICTIONS.inc(evicted)
        return total
