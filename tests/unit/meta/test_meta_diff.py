"""diff: correct paths, and only subtrees whose hashes differ are read."""

from __future__ import annotations

from strata.chunks.objects import ContentStore
from strata.meta.diff import diff_trees
from strata.meta.entry import Entry, Kind
from strata.meta.repo import Repository
from strata.meta.tree import TreeReader
from strata.store.counting import CountingStore

from .conftest import Builder


def test_diff_paths(repo: Repository, build: Builder) -> None:
    common = build.dir("same", [build.file("f", b"f")])
    a = build.root(
        [
            common,
            build.file("changed", b"1"),
            build.file("gone", b"g"),
            build.dir("d", [build.file("x", b"x"), build.dir("deep", [build.file("y", b"y")])]),
            build.file("becomes-dir", b"f"),
            build.dir("chmod-dir", [build.file("k", b"k")]),
        ]
    )
    b = build.root(
        [
            common,
            build.file("changed", b"2"),
            build.file("new", b"n"),
            build.dir("d", [build.file("x", b"x"), build.dir("deep", [build.file("z", b"z")])]),
            build.dir("becomes-dir", [build.file("inside", b"i")]),
            Entry("chmod-dir", Kind.DIR, 0o700, tree=build.dir("c", [build.file("k", b"k")]).tree),
        ]
    )
    d = diff_trees(repo.trees, a, b)
    assert d.added == ["becomes-dir/inside", "d/deep/z", "new"]
    assert d.removed == ["d/deep/y", "gone"]
    assert d.modified == ["becomes-dir", "changed", "chmod-dir"]
    back = diff_trees(repo.trees, b, a)
    assert (back.added, back.removed) == (
        ["d/deep/y", "gone"],
        ["becomes-dir/inside", "d/deep/z", "new"],
    )
    assert not diff_trees(repo.trees, a, a)
    assert diff_trees(repo.trees, None, a).removed == []
    assert "d/deep/y" in diff_trees(repo.trees, None, a).added


def test_diff_by_ref_and_against_an_empty_volume(repo: Repository, build: Builder) -> None:
    repo.create_volume("v")
    v1 = build.commit("v", [build.file("a", b"1")])
    build.commit("v", [build.file("a", b"1"), build.file("b", b"2")])
    assert repo.diff(v1.ref, "v").added == ["b"]
    repo.create_volume("empty")
    assert repo.diff("empty", "v").added == ["a", "b"]


def test_diff_reads_only_changed_subtrees(
    repo: Repository, build: Builder, counting: CountingStore
) -> None:
    dirs = [build.dir(f"d{i:02d}", [build.file(f"f{j}") for j in range(100)]) for i in range(50)]
    a = build.root(dirs)
    changed = dirs[:]
    changed[17] = build.dir(
        "d17", [build.file(f"f{j}", b"new" if j == 3 else b"") for j in range(100)]
    )
    b = build.root(changed)
    reader = TreeReader(ContentStore(counting))  # nothing cached
    counting.reset()
    d = diff_trees(reader, a, b)
    assert d.modified == ["d17/f3"] and not d.added and not d.removed
    assert counting.snapshot().gets_by_prefix["trees/"] == 4  # two roots, two d17s


def test_diff_in_a_paged_directory_reads_only_differing_pages(
    repo: Repository, build: Builder, counting: CountingStore
) -> None:
    entries = [build.file(f"n{i:06d}") for i in range(20_000)]
    a = build.root(entries)
    entries[12_345] = build.file("n012345", b"changed")
    b = build.root(entries)
    reader = TreeReader(ContentStore(counting))
    counting.reset()
    assert diff_trees(reader, a, b).modified == ["n012345"]
    assert counting.snapshot().gets_by_prefix["trees/"] <= 4  # two indexes, two pages
