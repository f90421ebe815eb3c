"""Prometheus metrics of the chunk layer (process-wide, on the default registry).

Counters are shared by every ContentStore/ChunkCache/Uploader in the process, which is
what a scrape of one FUSE daemon or node plugin wants; per-instance numbers for tests
and commit stats live on the objects themselves (``ContentStore.stats()``,
``ChunkCache.stats()``). ``kind`` is ``chunk`` or ``tree``.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CACHE_HITS = Counter("strata_cache_hits", "Chunk cache lookups served from local disk")
CACHE_MISSES = Counter("strata_cache_misses", "Chunk cache lookups that went to the store")
CACHE_EVICTIONS = Counter("strata_cache_evictions", "Files evicted from the chunk cache")
CACHE_CORRUPT = Counter(
    "strata_cache_corrupt", "Cache files that failed verification and were discarded"
)

READ_OBJECTS = Counter("strata_chunks_read_objects", "Objects fetched from the store", ["kind"])
READ_BYTES = Counter("strata_chunks_read_bytes", "Encoded bytes fetched from the store", ["kind"])
WRITTEN_OBJECTS = Counter(
    "strata_chunks_written_objects", "Objects actually written to the store", ["kind"]
)
WRITTEN_BYTES = Counter(
    "strata_chunks_written_bytes", "Encoded bytes actually written to the store", ["kind"]
)
DEDUP_HITS = Counter(
    "strata_chunks_dedup_hits", "Writes skipped because the object already existed", ["kind"]
)
CORRUPT_OBJECTS = Counter(
    "strata_chunks_corrupt_objects", "Objects whose bytes failed verification", ["kind"]
)

UPLOAD_QUEUE_DEPTH = Gauge(
    "strata_upload_queue_depth", "Blocks submitted for upload and not yet in the store"
)
UPLOADED_BLOCKS = Counter(
    "strata_chunks_uploaded_blocks", "Blocks the uploader got into the store (dedup hits included)"
)
UPLOADED_BYTES = Counter(
    "strata_chunks_uploaded_bytes", "Plaintext bytes of the blocks the uploader got into the store"
)
UPLOAD_ERRORS = Counter("strata_chunks_upload_errors", "Block uploads that failed")
