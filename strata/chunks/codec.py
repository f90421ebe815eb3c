"""The on-store encoding of a content-addressed blob (chunks and trees alike).

Byte format (all objects under ``chunks/`` and ``trees/``)::

    offset  size  field
    0       4     magic: the ASCII bytes ``STRB`` (0x53 0x54 0x52 0x42)
    4       1     codec: 0x00 = raw, 0x01 = zstd
    5       n     payload

* raw (0x00): the payload *is* the plaintext.
* zstd (0x01): the payload is exactly one zstd frame (RFC 8878) whose header records
  the decompressed size (``Frame_Content_Size``); no trailing bytes are allowed. The
  frame checksum is not used: the content address already covers the plaintext.

The object's key is ``blake3(plaintext)`` (see :mod:`strata.chunks.hashing`), never a
hash of the encoded bytes, so the same data has one address whatever the codec.

A reader must reject (raise :class:`strata.errors.CorruptObject`) an object with a
short header, an unknown magic or codec, a zstd payload that does not decode, has no
recorded size, declares more than ``MAX_PLAINTEXT_SIZE`` bytes, or carries trailing
data, and any object whose plaintext does not hash to its key. It never returns bytes
it could not verify.

The writer compresses only when it pays: the zstd form is stored when it is smaller
than the raw one by at least ``min_saving`` (a fraction of the plaintext size);
otherwise the raw form is stored, which also keeps already-compressed data (images,
archives, model weights) from being decompressed on every read for nothing. A blob of
1 MiB or more is first probed with a 64 KiB sample spread over it: if the sample does
not compress, the blob is stored raw without compressing it all.
"""

from __future__ import annotations

import hmac
import threading

import zstandard

from strata.chunks.hashing import content_hash
from strata.errors import CorruptObject

MAGIC = b"STRB"
RAW = 0x00
ZSTD = 0x01
HEADER_SIZE = len(MAGIC) + 1

#: largest plaintext a blob may hold; bounds the memory a hostile zstd header can claim
MAX_PLAINTEXT_SIZE = 64 * 1024 * 1024

DEFAULT_LEVEL = 3
DEFAULT_MIN_SAVING = 0.0

# Incompressibility probe (see _looks_incompressible): blobs from _PROBE_FROM bytes on.
_PROBE_FROM = 1024 * 1024
_PROBE_SLICE = 8 * 1024
_PROBE_SLICES = 8
_PROBE_KEEP = 0.98  # a sample saving less than 2% means "store raw"

_CODEC_NAMES = {RAW: "raw", ZSTD: "zstd"}

# zstd (de)compression contexts are not thread-safe; one per thread is cheap to reuse.
_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    cache: dict[int, zstandard.ZstdCompressor] = _local.__dict__.setdefault("c", {})
    if level not in cache:
        cache[level] = zstandard.ZstdCompressor(
            level=level, write_content_size=True, write_checksum=False
        )
    return cache[level]


def _decompressor() -> zstandard.ZstdDecompressor:
    if not hasattr(_local, "d"):
        _local.d = zstandard.ZstdDecompressor()
    return _local.d


def encode(
    data: bytes | bytearray | memoryview,
    *,
    compress: bool = True,
    level: int = DEFAULT_LEVEL,
    min_saving: float = DEFAULT_MIN_SAVING,
) -> bytes:
    """Encode plaintext for the store: header + raw or zstd payload, whichever is kept.

    ``min_saving`` is the fraction of the plaintext size compression must save for the
    zstd form to be chosen (0.0 = any saving at all).
    """
    if len(data) > MAX_PLAINTEXT_SIZE:
        raise ValueError(
            f"blob of {len(data)} bytes exceeds the {MAX_PLAINTEXT_SIZE}-byte object limit"
        )
    if compress and data and not _looks_incompressible(data, level):
        packed = _compressor(level).compress(data)
        if len(packed) < len(data) * (1.0 - min_saving):
            return MAGIC + bytes((ZSTD,)) + packed
    return MAGIC + bytes((RAW,)) + bytes(data)


def _looks_incompressible(data: bytes | bytearray | memoryview, level: int) -> bool:
    """True when evenly spread samples of a big blob do not compress at all.

    Compressing 4 MiB of random-looking data (already-compressed files, encrypted or
    random data) costs as much CPU as everything else on the upload path and is then
    thrown away; ``_PROBE_SLICES`` slices of ``_PROBE_SLICE`` bytes answer for a
    fraction of that. A blob only a sliver of which compresses may be stored raw.
    """
    n = len(data)
    if n < _PROBE_FROM:
        return False
    view = memoryview(data).cast("B")
    step = (n - _PROBE_SLICE) // (_PROBE_SLICES - 1)
    sample = b"".join(view[i * step : i * step + _PROBE_SLICE] for i in range(_PROBE_SLICES))
    return len(_compressor(level).compress(sample)) >= len(sample) * _PROBE_KEEP


def codec_of(blob: bytes) -> str:
    """The codec name of an encoded blob ("raw"/"zstd"), for stats and tests."""
    if len(blob) < HEADER_SIZE or blob[:4] != MAGIC or blob[4] not in _CODEC_NAMES:
        raise ValueError("not a Strata blob")
    return _CODEC_NAMES[blob[4]]


def decode(blob: bytes, digest: str, *, key: str = "") -> bytes:
    """Return the verified plaintext of ``blob``, whose content address is ``digest``.

    ``key`` names the object in error messages (defaults to the digest). Anything that
    is not exactly a valid encoding of data hashing to ``digest`` raises CorruptObject.
    """
    name = key or digest
    if len(blob) < HEADER_SIZE:
        raise CorruptObject(name, f"{len(blob)} bytes is shorter than the blob header")
    if blob[:4] != MAGIC:
        raise CorruptObject(name, f"bad magic {bytes(blob[:4])!r}, expected {MAGIC!r}")
    codec = blob[4]
    payload = memoryview(blob)[HEADER_SIZE:]
    if codec == RAW:
        plaintext = bytes(payload)
    elif codec == ZSTD:
        plaintext = _unzstd(payload, name)
    else:
        raise CorruptObject(name, f"unknown codec byte 0x{codec:02x}")
    actual = content_hash(plaintext)
    if not hmac.compare_digest(actual, digest):
        raise CorruptObject(name, f"content hash is {actual}, expected {digest}")
    return plaintext


def _unzstd(payload: memoryview, name: str) -> bytes:
    try:
        size = zstandard.frame_content_size(payload)
    except zstandard.ZstdError as exc:
        raise CorruptObject(name, f"bad zstd frame header: {exc}") from exc
    if size < 0:
        raise CorruptObject(name, "zstd frame does not record its decompressed size")
    if size > MAX_PLAINTEXT_SIZE:
        raise CorruptObject(
            name, f"zstd frame claims {size} bytes, over the {MAX_PLAINTEXT_SIZE}-byte limit"
        )
    try:
        return _decompressor().decompress(payload, allow_extra_data=False)
    except zstandard.ZstdError as exc:
        raise CorruptObject(name, f"zstd payload does not decompress: {exc}") from exc
