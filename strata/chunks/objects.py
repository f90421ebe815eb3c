"""ContentStore: the one way content-addressed blobs go into and out of a store.

Chunks (file data blocks) and trees (directory and block-list pages) are the same
kind of object -- immutable, named by ``blake3(plaintext)``, encoded by
:mod:`strata.chunks.codec` -- and differ only in their key prefix
(:func:`strata.chunks.layout.chunk_key` / :func:`~strata.chunks.layout.tree_key`).

Writes are idempotent dedup: ``put(key, blob, if_absent=True)``; losing that race
(``PreconditionFailed``) means an object with this content address is already there,
which is success. Digests this process has written or seen present are remembered
(bounded) so repeated writes of hot blocks skip the request entirely.

Dedup and garbage collection (invariant 7). GC never sweeps an object whose store
mtime is at or after the ``since`` of a live writer claim (minus a clock-skew margin;
:mod:`strata.meta.gc`). So everything a writer *uploads* during its session is safe,
but an object it *dedups against* may be old and unreferenced (its version was
deleted) and GC could sweep it before the commit that references it. Hence
:attr:`ContentStore.refresh_before`, the start of the writer session this store serves
(:meth:`ContentStore.set_refresh_before`; default: when the ContentStore was made): a
put that finds its object already present makes sure the object's mtime is not older
than that, by HEAD and, if it is older, by writing the identical bytes again (a
*refresh*: same key, same content, new mtime; counted in ``objects_refreshed``).
Each remembered digest carries a lower bound on its object's mtime (the time this
store wrote it, the mtime a HEAD reported, or "unknown" for objects it only read), and
a remembered digest skips the request only when that bound is not older than
``refresh_before``. So the common path -- blocks written in this session -- costs no
HEAD; only dedup hits on objects from before the session do.

Reads are verified (never wrong bytes) and, when a :class:`ChunkCache` is given, served
from and filled into the local cache. A missing object raises the store's
``ObjectNotFound``; a damaged one raises ``CorruptObject`` and is counted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from strata.chunks import codec, metrics
from strata.chunks.cache import ChunkCache
from strata.chunks.hashing import CHUNK_SIZE, check_digest, content_hash
from strata.chunks.layout import chunk_key, tree_key
from strata.errors import CorruptObject, ObjectNotFound, PreconditionFailed, StrataError
from strata.store.base import Store

log = logging.getLogger(__name__)

_CHUNK = "chunk"
_TREE = "tree"
_KEY_OF = {_CHUNK: chunk_key, _TREE: tree_key}

#: the mtime bound of a remembered object whose age this store does not know (it only
#: read it): older than any ``refresh_before``, so a put of it always asks the store
_UNKNOWN_AGE = float("-inf")


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
    objects_refreshed: int = 0  # dedup hits on objects older than refresh_before, rewritten
    bytes_refreshed: int = 0  # encoded bytes of those rewrites
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
        clock: Callable[[], float] = time.time,
        refresh_before: float | None = None,
    ) -> None:
        """``remember`` bounds the set of digests known to be present (0 disables it).

        ``clock`` timestamps this store's own writes (wall-clock seconds, comparable to
        store mtimes); ``refresh_before`` defaults to its reading now (see the module
        docstring and :meth:`set_refresh_before`).
        """
        self.store = store
        self.cache = cache
        self.compress = compress
        self.level = level
        self.min_saving = min_saving
        self._remember = remember
        self._clock = clock
        self._refresh_before = clock() if refresh_before is None else refresh_before
        # (kind, digest) -> a lower bound on the object's store mtime (_UNKNOWN_AGE if
        # this store only read it), in LRU order
        self._present: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    # --- the writer session this store serves -----------------------------------------

    @property
    def refresh_before(self) -> float:
        """Dedup hits on objects with an older mtime rewrite them (module docstring)."""
        return self._refresh_before

    def set_refresh_before(self, when: float | None = None) -> None:
        """Start protecting dedup targets from ``when`` on (default: this store's now).

        Call it when the writer claim this store uploads for is acquired, with the
        claim's ``since`` or any later time (a later time only costs extra refreshes):
        GC protects the objects of a live claim whose mtime is at or after its
        ``since``, so a dedup target older than that must be refreshed to be kept. The
        value only moves forward: if several sessions share this store, the latest
        start is the one that covers them all.
        """
        now = self._clock() if when is None else when
        with self._lock:
            self._refresh_before = max(self._refresh_before, now)

    # --- writes ----------------------------------------------------------------------

    def put_chunk(
        self, data: bytes | bytearray | memoryview, *, expected: str = "", verify: bool = True
    ) -> str:
        """Store a file block (at most CHUNK_SIZE bytes); return its digest.

        ``expected``, when given, is the digest the caller computed earlier (e.g. when
        the block was staged); a mismatch means the staged data changed underneath and
        raises StaleData rather than storing a block nobody references.
        ``verify=False`` (with ``expected``) trusts it without hashing again: for
        immutable bytes the caller hashed itself; a wrong digest would be stored under
        the wrong key, which every reader rejects as corrupt.
        """
        if len(data) > CHUNK_SIZE:
            raise ValueError(f"chunk of {len(data)} bytes exceeds CHUNK_SIZE ({CHUNK_SIZE})")
        if not verify and not expected:
            raise ValueError("put_chunk(verify=False) needs the expected digest")
        return self._put(_CHUNK, data, expected, verify)

    def put_tree(self, data: bytes | bytearray | memoryview) -> str:
        """Store a tree object (a directory or block-list page); return its digest."""
        return self._put(_TREE, data, "", True)

    def _put(
        self, kind: str, data: bytes | bytearray | memoryview, expected: str, verify: bool
    ) -> str:
        digest = content_hash(data) if verify else expected
        key = _KEY_OF[kind](digest)
        if expected and digest != expected:
            raise StaleData(expected, digest)
        bound = self._known(kind, digest)
        if bound is not None:
            # Known present. Written (or seen young) in this session: no request at all.
            # Otherwise it may be an old object nobody references any more: freshen it.
            if bound >= self._refresh_before or self._freshen(kind, key, digest, data, None):
                self._dedup(kind)
            return digest
        blob = self._encode(data)
        started = self._clock()
        try:
            self.store.put(key, blob, if_absent=True)
        except PreconditionFailed:
            if self._freshen(kind, key, digest, data, blob):
                self._dedup(kind)
            return digest
        self._count(objects_written=1, bytes_written=len(blob), plaintext_written=len(data))
        metrics.WRITTEN_OBJECTS.labels(kind).inc()
        metrics.WRITTEN_BYTES.labels(kind).inc(len(blob))
        self._remember_present(kind, digest, started)
        return digest

    def _freshen(
        self,
        kind: str,
        key: str,
        digest: str,
        data: bytes | bytearray | memoryview,
        blob: bytes | None,
    ) -> bool:
        """Make the present object ``key`` young enough that GC keeps it for this session.

        HEAD it: an mtime at or after ``refresh_before`` is protected by the live claim
        and is only remembered. An older one (or one gone since this store learned of
        it, i.e. swept) is written again, unconditionally, with the same encoded bytes:
        the content address guarantees the plaintext is identical, so the overwrite
        changes nothing but the mtime (or re-creates what was swept). Returns False
        only in that last case (the object was not there: not a dedup hit).
        """
        try:
            mtime = self.store.head(key).mtime
        except ObjectNotFound:
            mtime = None
        if mtime is not None and mtime >= self._refresh_before:
            self._remember_present(kind, digest, mtime)
            return True
        blob = self._encode(data) if blob is None else blob
        started = self._clock()
        self.store.put(key, blob)
        if mtime is None:
            self._count(objects_written=1, bytes_written=len(blob), plaintext_written=len(data))
            metrics.WRITTEN_OBJECTS.labels(kind).inc()
        else:
            self._count(objects_refreshed=1, bytes_refreshed=len(blob))
            log.debug(
                "refreshed %s (mtime %.0f, session from %.0f)", key, mtime, self._refresh_before
            )
        metrics.WRITTEN_BYTES.labels(kind).inc(len(blob))
        self._remember_present(kind, digest, started)
        return mtime is not None

    def _encode(self, data: bytes | bytearray | memoryview) -> bytes:
        return codec.encode(
            data, compress=self.compress, level=self.level, min_saving=self.min_saving
        )

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
        self._remember_present(kind, digest, _UNKNOWN_AGE)  # present, age unknown
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

    def has_chunk(self, digest: str, *, fresh: bool = False) -> bool:
        """True when chunk ``digest`` exists in the store (asks the store if unsure).

        With ``fresh``, True only if it also has an mtime at or after
        ``refresh_before`` (GC keeps it while this session's claim is live); a caller
        that gets False re-puts the block, which refreshes or re-creates it.
        """
        return self._has(_CHUNK, digest, fresh)

    def has_tree(self, digest: str, *, fresh: bool = False) -> bool:
        """True when tree ``digest`` exists in the store (``fresh``: as for has_chunk)."""
        return self._has(_TREE, digest, fresh)

    def _has(self, kind: str, digest: str, fresh: bool) -> bool:
        check_digest(digest)
        bound = self._known(kind, digest)
        if bound is not None and (not fresh or bound >= self._refresh_before):
            return True
        try:
            mtime = self.store.head(_KEY_OF[kind](digest)).mtime
        except ObjectNotFound:
            return False
        self._remember_present(kind, digest, mtime)
        return not fresh or mtime >= self._refresh_before

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

    def _known(self, kind: str, digest: str) -> float | None:
        """The remembered mtime bound of a known-present object, or None if unknown."""
        with self._lock:
            bound = self._present.get((kind, digest))
            if bound is not None:
                self._present.move_to_end((kind, digest))
            return bound

    def _remember_present(self, kind: str, digest: str, mtime_bound: float) -> None:
        """Remember ``digest`` as present with an mtime of at least ``mtime_bound``."""
        if self._remember <= 0:
            return
        with self._lock:
            old = self._present.get((kind, digest), _UNKNOWN_AGE)
            self._present[(kind, digest)] = max(old, mtime_bound)
            self._present.move_to_end((kind, digest))
            while len(self._present) > self._remember:
                self._present.popitem(last=False)
