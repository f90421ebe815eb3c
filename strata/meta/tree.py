"""Writing and reading a version's Merkle tree (format: :mod:`strata.meta.treefmt`).

:class:`TreeWriter` turns sorted directory entries and block lists into tree objects,
paged at content-defined boundaries, and uploads them through the
:class:`~strata.chunks.objects.ContentStore` (which skips objects it knows are present,
so rewriting a 1M-entry directory after a one-entry change uploads one page and the
index nodes above it). :meth:`TreeWriter.update_dir` does the same in O(change) work:
it reads only the index nodes and the pages the changes fall into.

:class:`TreeReader` answers ``lookup`` by descending the index to the one page a name
can be in, and iterates entries and blocks lazily page by page. Tree objects are
immutable, so parsed nodes are kept in a small LRU shared by every reader and writer of
the same ContentStore.
"""

from __future__ import annotations

import bisect
import itertools
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace

from strata.chunks.objects import ContentStore
from strata.errors import CorruptObject
from strata.meta import treefmt as fmt
from strata.meta.entry import BlockRef, Content, Entry, Kind
from strata.meta.treefmt import BlockIndex, BlockPage, ChildRef, DirIndex, DirPage, Node

__all__ = ["NodeCache", "TreeReader", "TreeWriter"]


class NodeCache:
    """A thread-safe LRU of parsed tree nodes (immutable, so never invalidated)."""

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._nodes: OrderedDict[str, Node] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, digest: str) -> Node | None:
        with self._lock:
            node = self._nodes.get(digest)
            if node is not None:
                self._nodes.move_to_end(digest)
            return node

    def put(self, digest: str, node: Node) -> None:
        with self._lock:
            self._nodes[digest] = node
            self._nodes.move_to_end(digest)
            while len(self._nodes) > self.capacity:
                self._nodes.popitem(last=False)


_shared: weakref.WeakKeyDictionary[ContentStore, NodeCache] = weakref.WeakKeyDictionary()
_shared_lock = threading.Lock()


def _cache_for(cs: ContentStore, cache: NodeCache | None) -> NodeCache:
    if cache is not None:
        return cache
    with _shared_lock:
        found = _shared.get(cs)
        if found is None:
            found = _shared[cs] = NodeCache()
        return found


class _Base:
    def __init__(self, content_store: ContentStore, cache: NodeCache | None = None) -> None:
        self.cs = content_store
        self.cache = _cache_for(content_store, cache)

    def node(self, digest: str) -> Node:
        """The parsed tree object ``digest`` (from the LRU, else one store GET)."""
        node = self.cache.get(digest)
        if node is None:
            node = fmt.decode_node(self.cs.get_tree(digest), digest)
            self.cache.put(digest, node)
        return node

    def _leaf_refs(self, root: str) -> list[ChildRef] | None:
        """Every directory page below ``root`` (reads index nodes only); None if unpaged."""
        node = self._dir_node(root)
        if isinstance(node, DirPage):
            return None
        return list(self._pages_below(node))

    def _pages_below(self, node: DirIndex) -> Iterator[ChildRef]:
        if node.level == 1:
            yield from node.children
            return
        for child in node.children:
            sub = self._dir_node(child.hash)
            if not isinstance(sub, DirIndex) or sub.level != node.level - 1:
                raise CorruptObject(f"trees/{child.hash}", "index levels do not match")
            yield from self._pages_below(sub)

    def _dir_node(self, digest: str) -> DirPage | DirIndex:
        node = self.node(digest)
        if not isinstance(node, DirPage | DirIndex):
            raise CorruptObject(f"trees/{digest}", "expected a directory node")
        return node


class TreeWriter(_Base):
    """Encode and upload directories and block lists; return their root hashes."""

    def write_dir(self, entries: Iterable[Entry]) -> str:
        """Write a directory holding ``entries`` (any order; names unique) → root hash.

        The result depends only on the entries, never on history, so equal directories
        have equal hashes wherever and however they were written.
        """
        ordered = sorted(entries, key=lambda e: e.name)
        for prev, cur in itertools.pairwise(ordered):
            if prev.name == cur.name:
                raise ValueError(f"duplicate directory entry name {cur.name!r}")
        encoded = [self._encode_entry(e) for e in ordered]
        total = sum(len(b) for _, b in encoded)
        if len(encoded) <= fmt.SINGLE_PAGE_MAX and total <= fmt.PAGE_MAX_BYTES:
            return self._put_page(encoded)
        pages = fmt.cut(encoded, 0, lambda x: fmt.name_key(x[0].name), lambda x: len(x[1]))
        return self._index_dir([self._page_ref(p) for p in pages])

    def update_dir(self, base: str, changes: Mapping[str, Entry | None]) -> str:
        """Apply ``changes`` (name → new entry, or None to remove) to directory ``base``.

        Same result as :meth:`write_dir` of the full new entry list, but reads only the
        index nodes and the pages the changed names fall into, then re-cuts from the
        first changed page until a new boundary lands on an old one.
        """
        for name, e in changes.items():
            if e is not None and e.name != name:
                raise ValueError(f"change for {name!r} carries an entry named {e.name!r}")
        refs = self._leaf_refs(base)
        if refs is None or not changes:
            if not changes:
                return base
            return self.write_dir(self._merged(self._page_entries(base), changes))
        keys = [r.key for r in refs]
        by_page: dict[int, dict[str, Entry | None]] = {}
        for name, e in changes.items():
            i = max(0, bisect.bisect_right(keys, name) - 1)
            by_page.setdefault(i, {})[name] = e
        new_refs: list[ChildRef] = []
        cutter = fmt.Cutter(0)
        pending: list[tuple[Entry, bytes]] = []
        i = 0
        while i < len(refs):
            if i not in by_page and not pending:
                new_refs.append(refs[i])  # untouched page, boundary state in sync
                i += 1
                continue
            page = self._page_entries(refs[i].hash)
            for e in self._merged(page, by_page.get(i, {})):
                item = self._encode_entry(e)
                pending.append(item)
                if cutter.push(fmt.name_key(e.name), len(item[1])):
                    new_refs.append(self._page_ref(pending))
                    pending = []
            i += 1
        if pending:
            new_refs.append(self._page_ref(pending))
        total = sum(r.count for r in new_refs)
        if total <= fmt.SINGLE_PAGE_MAX:  # shrank below the paging threshold
            return self.write_dir(e for r in new_refs for e in self._page_entries(r.hash))
        return self._index_dir(new_refs)

    def write_blocks(self, blocks: Iterable[BlockRef]) -> Content:
        """A file's block list: inline when short, else paged (``Content.pages``)."""
        blocks = tuple(blocks)
        if len(blocks) <= fmt.BLOCKS_INLINE_MAX:
            return Content(blocks=blocks)
        pages = fmt.cut(list(blocks), 0, lambda b: b.hash.encode(), lambda b: 2)
        refs = []
        for p in pages:
            digest = self._put(BlockPage(tuple(p)))
            refs.append(ChildRef(digest, len(p), nbytes=sum(b.size for b in p)))
        level = 1
        while len(refs) > 1:
            groups = (
                [refs]
                if len(refs) <= fmt.SINGLE_PAGE_MAX
                else fmt.cut(refs, level, lambda r: r.hash.encode(), lambda r: 2)
            )
            refs = [
                ChildRef(
                    self._put(BlockIndex(tuple(g), level)),
                    sum(r.count for r in g),
                    nbytes=sum(r.nbytes for r in g),
                )
                for g in groups
            ]
            level += 1
        return Content(pages=refs[0].hash)

    # --- internals ---------------------------------------------------------------------

    @staticmethod
    def _encode_entry(e: Entry) -> tuple[Entry, bytes]:
        fmt.check_entry_name(e.name)
        if e.xattrs and list(e.xattrs) != sorted(e.xattrs):
            e = replace(e, xattrs=tuple(sorted(e.xattrs)))
        return e, fmt.entry_bytes(e)

    def _put(self, node: Node) -> str:
        digest = self.cs.put_tree(fmt.encode_node(node))
        self.cache.put(digest, node)
        return digest

    def _put_page(self, encoded: list[tuple[Entry, bytes]]) -> str:
        digest = self.cs.put_tree(fmt.encode_dir_page(b for _, b in encoded))
        self.cache.put(digest, DirPage(tuple(e for e, _ in encoded)))
        return digest

    def _page_ref(self, encoded: list[tuple[Entry, bytes]]) -> ChildRef:
        return ChildRef(self._put_page(encoded), len(encoded), key=encoded[0][0].name)

    def _index_dir(self, refs: list[ChildRef]) -> str:
        level = 1
        while len(refs) > 1:
            if len(refs) <= fmt.SINGLE_PAGE_MAX:
                return self._put(DirIndex(tuple(refs), level))
            groups = fmt.cut(
                refs,
                level,
                lambda r: fmt.name_key(r.key),
                lambda r: len(fmt.canonical_json([r.key, r.hash, r.count])),
            )
            refs = [
                ChildRef(
                    self._put(DirIndex(tuple(g), level)), sum(r.count for r in g), key=g[0].key
                )
                for g in groups
            ]
            level += 1
        return refs[0].hash

    def _page_entries(self, digest: str) -> tuple[Entry, ...]:
        node = self._dir_node(digest)
        if not isinstance(node, DirPage):
            raise CorruptObject(f"trees/{digest}", "expected a directory page")
        return node.entries

    @staticmethod
    def _merged(entries: Iterable[Entry], changes: Mapping[str, Entry | None]) -> list[Entry]:
        out = {e.name: e for e in entries}
        for name, e in changes.items():
            if e is None:
                out.pop(name, None)
            else:
                out[name] = e
        return [out[n] for n in sorted(out)]


class TreeReader(_Base):
    """Lazy, page-at-a-time reads of directories and block lists."""

    def lookup(self, tree: str, name: str) -> Entry | None:
        """The entry ``name`` in directory ``tree``, reading one node per index level."""
        node = self._dir_node(tree)
        while isinstance(node, DirIndex):
            keys = [c.key for c in node.children]
            i = bisect.bisect_right(keys, name) - 1
            if i < 0:
                return None
            node = self._dir_node(node.children[i].hash)
        entries = node.entries
        i = bisect.bisect_left(entries, name, key=lambda e: e.name)
        if i < len(entries) and entries[i].name == name:
            return entries[i]
        return None

    def iter_entries(self, tree: str) -> Iterator[Entry]:
        """Every entry of directory ``tree`` in name order, reading one page at a time."""
        node = self._dir_node(tree)
        if isinstance(node, DirPage):
            yield from node.entries
            return
        for child in node.children:
            yield from self.iter_entries(child.hash)

    def leaf_pages(self, tree: str) -> list[str]:
        """Hashes of the directory pages of ``tree`` (reads index nodes, not pages)."""
        refs = self._leaf_refs(tree)
        return [tree] if refs is None else [r.hash for r in refs]

    def page_entries(self, page: str) -> tuple[Entry, ...]:
        """The entries of one directory page (from :meth:`leaf_pages`)."""
        node = self._dir_node(page)
        if not isinstance(node, DirPage):
            raise CorruptObject(f"trees/{page}", "expected a directory page")
        return node.entries

    def count(self, tree: str) -> int:
        """Number of entries in directory ``tree`` (reads only the root node)."""
        node = self._dir_node(tree)
        if isinstance(node, DirPage):
            return len(node.entries)
        return sum(c.count for c in node.children)

    def iter_blocks(self, content: Content) -> Iterator[BlockRef]:
        """A file's blocks in order, paged lists read lazily."""
        for _, block in self.iter_blocks_from(content, 0):
            yield block

    def iter_blocks_from(self, content: Content, offset: int) -> Iterator[tuple[int, BlockRef]]:
        """``(file offset, block)`` from the block holding ``offset`` on, skipping pages."""
        if not content.pages:
            yield from _blocks_from(content.blocks, 0, offset)
            return
        yield from self._blocks_below(content.pages, 0, offset)

    def _blocks_below(self, digest: str, base: int, offset: int) -> Iterator[tuple[int, BlockRef]]:
        node = self.node(digest)
        if isinstance(node, BlockPage):
            yield from _blocks_from(node.blocks, base, offset)
            return
        if not isinstance(node, BlockIndex):
            raise CorruptObject(f"trees/{digest}", "expected a block-list node")
        for child in node.children:
            if base + child.nbytes > offset:
                yield from self._blocks_below(child.hash, base, offset)
            base += child.nbytes

    def resolve(self, root: str, path: str) -> Entry | None:
        """The entry at ``path`` ("a/b/c", "/" or "" for the root) below tree ``root``."""
        entry = Entry(name="", kind=Kind.DIR, mode=0o755, tree=root)
        for part in (p for p in path.split("/") if p):
            if entry.kind != Kind.DIR:
                return None
            found = self.lookup(entry.tree, part)
            if found is None:
                return None
            entry = found
        return entry

    def walk(self, root: str, prefix: str = "") -> Iterator[tuple[str, Entry]]:
        """Depth-first ``(path, entry)`` for everything below ``root`` (lazy)."""
        for e in self.iter_entries(root):
            path = f"{prefix}{e.name}"
            yield path, e
            if e.kind == Kind.DIR:
                yield from self.walk(e.tree, path + "/")


def _blocks_from(
    blocks: Iterable[BlockRef], base: int, offset: int
) -> Iterator[tuple[int, BlockRef]]:
    for b in blocks:
        if base + b.size > offset:
            yield base, b
        base += b.size
