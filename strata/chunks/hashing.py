"""Content addresses and the fixed block size.

Every chunk and tree object is named by the blake3 digest of its *plaintext* (before
compression), as 64 lowercase hex characters. Naming by plaintext means the address
does not change when the codec does, and identical data written by any volume, fork or
writer lands on one key (dedup for free).

Files are cut into fixed-size, offset-aligned blocks: block ``i`` covers
``[i * CHUNK_SIZE, (i + 1) * CHUNK_SIZE)``. Alignment (rather than content-defined
cutting) is what a writable filesystem needs: a random write touches exactly the blocks
under it, and reading offset ``o`` needs block ``o // CHUNK_SIZE`` without a lookup.
"""

from __future__ import annotations

import re

import blake3

#: size of every file block except possibly a file's last one
CHUNK_SIZE = 4 * 1024 * 1024

#: length of a hex digest (blake3's default 32-byte output)
DIGEST_LEN = 64

# Above this size blake3's multithreaded hashing pays for its thread hand-off.
_PARALLEL_FROM = 1024 * 1024

_DIGEST_RE = re.compile(r"[0-9a-f]{64}")


def content_hash(data: bytes | bytearray | memoryview) -> str:
    """The content address of ``data``: its blake3 digest as 64 lowercase hex chars."""
    threads = blake3.blake3.AUTO if len(data) >= _PARALLEL_FROM else 1
    return blake3.blake3(data, max_threads=threads).hexdigest()


def is_digest(value: str) -> bool:
    """True when ``value`` is a well-formed content address (not a path, not uppercase)."""
    return _DIGEST_RE.fullmatch(value) is not None


def check_digest(value: str) -> str:
    """Return ``value`` if it is a well-formed digest, else raise ValueError.

    Digests become store keys and cache file names, so a malformed one (a caller bug or
    an unverified input) must stop here rather than address some other object.
    """
    if not is_digest(value):
        raise ValueError(f"{value!r} is not a content digest (64 lowercase hex characters)")
    return value
