"""Version manifests: the immutable, content-identified record of one sealed state.

Key: ``versions/<volume>/<id>`` (:func:`strata.chunks.layout.version_key`), written once
with ``if_absent`` and never rewritten (invariant 4). ``<volume>`` is the volume that
sealed the version; a fork's history continues through its source's manifests, so a
reader follows ``parent`` references, which always name the volume.

Body: canonical JSON (UTF-8, sorted keys, no whitespace, ``\\uXXXX`` escapes)::

    {"author": str,            who asked for the commit (free text, may be "")
     "created_ms": int,        Unix time in milliseconds
     "epoch": int,             the writer's fencing epoch when it committed
     "format": 1,
     "message": str,
     "parent": "VOL@ID" | null, the previous version (possibly another volume's)
     "root": HASH,             the root directory tree (strata.meta.treefmt)
     "root_attrs": ENTRY,      optional: the root directory's own mode, owner, times and
                               xattrs, as a tree entry object with name "" and no "h"
                               (absent in manifests older than the field: 0755 root:root)
     "stats": {"bytes": int, "chunks": int, "dirs": int, "files": int},
     "volume": str,            equals <volume> in the key
     "writer": str}            the claim holder that committed it

Id: the first 16 characters of the lowercase RFC 4648 base32 encoding (no padding) of
``blake3(body)``: 80 bits, alphabet ``a-z2-7``, a valid DNS-1123 label. Because the id
is derived from the bytes, a reader recomputes it and rejects a manifest whose body does
not match its key (:class:`~strata.errors.CorruptObject`): nothing can rewrite a version
unnoticed. ``created_ms`` and ``parent`` in the body make ids unique per commit.
"""

from __future__ import annotations

import base64
import errno
import json
from dataclasses import dataclass, field, replace
from typing import Any

import blake3

from strata.chunks.layout import version_key
from strata.errors import (
    CorruptObject,
    ObjectNotFound,
    PreconditionFailed,
    StrataError,
    VersionNotFound,
)
from strata.meta.entry import Entry, Kind
from strata.meta.names import format_ref
from strata.meta.treefmt import canonical_json, entry_from_obj, entry_to_obj
from strata.store.base import Store

MANIFEST_FORMAT = 1
ID_LENGTH = 16


class VersionInUse(StrataError):
    """A version cannot be deleted: a head or another volume's history needs it."""

    errno = errno.EBUSY


@dataclass(frozen=True)
class Stats:
    """Size of a sealed tree: plaintext bytes, regular files, directories, chunks."""

    bytes: int = 0
    files: int = 0
    dirs: int = 0
    chunks: int = 0


@dataclass(frozen=True)
class Version:
    """One sealed version (the decoded manifest plus its id)."""

    id: str
    volume: str
    root: str
    parent: str | None
    message: str = ""
    author: str = ""
    writer: str = ""
    epoch: int = 0
    created: float = 0.0  # seconds since the epoch (stored in ms)
    stats: Stats = field(default_factory=Stats)
    #: the root directory's attributes (name "", kind DIR, no tree); None: the defaults
    root_attrs: Entry | None = None

    @property
    def ref(self) -> str:
        """``volume@id``: the one way to name this version."""
        return format_ref(self.volume, self.id)


def manifest_body(
    *,
    volume: str,
    root: str,
    parent: str | None,
    message: str,
    author: str,
    writer: str,
    epoch: int,
    created: float,
    stats: Stats,
    root_attrs: Entry | None = None,
) -> bytes:
    """The canonical manifest bytes (the id is derived from them)."""
    obj: dict[str, Any] = {
        "author": author,
        "created_ms": round(created * 1000),
        "epoch": epoch,
        "format": MANIFEST_FORMAT,
        "message": message,
        "parent": parent,
        "root": root,
        "stats": {
            "bytes": stats.bytes,
            "chunks": stats.chunks,
            "dirs": stats.dirs,
            "files": stats.files,
        },
        "volume": volume,
        "writer": writer,
    }
    if root_attrs is not None:
        obj["root_attrs"] = entry_to_obj(replace(root_attrs, name="", kind=Kind.DIR, tree=""))
    return canonical_json(obj)


def version_id(body: bytes) -> str:
    """The id of a manifest body: 16 base32 characters of its blake3 digest."""
    digest = blake3.blake3(body).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:ID_LENGTH]


def decode_manifest(volume: str, vid: str, body: bytes) -> Version:
    """Parse and verify a manifest read from ``versions/<volume>/<vid>``."""
    key = version_key(volume, vid)
    if version_id(body) != vid:
        raise CorruptObject(key, "manifest does not hash to its version id")
    try:
        o = json.loads(body)
        if o["format"] != MANIFEST_FORMAT:
            raise ValueError(f"unknown manifest format {o['format']!r}")
        if o["volume"] != volume:
            raise ValueError(f"manifest names volume {o['volume']!r}")
        s = o["stats"]
        return Version(
            id=vid,
            volume=volume,
            root=str(o["root"]),
            parent=o["parent"],
            message=str(o["message"]),
            author=str(o["author"]),
            writer=str(o["writer"]),
            epoch=int(o["epoch"]),
            created=int(o["created_ms"]) / 1000,
            stats=Stats(int(s["bytes"]), int(s["files"]), int(s["dirs"]), int(s["chunks"])),
            root_attrs=_root_attrs(o.get("root_attrs")),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptObject(key, f"not a version manifest: {exc}") from exc


def _root_attrs(o: Any) -> Entry | None:
    if o is None:
        return None
    e = entry_from_obj(o)
    if e.kind != Kind.DIR or e.name or e.tree:
        raise ValueError("root_attrs is not the attributes of a directory")
    return e


def write_manifest(store: Store, volume: str, body: bytes) -> Version:
    """Store a manifest once (``if_absent``); writing the same body again is a no-op."""
    vid = version_id(body)
    key = version_key(volume, vid)
    try:
        store.put(key, body, if_absent=True)
    except PreconditionFailed:
        if store.get(key) != body:
            raise CorruptObject(key, "a different manifest holds this version id") from None
    return decode_manifest(volume, vid, body)


def read_manifest(store: Store, volume: str, vid: str) -> Version:
    """Read and verify one manifest; VersionNotFound if it does not exist."""
    try:
        body = store.get(version_key(volume, vid))
    except ObjectNotFound:
        raise VersionNotFound(volume, vid) from None
    return decode_manifest(volume, vid, body)
