"""ContentStore: verified reads, idempotent dedup writes, cache use, and counting."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from prometheus_client import REGISTRY

from strata.chunks import codec
from strata.chunks.cache import ChunkCache
from strata.chunks.hashing import CHUNK_SIZE, content_hash
from strata.chunks.layout import chunk_key, tree_key
from strata.chunks.objects import ContentStore, StaleData
from strata.errors import CorruptObject, ObjectNotFound
from strata.store.memory import MemoryStore

if TYPE_CHECKING:
    from conftest import ProbeStore

DATA = b"block data " * 1000


def test_chunk_and_tree_roundtrip_under_their_layout_keys(memory: MemoryStore) -> None:
    cs = ContentStore(memory)
    c = cs.put_chunk(DATA)
    t = cs.put_tree(b"tree page")
    assert c == content_hash(DATA)
    assert [o.key for o in memory.list()] == [chunk_key(c), tree_key(t)]
    assert cs.get_chunk(c) == DATA
    assert cs.get_tree(t) == b"tree page"
    assert cs.has_chunk(c) and cs.has_tree(t)
    assert not cs.has_chunk(t) and not cs.has_tree(c)
    with pytest.raises(ObjectNotFound):
        cs.get_tree(c)


def test_stored_blob_is_compressed_and_counted(memory: MemoryStore) -> None:
    cs = ContentStore(memory)
    digest = cs.put_chunk(DATA)
    blob = memory.get(chunk_key(digest))
    assert codec.codec_of(blob) == "zstd"
    stats = cs.stats()
    assert (stats.objects_written, stats.bytes_written) == (1, len(blob))
    assert stats.plaintext_written == len(DATA)
    assert (
        codec.codec_of(
            memory.get(chunk_key(ContentStore(memory, compress=False).put_chunk(b"y" * 99)))
        )
        == "raw"
    )


def test_same_data_twice_is_one_put(probe: ProbeStore) -> None:
    cs = ContentStore(probe)
    assert cs.put_chunk(DATA) == cs.put_chunk(DATA)
    assert probe.calls["put"] == 1
    assert cs.stats().objects_written == 1
    assert cs.stats().dedup_hits == 1


def test_existing_object_is_success_not_overwrite(probe: ProbeStore) -> None:
    """Another writer stored it first: the conditional PUT loses and that is fine."""
    other = ContentStore(probe, remember=0)  # its session started before the first put
    ContentStore(probe).put_chunk(DATA)
    etag = probe.head(chunk_key(content_hash(DATA))).etag
    other.put_chunk(DATA)
    other.put_chunk(DATA)
    assert probe.calls["put"] == 3  # nothing remembered: it asks every time ...
    assert other.stats().objects_written == 0  # ... and never rewrites
    assert other.stats().dedup_hits == 2
    assert probe.head(chunk_key(content_hash(DATA))).etag == etag


def test_oversized_chunk_and_stale_expected_digest_are_refused(memory: MemoryStore) -> None:
    cs = ContentStore(memory)
    with pytest.raises(ValueError, match="exceeds CHUNK_SIZE"):
        cs.put_chunk(bytes(CHUNK_SIZE + 1))
    with pytest.raises(StaleData, match="now hashes to"):
        cs.put_chunk(b"new bytes", expected=content_hash(b"old bytes"))
    assert list(memory.list()) == []
    with pytest.raises(ValueError, match="not a content digest"):
        cs.get_chunk("../heads/vol")


def test_trusted_digest_skips_the_hash_and_a_wrong_one_reads_as_corrupt(
    memory: MemoryStore,
) -> None:
    cs = ContentStore(memory)
    with pytest.raises(ValueError, match="needs the expected digest"):
        cs.put_chunk(DATA, verify=False)
    assert cs.put_chunk(DATA, expected=content_hash(DATA), verify=False) == content_hash(DATA)
    assert ContentStore(memory).get_chunk(content_hash(DATA)) == DATA
    wrong = content_hash(b"something else")
    cs.put_chunk(DATA, expected=wrong, verify=False)  # a caller bug: stored as claimed ...
    with pytest.raises(CorruptObject):
        ContentStore(memory).get_chunk(wrong)  # ... and never served as those bytes


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda b: b[:-1], id="truncated"),
        pytest.param(lambda b: b[:3], id="truncated-header"),
        pytest.param(lambda b: b"JUNK" + b[4:], id="bad-header"),
        pytest.param(lambda b: b[:5] + bytes(len(b) - 5), id="bad-zstd"),
        pytest.param(lambda b: codec.encode(DATA.replace(b"data", b"DATA")), id="other-content"),
    ],
)
def test_damaged_chunk_raises_corrupt(memory: MemoryStore, damage) -> None:
    cs = ContentStore(memory)
    digest = cs.put_chunk(DATA)
    key = chunk_key(digest)
    memory.put(key, damage(memory.get(key)))  # overwrite behind the engine's back
    with pytest.raises(CorruptObject, match=key):
        cs.get_chunk(digest)
    assert cs.stats().corrupt == 1


def test_damaged_tree_raises_corrupt(memory: MemoryStore) -> None:
    cs = ContentStore(memory)
    digest = cs.put_tree(b"entries")
    memory.put(tree_key(digest), codec.encode(b"entrieS"))
    with pytest.raises(CorruptObject):
        cs.get_tree(digest)


def test_cache_serves_repeat_reads_and_tampering_is_refetched(
    probe: ProbeStore, tmp_path: Path
) -> None:
    cache = ChunkCache(tmp_path, 1 << 20)
    cs = ContentStore(probe, cache=cache)
    digest = ContentStore(probe).put_chunk(DATA)  # written elsewhere: not cached here
    assert cs.get_chunk(digest) == DATA
    assert cs.get_chunk(digest) == DATA
    assert probe.calls["get"] == 1
    # someone edits the cached file: it is detected, dropped, and fetched again
    (tmp_path / digest[:2] / digest).write_bytes(DATA.replace(b"block", b"BLOCK"))
    assert cs.get_chunk(digest) == DATA
    assert probe.calls["get"] == 2
    assert cache.stats().corrupt == 1
    assert cs.get_chunk(digest) == DATA
    assert probe.calls["get"] == 2


def test_corrupt_store_object_is_not_cached(memory: MemoryStore, tmp_path: Path) -> None:
    cache = ChunkCache(tmp_path, 1 << 20)
    cs = ContentStore(memory, cache=cache)
    digest = cs.put_chunk(os.urandom(100))
    memory.put(chunk_key(digest), codec.encode(b"wrong"))
    for _ in range(2):
        with pytest.raises(CorruptObject):
            cs.get_chunk(digest)
    assert digest not in cache


def test_corruption_is_counted_in_prometheus(memory: MemoryStore) -> None:
    def corrupt_total() -> float:
        sample = "strata_chunks_corrupt_objects_total"
        return REGISTRY.get_sample_value(sample, {"kind": "chunk"}) or 0.0

    cs = ContentStore(memory)
    digest = cs.put_chunk(b"abc")
    memory.put(chunk_key(digest), b"STRB\x00abd")
    before = corrupt_total()
    with pytest.raises(CorruptObject):
        cs.get_chunk(digest)
    assert corrupt_total() == before + 1


def test_a_broken_cache_directory_does_not_fail_reads(
    memory: MemoryStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cs = ContentStore(memory, cache=ChunkCache(tmp_path, 1 << 20))
    digest = ContentStore(memory).put_chunk(DATA)
    (tmp_path / digest[:2]).write_bytes(b"not a directory")  # every cache op now fails
    with caplog.at_level(logging.WARNING, logger="strata.chunks.objects"):
        assert cs.get_chunk(digest) == DATA
    assert "could not cache" in caplog.text
