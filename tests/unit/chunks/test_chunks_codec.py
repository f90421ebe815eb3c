"""The blob encoding: round trips, the compression choice, and every corruption."""

from __future__ import annotations

import os

import pytest
import zstandard

from strata.chunks import codec
from strata.chunks.hashing import CHUNK_SIZE, check_digest, content_hash, is_digest
from strata.errors import CorruptObject

TEXT = b"the quick brown fox jumps over the lazy dog\n" * 2000
NOISE = os.urandom(64 * 1024)


def test_content_hash_is_blake3_hex() -> None:
    # blake3 of the empty string, from the blake3 reference test vectors
    assert content_hash(b"") == "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    big = os.urandom(CHUNK_SIZE)
    assert content_hash(big) == content_hash(memoryview(big)) == content_hash(bytearray(big))
    assert is_digest(content_hash(TEXT))


@pytest.mark.parametrize("bad", ["", "ab", "A" * 64, "g" * 64, "../" + "a" * 61, "a" * 65])
def test_malformed_digests_are_refused(bad: str) -> None:
    assert not is_digest(bad)
    with pytest.raises(ValueError, match="not a content digest"):
        check_digest(bad)


@pytest.mark.parametrize("data", [b"", b"x", TEXT, NOISE])
@pytest.mark.parametrize("compress", [True, False])
def test_roundtrip(data: bytes, compress: bool) -> None:
    blob = codec.encode(data, compress=compress)
    assert blob[:4] == b"STRB"
    assert codec.decode(blob, content_hash(data)) == data


def test_compresses_only_when_it_saves_space() -> None:
    assert codec.codec_of(codec.encode(TEXT)) == "zstd"
    assert len(codec.encode(TEXT)) < len(TEXT) // 10
    assert codec.codec_of(codec.encode(NOISE)) == "raw"  # incompressible
    assert codec.encode(NOISE) == b"STRB\x00" + NOISE
    assert codec.codec_of(codec.encode(b"ab")) == "raw"  # zstd framing costs more
    assert codec.codec_of(codec.encode(TEXT, compress=False)) == "raw"
    # a saving below the configured threshold is not worth decompressing for
    half_noise = NOISE[:32768] + bytes(32768)
    assert codec.codec_of(codec.encode(half_noise)) == "zstd"
    assert codec.codec_of(codec.encode(half_noise, min_saving=0.6)) == "raw"


def _expect_corrupt(blob: bytes, digest: str, match: str) -> None:
    with pytest.raises(CorruptObject, match=match) as err:
        codec.decode(blob, digest, key="chunks/ab/thing")
    assert "chunks/ab/thing" in str(err.value)
    assert err.value.errno == 5  # EIO at the filesystem


def test_truncated_or_bad_headers_are_corrupt() -> None:
    digest = content_hash(TEXT)
    blob = codec.encode(TEXT)
    _expect_corrupt(b"", digest, "shorter than the blob header")
    _expect_corrupt(blob[:4], digest, "shorter than the blob header")
    _expect_corrupt(b"XTRB" + blob[4:], digest, "bad magic")
    _expect_corrupt(b"STRB\x07" + blob[5:], digest, "unknown codec byte 0x07")


def test_damaged_zstd_payloads_are_corrupt() -> None:
    digest = content_hash(TEXT)
    blob = codec.encode(TEXT)
    assert codec.codec_of(blob) == "zstd"
    _expect_corrupt(blob[:-7], digest, "does not decompress")  # truncated frame
    _expect_corrupt(blob + b"junk", digest, "does not decompress")  # trailing bytes
    _expect_corrupt(b"STRB\x01" + b"\x00" * 40, digest, "bad zstd frame header")
    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0xFF
    with pytest.raises(CorruptObject):  # either zstd notices or the hash does
        codec.decode(bytes(flipped), digest)


def test_zstd_frame_without_size_or_claiming_too_much_is_corrupt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    digest = content_hash(TEXT)
    unsized = zstandard.ZstdCompressor(write_content_size=False).compress(TEXT)
    _expect_corrupt(b"STRB\x01" + unsized, digest, "does not record its decompressed size")
    monkeypatch.setattr(codec, "MAX_PLAINTEXT_SIZE", len(TEXT) - 1)
    sized = zstandard.ZstdCompressor().compress(TEXT)
    _expect_corrupt(b"STRB\x01" + sized, digest, "over the")


def test_wrong_plaintext_is_corrupt_never_returned() -> None:
    digest = content_hash(TEXT)
    other = TEXT.replace(b"fox", b"cat")
    _expect_corrupt(codec.encode(other, compress=False), digest, "content hash is")
    _expect_corrupt(codec.encode(other), digest, "content hash is")


def test_encode_refuses_blobs_it_could_not_read_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "MAX_PLAINTEXT_SIZE", 10)
    with pytest.raises(ValueError, match="exceeds"):
        codec.encode(b"x" * 11)
