"""Byte encoding of tree objects, and the content-defined page cutter.

Every object under ``trees/`` is one *node*, stored through
:class:`strata.chunks.objects.ContentStore` (so it is addressed by ``blake3`` of the
bytes below and may be zstd-compressed on the store, see :mod:`strata.chunks.codec`).
The plaintext is canonical JSON: UTF-8, keys sorted, no whitespace
(``separators=(",", ":")``), non-ASCII escaped as ``\\uXXXX``, integers only, and a
field is *omitted* when it has its default value (0, "", empty list). One node shape
therefore has exactly one byte string, so equal content has one address.

Node types (field ``t``; ``v`` is the node format, currently 1)::

    {"t":"d",  "v":1, "e":[ENTRY, ...]}           directory page: entries sorted by name
    {"t":"di", "v":1, "l":L, "c":[[FIRST, HASH, N], ...]}
                       directory index at level L >= 1: children in order, each a ``d``
                       page if L == 1, else a ``di`` node of level L-1; FIRST = first
                       name below the child, N = number of entries below it
    {"t":"b",  "v":1, "b":[[HASH, SIZE], ...]}    block-list page ("" HASH = a hole)
    {"t":"bi", "v":1, "l":L, "c":[[HASH, N, BYTES], ...]}
                       block-list index at level L: N blocks and BYTES plaintext bytes
                       below each child (``b`` pages if L == 1, else ``bi`` nodes)

ENTRY (one name in a directory; see :class:`strata.meta.entry.Entry`)::

    n  name (str, never "", ".", "..", no "/" or NUL)   k  kind: "f" | "d" | "l"
    m  permission bits (int, <= 0o7777)                 u, g  uid, gid
    mt, ct  mtime / ctime in ns                         s  size (file bytes, len(target))
    x  xattrs: [[NAME, BASE64(VALUE)], ...] sorted by NAME (standard base64, padded)
    tg symlink target                                   h  child tree hash (directories)
    b  inline block list [[HASH, SIZE], ...]            p  paged block list: root hash
    li hard-link id: entries with the same li (within one version) are one inode

Names are Python ``str``; bytes that are not UTF-8 are carried as lone surrogates
(``surrogateescape``), which the JSON escaping represents as ``\\udcXX``.

Paging. A directory of at most ``SINGLE_PAGE_MAX`` entries whose encoded entries total
at most ``PAGE_MAX_BYTES`` is one ``d`` node. A bigger one is cut into ``d`` pages:
walking the sorted entries, a page ends after an entry when the page holds at least
``PAGE_MIN`` entries and ``blake3(b"strata-page" + bytes([LEVEL]) + KEY)[0] == 0``
(probability 1/256), or when it reaches ``PAGE_MAX`` entries or ``PAGE_MAX_BYTES``
bytes of encoded entries (``len`` of the canonical JSON of each entry); the last page
ends with the list. KEY is the entry name in UTF-8 (surrogateescape) and LEVEL is 0.
The page references become the items of the next level (``di`` nodes), cut the same
way with LEVEL 1, 2, ... and KEY = FIRST, until a level has at most
``SINGLE_PAGE_MAX`` items (one ``di`` node: the directory's root) or the cut yields a
single page (that page is the root). Because boundaries depend only on the keys, the
count and the bytes since the previous boundary, changing one entry rewrites its page
and the index nodes above it; every other page keeps its bytes and its address.

A file's block list is inline (``b`` in the entry) up to ``BLOCKS_INLINE_MAX`` blocks.
A longer one is cut into ``b`` pages by the same rule with KEY = the block's HASH (ASCII)
and no single-page shortcut at level 0; index levels (``bi``) use KEY = the child's HASH.
The entry's ``p`` names the root node (a ``b`` or ``bi`` node).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import blake3

from strata.errors import CorruptObject
from strata.meta.entry import BlockRef, Content, Entry, Kind

NODE_FORMAT = 1
SINGLE_PAGE_MAX = 1024
PAGE_MIN = 64
PAGE_MAX = 2048
PAGE_MAX_BYTES = 1024 * 1024
BLOCKS_INLINE_MAX = 64
_BOUNDARY_SALT = b"strata-page"


@dataclass(frozen=True)
class ChildRef:
    """A reference from an index node to the node below it.

    ``key`` is the first name below (directory indexes only), ``count`` the entries or
    blocks below, ``nbytes`` the plaintext bytes below (block indexes only).
    """

    hash: str
    count: int
    key: str = ""
    nbytes: int = 0


@dataclass(frozen=True)
class DirPage:
    entries: tuple[Entry, ...]


@dataclass(frozen=True)
class DirIndex:
    children: tuple[ChildRef, ...]
    level: int = 1  # 1: children are pages; n: children are level n-1 indexes


@dataclass(frozen=True)
class BlockPage:
    blocks: tuple[BlockRef, ...]


@dataclass(frozen=True)
class BlockIndex:
    children: tuple[ChildRef, ...]
    level: int = 1


Node = DirPage | DirIndex | BlockPage | BlockIndex


# --- entries ---------------------------------------------------------------------


def check_entry_name(name: str) -> None:
    """Reject names no directory may hold (they would break path resolution)."""
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise ValueError(f"invalid directory entry name {name!r}")


def entry_to_obj(e: Entry) -> dict[str, Any]:
    """The JSON object of one entry (defaults omitted); see the module docstring."""
    o: dict[str, Any] = {"n": e.name, "k": Kind(e.kind).value, "m": e.mode}
    for key, value in (
        ("u", e.uid),
        ("g", e.gid),
        ("mt", e.mtime_ns),
        ("ct", e.ctime_ns),
        ("s", e.size),
        ("tg", e.target),
        ("h", e.tree),
        ("li", e.link_id),
        ("p", e.content.pages),
    ):
        if value:
            o[key] = value
    if e.xattrs:
        o["x"] = [[k, base64.b64encode(v).decode("ascii")] for k, v in sorted(e.xattrs)]
    if e.content.blocks:
        o["b"] = [[b.hash, b.size] for b in e.content.blocks]
    return o


_KINDS = {k.value: k for k in Kind}
_NO_BLOCKS: tuple[BlockRef, ...] = ()
_EMPTY = Content()


def entry_from_obj(o: dict[str, Any]) -> Entry:
    """Parse one entry object (hot path: a page holds thousands)."""
    if not isinstance(o["n"], str):
        raise TypeError("entry name is not a string")
    x = o.get("x")
    b = o.get("b")
    p = o.get("p", "")
    content = (
        Content(
            tuple([BlockRef(str(h), int(s)) for h, s in b]) if b else _NO_BLOCKS,
            p,
        )
        if b or p
        else _EMPTY
    )
    return Entry(
        o["n"],
        _KINDS[o["k"]],
        int(o["m"]),
        int(o.get("u", 0)),
        int(o.get("g", 0)),
        int(o.get("mt", 0)),
        int(o.get("ct", 0)),
        int(o.get("s", 0)),
        tuple([(str(k), base64.b64decode(v, validate=True)) for k, v in x]) if x else (),
        o.get("tg", ""),
        content,
        o.get("h", ""),
        o.get("li", ""),
    )


_str = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]


def canonical_json(obj: Any) -> bytes:
    """The one byte string of ``obj`` (see the module docstring)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def entry_bytes(e: Entry) -> bytes:
    """Canonical JSON of one entry: the unit the page cutter measures.

    Hand-built in sorted key order (the hot path of writing a big directory); a test
    proves it equals ``canonical_json(entry_to_obj(e))`` byte for byte.
    """
    parts = []
    blocks = e.content.blocks
    if blocks:
        parts.append(
            '"b":[' + ",".join("[" + _str(b.hash) + f",{int(b.size)}]" for b in blocks) + "]"
        )
    if e.ctime_ns:
        parts.append(f'"ct":{int(e.ctime_ns)}')
    if e.gid:
        parts.append(f'"g":{int(e.gid)}')
    if e.tree:
        parts.append('"h":' + _str(e.tree))
    parts.append('"k":"' + Kind(e.kind).value + '"')
    if e.link_id:
        parts.append('"li":' + _str(e.link_id))
    parts.append(f'"m":{int(e.mode)}')
    if e.mtime_ns:
        parts.append(f'"mt":{int(e.mtime_ns)}')
    parts.append('"n":' + _str(e.name))
    if e.content.pages:
        parts.append('"p":' + _str(e.content.pages))
    if e.size:
        parts.append(f'"s":{int(e.size)}')
    if e.target:
        parts.append('"tg":' + _str(e.target))
    if e.uid:
        parts.append(f'"u":{int(e.uid)}')
    if e.xattrs:
        parts.append('"x":' + json.dumps(entry_to_obj(e)["x"], separators=(",", ":")))
    return ("{" + ",".join(parts) + "}").encode("ascii")


# --- nodes -----------------------------------------------------------------------


def encode_node(node: Node) -> bytes:
    if isinstance(node, DirPage):
        return _wrap("d", "e", [entry_to_obj(e) for e in node.entries])
    if isinstance(node, DirIndex):
        items = [[c.key, c.hash, c.count] for c in node.children]
        return _wrap("di", "c", items, node.level)
    if isinstance(node, BlockPage):
        return _wrap("b", "b", [[b.hash, b.size] for b in node.blocks])
    return _wrap("bi", "c", [[c.hash, c.count, c.nbytes] for c in node.children], node.level)


def encode_dir_page(encoded_entries: Iterable[bytes]) -> bytes:
    """Fast path: a ``d`` node from already-encoded entries (same bytes as encode_node)."""
    return b'{"e":[' + b",".join(encoded_entries) + b'],"t":"d","v":1}'


def _wrap(kind: str, field: str, items: list[Any], level: int = 0) -> bytes:
    obj: dict[str, Any] = {"t": kind, "v": NODE_FORMAT, field: items}
    if level:
        obj["l"] = level
    return canonical_json(obj)


def decode_node(data: bytes, digest: str = "") -> Node:
    """Parse a tree object; anything malformed is :class:`CorruptObject`, never a guess."""
    try:
        obj = json.loads(data)
        if obj.get("v") != NODE_FORMAT:
            raise ValueError(f"unknown node format {obj.get('v')!r}")
        t = obj["t"]
        if t == "d":
            return DirPage(tuple(entry_from_obj(o) for o in obj["e"]))
        if t == "di":
            return DirIndex(
                tuple(ChildRef(str(h), int(n), key=str(k)) for k, h, n in obj["c"]),
                _level(obj),
            )
        if t == "b":
            return BlockPage(tuple(BlockRef(str(h), int(s)) for h, s in obj["b"]))
        if t == "bi":
            return BlockIndex(
                tuple(ChildRef(str(h), int(n), nbytes=int(b)) for h, n, b in obj["c"]),
                _level(obj),
            )
        raise ValueError(f"unknown node type {t!r}")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CorruptObject(f"trees/{digest}", f"not a tree object: {exc}") from exc


def _level(obj: dict[str, Any]) -> int:
    level = obj["l"]
    if not isinstance(level, int) or not 1 <= level <= 64:
        raise ValueError(f"bad index level {level!r}")
    return level


# --- page cutting ----------------------------------------------------------------


def is_boundary_key(level: int, key: bytes) -> bool:
    return blake3.blake3(_BOUNDARY_SALT + bytes([level]) + key).digest()[0] == 0


class Cutter:
    """The content-defined page boundary rule; state resets at every boundary."""

    def __init__(self, level: int) -> None:
        self.level = level
        self.count = 0
        self.nbytes = 0

    def push(self, key: bytes, size: int) -> bool:
        """Account one item; True when the page ends after it."""
        self.count += 1
        self.nbytes += size
        if (
            self.count >= PAGE_MAX
            or self.nbytes >= PAGE_MAX_BYTES
            or (self.count >= PAGE_MIN and is_boundary_key(self.level, key))
        ):
            self.count = 0
            self.nbytes = 0
            return True
        return False


def cut(
    items: list[Any], level: int, key: Callable[[Any], bytes], size: Callable[[Any], int]
) -> list[list[Any]]:
    """Cut ``items`` into pages by the boundary rule."""
    cutter = Cutter(level)
    pages: list[list[Any]] = []
    page: list[Any] = []
    for item in items:
        page.append(item)
        if cutter.push(key(item), size(item)):
            pages.append(page)
            page = []
    if page:
        pages.append(page)
    return pages


def name_key(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")
