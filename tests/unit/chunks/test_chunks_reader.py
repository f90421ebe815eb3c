"""BlockReader: ranges across aligned blocks, holes, short blocks, parallel fetches."""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from strata.chunks.hashing import CHUNK_SIZE
from strata.chunks.layout import chunk_key
from strata.chunks.objects import ContentStore
from strata.chunks.reader import BlockReader, file_size
from strata.errors import CorruptObject, StoreUnavailable
from strata.meta.entry import BlockRef
from strata.store.base import StoreWrapper
from strata.store.memory import MemoryStore

if TYPE_CHECKING:
    from conftest import ProbeStore

TAIL = 1000


@pytest.fixture
def content(probe: ProbeStore) -> ContentStore:
    return ContentStore(probe, compress=False)


@pytest.fixture
def reader(content: ContentStore) -> Iterator[BlockReader]:
    with BlockReader(content, max_parallel=4) as r:
        yield r


def write_file(cs: ContentStore, data: bytes) -> list[BlockRef]:
    """Cut ``data`` into aligned blocks and store them, as the writer does."""
    return [
        BlockRef(cs.put_chunk(data[i : i + CHUNK_SIZE]), len(data[i : i + CHUNK_SIZE]))
        for i in range(0, len(data), CHUNK_SIZE)
    ]


@pytest.fixture(scope="module")
def data() -> bytes:
    return os.urandom(2 * CHUNK_SIZE + TAIL)


def test_reads_across_block_boundaries_and_the_short_last_block(
    reader: BlockReader, content: ContentStore, data: bytes
) -> None:
    blocks = write_file(content, data)
    assert [b.size for b in blocks] == [CHUNK_SIZE, CHUNK_SIZE, TAIL]
    assert file_size(blocks) == len(data)
    for offset, size in [
        (0, 10),
        (CHUNK_SIZE - 10, 20),  # straddles block 0/1
        (CHUNK_SIZE - 1, CHUNK_SIZE + 2),  # touches all three blocks
        (2 * CHUNK_SIZE, TAIL),  # exactly the last block
        (0, len(data)),
    ]:
        assert reader.read(blocks, offset, size) == data[offset : offset + size]


def test_reads_stop_at_end_of_file(reader: BlockReader, content: ContentStore, data: bytes) -> None:
    blocks = write_file(content, data)
    assert reader.read(blocks, len(data) - 5, 100) == data[-5:]
    assert reader.read(blocks, len(data), 100) == b""
    assert reader.read(blocks, len(data) + 10, 100) == b""
    assert reader.read([], 0, 100) == b""
    with pytest.raises(ValueError):
        reader.read(blocks, -1, 10)


def test_holes_read_as_zeros_and_are_never_fetched(
    reader: BlockReader, content: ContentStore, probe: ProbeStore
) -> None:
    last = b"end" * 100
    blocks = [BlockRef("", CHUNK_SIZE), BlockRef(content.put_chunk(last), len(last))]
    got = reader.read(blocks, CHUNK_SIZE - 4, 10)
    assert got == bytes(4) + last[:6]
    assert probe.calls["get"] == 1
    assert reader.read([BlockRef("", 50)], 10, 100) == bytes(40)  # trailing hole


def test_short_middle_block_is_zero_filled_to_the_next_block(
    reader: BlockReader, content: ContentStore
) -> None:
    blocks = [BlockRef(content.put_chunk(b"abc"), 3), BlockRef(content.put_chunk(b"xyz"), 3)]
    assert file_size(blocks) == CHUNK_SIZE + 3
    assert reader.read(blocks, 0, 5) == b"abc\0\0"
    assert reader.read(blocks, CHUNK_SIZE - 2, 5) == b"\0\0xyz"


def test_block_list_that_disagrees_with_the_chunk_is_corrupt(
    reader: BlockReader, content: ContentStore
) -> None:
    ref = BlockRef(content.put_chunk(b"12345"), 9)
    with pytest.raises(CorruptObject, match="block list says 9"):
        reader.read([ref], 0, 9)


def test_blocks_of_one_read_are_fetched_in_parallel(
    content: ContentStore, memory: MemoryStore, data: bytes
) -> None:
    blocks = write_file(content, data)
    barrier = threading.Barrier(3, timeout=10)

    class Rendezvous(StoreWrapper):
        def get(self, key: str) -> bytes:
            barrier.wait()  # breaks (fails the read) unless all three GETs overlap
            return super().get(key)

    with BlockReader(ContentStore(Rendezvous(memory)), max_parallel=3) as r:
        assert r.read(blocks, 0, len(data)) == data


def test_prefetched_blocks_are_not_fetched_again(
    reader: BlockReader, content: ContentStore, probe: ProbeStore, data: bytes
) -> None:
    blocks = write_file(content, data)
    probe.gate.clear()
    reader.prefetch(blocks, [1, 2, 7, -1])  # out-of-range indexes are ignored
    probe.wait_in_flight(2)
    probe.gate.set()
    assert reader.read(blocks, CHUNK_SIZE, CHUNK_SIZE + TAIL) == data[CHUNK_SIZE:]
    assert probe.calls["get"] == 2


def test_a_failed_fetch_is_retried_by_the_next_read(
    reader: BlockReader, content: ContentStore, probe: ProbeStore
) -> None:
    blocks = write_file(content, b"payload")
    probe.get_errors.append(StoreUnavailable("store down"))
    with pytest.raises(StoreUnavailable):
        reader.read(blocks, 0, 7)
    assert reader.read(blocks, 0, 7) == b"payload"


def test_block_missing_from_the_store_is_an_io_error(
    reader: BlockReader, content: ContentStore, memory: MemoryStore
) -> None:
    blocks = write_file(content, b"gone soon")
    memory.delete(chunk_key(blocks[0].hash))
    with pytest.raises(CorruptObject, match="store lacks it") as err:
        reader.read(blocks, 0, 9)
    assert err.value.errno == errno.EIO
