"""Strata engine layer: chunks (see docs/architecture.md)."""

from strata.chunks.cache import CacheStats, ChunkCache
from strata.chunks.codec import decode, encode
from strata.chunks.hashing import CHUNK_SIZE, content_hash
from strata.chunks.objects import ContentStats, ContentStore, StaleData
from strata.chunks.reader import Block, BlockReader, file_size
from strata.chunks.uploader import Uploader

__all__ = [
    "CHUNK_SIZE",
    "Block",
    "BlockReader",
    "CacheStats",
    "ChunkCache",
    "ContentStats",
    "ContentStore",
    "StaleData",
    "Uploader",
    "content_hash",
    "decode",
    "encode",
    "file_size",
]
