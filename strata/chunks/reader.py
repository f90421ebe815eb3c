"""BlockReader: byte ranges of a file from its list of aligned blocks.

A file's data is a sequence of blocks (``strata.meta.entry.BlockRef``: ``hash``,
``size``); block ``i`` starts at ``i * CHUNK_SIZE``. A block with an empty hash is a
hole and reads as zeros. Every block but the last is normally CHUNK_SIZE long; a
shorter one in the middle is zero-filled up to the next block's start (sparse tail),
so the file's length is ``(n - 1) * CHUNK_SIZE + blocks[-1].size``.

A block the list names but the store lacks, or whose length disagrees with the list,
raises CorruptObject (EIO): the version is damaged, and ENOENT from a read() would
mislead.

Blocks needed by one read are fetched in parallel. Fetches are kept as futures in a
small LRU: a read of a block already being fetched (by ``prefetch`` or another
thread's read) waits for that fetch instead of starting a second one, and recently
read blocks are served from memory -- sequential reads of small sizes would otherwise
re-verify the same 4 MiB block for every call.

This module takes any object with ``hash`` and ``size`` rather than importing
``strata.meta`` (the chunk layer never looks up).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from strata.chunks.hashing import CHUNK_SIZE
from strata.chunks.layout import chunk_key
from strata.chunks.objects import ContentStore
from strata.errors import CorruptObject, ObjectNotFound


class Block(Protocol):
    """What the reader needs of a block reference (``strata.meta.entry.BlockRef``)."""

    @property
    def hash(self) -> str: ...

    @property
    def size(self) -> int: ...


def file_size(blocks: Sequence[Block]) -> int:
    """The length in bytes of a file made of ``blocks``."""
    return (len(blocks) - 1) * CHUNK_SIZE + blocks[-1].size if blocks else 0


class BlockReader:
    """Read byte ranges over block lists, fetching blocks in parallel."""

    def __init__(
        self, content: ContentStore, max_parallel: int = 8, *, keep_blocks: int = 16
    ) -> None:
        """``keep_blocks`` bounds the recently fetched blocks held in memory."""
        if max_parallel < 1:
            raise ValueError(f"max_parallel must be >= 1, got {max_parallel}")
        self.content = content
        self._keep = max(keep_blocks, 0)
        self._pool = ThreadPoolExecutor(max_parallel, thread_name_prefix="strata-read")
        self._fetches: OrderedDict[str, Future[bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def read(self, blocks: Sequence[Block], offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset``; short (or empty) only at end of file."""
        if offset < 0 or size < 0:
            raise ValueError(f"bad read range: offset={offset} size={size}")
        end = min(offset + size, file_size(blocks))
        if end <= offset:
            return b""
        first, last = offset // CHUNK_SIZE, (end - 1) // CHUNK_SIZE
        wanted = {i: self._fetch(blocks[i]) for i in range(first, last + 1) if blocks[i].hash}
        out = bytearray(end - offset)  # holes stay zero
        for i, fut in wanted.items():
            data = self._checked(blocks[i], fut.result())
            start = i * CHUNK_SIZE
            lo, hi = max(offset, start), min(end, start + len(data))
            if hi > lo:
                out[lo - offset : hi - offset] = memoryview(data)[lo - start : hi - start]
        return bytes(out)

    def prefetch(self, blocks: Sequence[Block], indexes: Iterable[int]) -> None:
        """Start fetching ``blocks[i]`` for each index in range (read-ahead); no wait.

        Errors are not raised here; a later read of the block fetches it again.
        """
        for i in indexes:
            if 0 <= i < len(blocks) and blocks[i].hash:
                self._fetch(blocks[i])

    def close(self) -> None:
        """Stop the fetch threads (waits for running fetches) and drop held blocks."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            self._fetches.clear()

    def __enter__(self) -> BlockReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals -------------------------------------------------------------------

    def _fetch(self, block: Block) -> Future[bytes]:
        with self._lock:
            fut = self._fetches.get(block.hash)
            if fut is not None and not _failed(fut):
                self._fetches.move_to_end(block.hash)
                return fut
            fut = self._pool.submit(self._get, block.hash)
            self._fetches[block.hash] = fut
            self._trim()
        fut.add_done_callback(lambda f, h=block.hash: self._forget_failed(h, f))
        return fut

    def _forget_failed(self, digest: str, fut: Future[bytes]) -> None:
        # A failed fetch must not be remembered: the next read retries it. (_fetch also
        # skips failed futures, since this callback may run after the waiter woke.)
        if _failed(fut):
            with self._lock:
                if self._fetches.get(digest) is fut:
                    del self._fetches[digest]

    def _trim(self) -> None:
        """Drop the oldest finished fetches beyond ``keep_blocks`` (lock held)."""
        excess = len(self._fetches) - self._keep
        for digest in list(self._fetches):
            if excess <= 0:
                break
            if self._fetches[digest].done():
                del self._fetches[digest]
                excess -= 1

    def _get(self, digest: str) -> bytes:
        try:
            return self.content.get_chunk(digest)
        except ObjectNotFound as exc:
            raise CorruptObject(
                chunk_key(digest), "a file references this block but the store lacks it"
            ) from exc

    @staticmethod
    def _checked(block: Block, data: bytes) -> bytes:
        if len(data) != block.size or block.size > CHUNK_SIZE:
            raise CorruptObject(
                chunk_key(block.hash),
                f"block holds {len(data)} bytes but the file's block list says {block.size}",
            )
        return data


def _failed(fut: Future[bytes]) -> bool:
    return fut.done() and (fut.cancelled() or fut.exception() is not None)
