"""Every object key in a store is made here, and only here (docs/format.md).

::

    strata.json                   format marker: {"format": 1, ...}
    chunks/<h[:2]>/<h>            immutable file data block, h = blake3(plaintext)
    trees/<h[:2]>/<h>             immutable tree object (directory page, block-list page)
    versions/<volume>/<id>        immutable version manifest
    heads/<volume>                the one mutable object per volume (CAS only)
    requests/<volume>/<id>        a seal request for the volume's live writer
    requests/<volume>/<id>.done   its answer (the version id, or an error)

The two-character fan-out keeps local directories small and spreads S3 key prefixes.
"""

from __future__ import annotations

FORMAT_KEY = "strata.json"
FORMAT_VERSION = 1

CHUNKS = "chunks/"
TREES = "trees/"
VERSIONS = "versions/"
HEADS = "heads/"
REQUESTS = "requests/"


def chunk_key(digest: str) -> str:
    return f"{CHUNKS}{digest[:2]}/{digest}"


def tree_key(digest: str) -> str:
    return f"{TREES}{digest[:2]}/{digest}"


def version_key(volume: str, version_id: str) -> str:
    return f"{VERSIONS}{volume}/{version_id}"


def versions_prefix(volume: str) -> str:
    return f"{VERSIONS}{volume}/"


def head_key(volume: str) -> str:
    return f"{HEADS}{volume}"


def request_key(volume: str, request_id: str) -> str:
    return f"{REQUESTS}{volume}/{request_id}"


def response_key(volume: str, request_id: str) -> str:
    return f"{REQUESTS}{volume}/{request_id}.done"


def requests_prefix(volume: str) -> str:
    return f"{REQUESTS}{volume}/"


def digest_of(key: str) -> str:
    """The content hash at the end of a ``chunks/`` or ``trees/`` key."""
    return key.rsplit("/", 1)[-1]
