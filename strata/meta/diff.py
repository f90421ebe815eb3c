"""Differences between two version trees, reading only what differs.

Merkle trees make this cheap: equal hashes mean equal subtrees, so the walk descends
only into directories whose tree hashes differ, and inside a paged directory it reads
only the pages that are not shared by both sides (a page present on both sides holds
the same entries in both, and no name in it can appear in any other page).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from strata.meta.entry import Entry, Kind
from strata.meta.tree import TreeReader

__all__ = ["Diff", "diff_trees"]


@dataclass(frozen=True)
class Diff:
    """Paths relative to the volume root (``a/b``), each list sorted."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.modified)


def diff_trees(reader: TreeReader, a: str | None, b: str | None) -> Diff:
    """What changed from root tree ``a`` to ``b`` (None: an empty tree)."""
    out = Diff()
    _diff_dir(reader, a, b, "", out)
    out.added.sort()
    out.removed.sort()
    out.modified.sort()
    return out


def _diff_dir(reader: TreeReader, a: str | None, b: str | None, prefix: str, out: Diff) -> None:
    if a == b:
        return
    for name, ea, eb in _changed_entries(reader, a, b):
        path = prefix + name
        if eb is None:
            assert ea is not None
            out.removed.append(path)
            out.removed.extend(_below(reader, ea, path))
        elif ea is None:
            out.added.append(path)
            out.added.extend(_below(reader, eb, path))
        elif ea.kind == Kind.DIR and eb.kind == Kind.DIR:
            if replace(ea, tree="") != replace(eb, tree=""):
                out.modified.append(path)
            _diff_dir(reader, ea.tree, eb.tree, path + "/", out)
        elif ea != eb:
            out.modified.append(path)
            out.removed.extend(_below(reader, ea, path))
            out.added.extend(_below(reader, eb, path))


def _below(reader: TreeReader, e: Entry, path: str) -> Iterator[str]:
    if e.kind == Kind.DIR:
        yield from (p for p, _ in reader.walk(e.tree, path + "/"))


def _changed_entries(
    reader: TreeReader, a: str | None, b: str | None
) -> Iterator[tuple[str, Entry | None, Entry | None]]:
    """Names whose entries differ, from the pages the two directories do not share."""
    pages_a = reader.leaf_pages(a) if a else []
    pages_b = reader.leaf_pages(b) if b else []
    shared = set(pages_a) & set(pages_b)
    left = {e.name: e for p in pages_a if p not in shared for e in reader.page_entries(p)}
    right = {e.name: e for p in pages_b if p not in shared for e in reader.page_entries(p)}
    for name in sorted(left.keys() | right.keys()):
        ea, eb = left.get(name), right.get(name)
        if ea != eb:
            yield name, ea, eb
