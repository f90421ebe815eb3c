"""ContentStore: the one way content-addressed blobs go into and out of a store.

Chunks (file data blocks) and trees (directory and block-list pages) are the same
kind of object -- immutable, named by ``blake3(plaintext)``, encoded by
:mod:`strata.chunks.codec` -- and differ only in their key prefix
(:func:`strata.chunks.layout.chunk_key` / :func:`~strata.chunks.layout.tree_key`).

Writes are idempotent dedup: ``put(key, blob, if_absent=True)``; losing that race
(``PreconditionFailed``) means an object with this content address is already there,
which is success. Digests this process has written or seen present are remembered
(bounded) so repeated writes of hot blocks skip the request entirely.

Reads are verified (never wrong bytes) and, when a :class:`ChunkCache` is given, served
from and filled into the local cache. A missing object raises the store's
``ObjectNotFound``; a damaged one raises ``CorruptObject`` and is counted.

Note for garbage collection: a dedup hit does not refresh the existing object's mtime,
so a sweeper must not rely on object age alone to protect blocks a writer is about to
reference; see docs/architecture.md (GC grace window).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass

from strata.chunks import codec, metrics
from strata.chunks.cache import ChunkCache
from strata.chunks.hashing import CHUNK_SIZE, check_digest, content_hash
from strata.chunks.layout import chunk_key, tree_key
from strata.errors import CorruptObject, PreconditionFailed, StrataError
from strata.store.base import Store

log = logging.getLogger(__name__)

_CHUNK = "chunk"
_TREE = "tree"
_KEY_OF = {_CHUNK: chunk_key, _TREE: tree_key}


class StaleData(StrataError):
    """Data handed over for upload no longer hashes to the digest it was staged under.

    The caller changed or replaced a staged block without cancelling its upload; the
    block is not stored (nothing references the new bytes).
    """

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(
            f"staged block {expected} changed before it was uploaded (it now hashes to "
            f"{actual}); cancel a block's upload before rewriting its staged data"
        )
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True)
class ContentStats:
    """What one ContentStore did; commit stats and object-count tests read this."""

    objects_written: int = 0  # PUTs that created an object
    bytes_written: int = 0  # encoded bytes of those objects
    plaintext_written: int = 0  # plaintext bytes of those objects
    dedup_hits: int = 0  # puts that found the object already present
    objects_read: int = 0  # GETs sent to the store (cache misses)
    bytes_read: int = 0  # encoded bytes those GETs returned
    corrupt: int = 0  # objects that failed verification


class ContentStore:
    """Put and get verified, deduplicated content-addressed blobs over a Store."""

    def __init__(
        self,
        store: Store,
        *,
        cache: ChunkCache | None = None,
        compress: bool = True,
        level: int = codec.DEFAULT_LEVEL,
        min_saving: float = codec.DEFAULT_MIN_SAVING,
        remember: int = 100_000,
    ) -> None:
        """``remember`` bounds the set of digests known to be present (0 disables it)."""
        self.store = store
        self.cache = cache
        self.compress = compress
        self.level = level
        self.min_saving = min_saving
        self._remember = remember
        self._present: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    # --- writes ----------------------------------------------------------------------

    def put_chunk(self, data: bytes | bytearray | memoryview, *, expected: str = "") -> str:
        """Store a file block (at most CHUNK_SIZE bytes); return its digest.

        ``expected``, when given, is the digest the caller computed earlier (e.g. when
        the block was staged); a mismatch means the staged data changed underneath and
        raises StaleData rather than storing a block nobody references.
        """
        if len(data) > CHUNK_SIZE:
            raise ValueError(f"chunk of {len(data)} bytes exceeds CHUNK_SIZE ({CHUNK_SIZE})")
        return self._put(_CHUNK, data, expected)

    def put_tree(self, data: bytes | bytearray | memoryview) -> str:
        """Store a tree object (a directory or block-list page); return its digest."""
        return self._put(_TREE, data, "")

    def _put(self, kind: str, data: bytes | bytearray | memoryview, expected: str) -> str:
        digest = content_hash(data)
        key = _KEY_OF[kind](digest)
        if expected and digest != expected:
            raise StaleData(expected, digest)
        if self._known(kind, digest):
            self._dedup(kind)
            return digest
        blob = codec.encode(
            data, compress=self.compress, level=self.level, min_saving=self.min_saving
        )
        try:
            self.store.put(key, blob, if_absent=True)
        except PreconditionFailed:
            self._dedup(kind)
        else:
            self._count(objects_written=1, bytes_written=len(blob), plaintext_written=len(data))
            metrics.WRITTEN_OBJECTS.labels(kind).inc()
            metrics.WRITTEN_BYTES.labels(kind).inc(len(blob))
        self._remember_present(kind, digest)
        return digest

    # --- reads -----------------------------------------------------------------------

    def get_chunk(self, digest: str) -> bytes:
        """The verified plaintext of chunk ``digest`` (ObjectNotFound if absent)."""
        return self._get(_CHUNK, digest)

    def get_tree(self, digest: str) -> bytes:
        """The verified plaintext of tree ``digest`` (ObjectNotFound if absent)."""
        return self._get(_TREE, digest)

    def _get(self, kind: str, digest: str) -> bytes:
        check_digest(digest)
        # Chunks and trees share the cache: equal digests mean equal plaintext.
        hit = self._cache_get(digest)
        if hit is not None:
            return hit
        key = _KEY_OF[kind](digest)
        blob = self.store.get(key)
        self._count(objects_read=1, bytes_read=len(blob))
        metrics.READ_OBJECTS.labels(kind).inc()
        metrics.READ_BYTES.labels(kind).inc(len(blob))
        try:
            data = codec.decode(blob, digest, key=key)
        except CorruptObject:
            self._count(corrupt=1)
            metrics.CORRUPT_OBJECTS.labels(kind).inc()
            raise
        self._remember_present(kind, digest)
        self._cache_put(digest, data)
        return data

    # The cache only speeds reads up: a local disk problem (full, permissions, the
    # directory removed) is logged and the read goes on from the store.

    def _cache_get(self, digest: str) -> bytes | None:
        if self.cache is None:
            return None
        try:
            return self.cache.get(digest)
        except OSError as exc:
            log.warning(
                "chunk cache %s unreadable, reading from the store: %s", self.cache.directory, exc
            )
            return None

    def _cache_put(self, digest: str, data: bytes) -> None:
        if self.cache is None:
            return
        try:
            self.cache.put(digest, data)
        except OSError as exc:
            log.warning("could not cache %s in %s: %s", digest, self.cache.directory, exc)

    def has_chunk(self, digest: str) -> bool:
        """True when chunk ``digest`` exists in the store (asks the store if unsure)."""
        return self._has(_CHUNK, digest)

    def has_tree(self, digest: str) -> bool:
        """True when tree ``digest`` exists in the store (asks the store if unsure)."""
        return self._has(_TREE, digest)

    def _has(self, kind: str, digest: str) -> bool:
        check_digest(digest)
        if self._known(kind, digest):
            return True
        if self.store.exists(_KEY_OF[kind](digest)):
            self._remember_present(kind, digest)
            return True
        return False

    # --- accounting ------------------------------------------------------------------

    def stats(self) -> ContentStats:
        """A snapshot of what this ContentStore has done so far."""
        with self._lock:
            return ContentStats(**self._counts)

    def forget_present(self) -> None:
        """Forget which objects are known present (e.g. after a GC sweep ran)."""
        with self._lock:
            self._present.clear()

    def _count(self, **deltas: int) -> None:
        with self._lock:
            self._counts.update(deltas)

    def _dedup(self, kind: str) -> None:
        self._count(dedup_hits=1)
        metrics.DEDUP_HITS.labels(kind).inc()

    def _known(self, kind: str, digest: str) -> bool:
        with self._lock:
            if (kind, digest) in self._present:
                self._present.move_to_end((kind, digest))
                return True
            return False

    def _remember_present(self, kind: str, digest: str) -> None:
        if self._remember <= 0:
            return
        with self._lock:
            self._present[(kind, digest)] = None
            self._present.move_to_end((kind, digest))
            while len(self._present) > self._remember:
                self._present.popitem(last=False)
