"""Tree objects: encoding, paging of big directories and block lists, lazy reads."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strata.chunks.objects import ContentStore
from strata.errors import CorruptObject
from strata.meta import treefmt as fmt
from strata.meta.entry import BlockRef, Content, Entry, Kind
from strata.meta.repo import Repository
from strata.meta.tree import TreeReader, TreeWriter
from strata.store.counting import CountingStore

H = "ab" * 32  # a well-formed digest; tree tests need no real chunk behind it


def file_entry(name: str, size: int = 1, **attrs: object) -> Entry:
    return Entry(name, Kind.FILE, 0o644, size=size, content=Content((BlockRef(H, size),)), **attrs)  # type: ignore[arg-type]


def fresh(counting: CountingStore) -> tuple[TreeWriter, TreeReader]:
    """Writer and reader with nothing remembered: every object must come from the store."""
    cs = ContentStore(counting)
    return TreeWriter(cs), TreeReader(cs)


def test_roundtrip_all_entry_kinds(repo: Repository) -> None:
    sub = repo.tree_writer.write_dir([file_entry("inner")])
    entries = [
        file_entry("a-file", 5, uid=1000, gid=100, mtime_ns=123, ctime_ns=456),
        Entry("dir", Kind.DIR, 0o700, tree=sub, mtime_ns=7),
        Entry("link", Kind.SYMLINK, 0o777, size=6, target="a-file"),
        file_entry("hard1", 3, link_id="ino-7"),
        file_entry("hard2", 3, link_id="ino-7"),
        file_entry("attrs", xattrs=(("user.a", b"\x00\xff"), ("user.b", b""))),
        file_entry("naïve-ünïcode-名前"),
        file_entry("bad-\udcff-utf8"),
        Entry("empty", Kind.FILE, 0o4755),
    ]
    root = repo.tree_writer.write_dir(entries)
    _, reader = fresh(repo.store)  # type: ignore[arg-type]
    got = list(reader.iter_entries(root))
    assert got == sorted(entries, key=lambda e: e.name)
    assert reader.lookup(root, "hard2") == entries[4]
    assert reader.resolve(root, "/dir/inner") == file_entry("inner")
    assert reader.resolve(root, "a-file/x") is None
    assert reader.resolve(root, "") is not None and reader.resolve(root, "").tree == root
    assert [p for p, _ in reader.walk(root)] == [
        "a-file",
        "attrs",
        "bad-\udcff-utf8",
        "dir",
        "dir/inner",
        "empty",
        "hard1",
        "hard2",
        "link",
        "naïve-ünïcode-名前",
    ]
    for e in entries:
        assert fmt.entry_bytes(e) == fmt.canonical_json(fmt.entry_to_obj(e))


def test_encoding_is_canonical(repo: Repository) -> None:
    entries = [file_entry(f"f{i}", xattrs=(("user.z", b"1"), ("user.a", b"2"))) for i in range(50)]
    shuffled = entries[:]
    random.Random(1).shuffle(shuffled)
    assert repo.tree_writer.write_dir(entries) == repo.tree_writer.write_dir(shuffled)
    page = fmt.DirPage(tuple(entries))
    fast = fmt.encode_dir_page(fmt.entry_bytes(e) for e in entries)
    assert fast == fmt.encode_node(page)
    assert fmt.decode_node(fast) == fmt.DirPage(
        tuple(e.__class__(**{**e.__dict__, "xattrs": tuple(sorted(e.xattrs))}) for e in entries)
    )


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "nul\0"])
def test_invalid_entry_names_are_refused(repo: Repository, bad: str) -> None:
    with pytest.raises(ValueError, match="invalid directory entry name"):
        repo.tree_writer.write_dir([file_entry(bad)])


def test_duplicate_names_are_refused(repo: Repository) -> None:
    with pytest.raises(ValueError, match="duplicate"):
        repo.tree_writer.write_dir([file_entry("x"), file_entry("x", 2)])


def test_corrupt_tree_object_is_an_error(repo: Repository) -> None:
    digest = repo.content.put_tree(b'{"t":"zz","v":1}')
    with pytest.raises(CorruptObject):
        repo.trees.lookup(digest, "x")
    with pytest.raises(CorruptObject):
        fmt.decode_node(b"not json")


@pytest.fixture(scope="module")
def big_dir() -> list[Entry]:
    return [file_entry(f"file-{i:06d}") for i in range(100_000)]


def test_changing_one_entry_of_a_100k_directory_rewrites_few_objects(
    counting: CountingStore, big_dir: list[Entry]
) -> None:
    writer, reader = fresh(counting)
    root = writer.write_dir(big_dir)
    pages = reader.leaf_pages(root)
    assert 30 < len(pages) < 2000  # paged, and pages are not tiny
    changed = big_dir[:]
    changed[50_000] = file_entry("file-050000", 99)

    # full rewrite by a writer that has seen the old tree: one page + the index
    counting.reset()
    root2 = writer.write_dir(changed)
    assert counting.snapshot().puts_by_prefix["trees/"] <= 3

    # incremental update by a fresh process: reads only the index and one page. Its
    # session started after root2's objects were written, so each one it dedups against
    # is refreshed (one more put of the same object: GC safety, still O(change)).
    writer, reader = fresh(counting)
    counting.reset()
    root3 = writer.update_dir(root, {"file-050000": changed[50_000]})
    c = counting.snapshot()
    assert root3 == root2
    stats = writer.cs.stats()
    assert stats.objects_written + stats.objects_refreshed <= 3
    assert c.puts_by_prefix["trees/"] <= 6
    assert c.gets_by_prefix["trees/"] <= 4
    assert len(set(reader.leaf_pages(root2)) - set(pages)) == 1


def test_lookup_in_a_paged_directory_touches_few_pages(
    counting: CountingStore, big_dir: list[Entry]
) -> None:
    writer, _ = fresh(counting)
    root = writer.write_dir(big_dir)
    _, reader = fresh(counting)
    counting.reset()
    assert reader.lookup(root, "file-077777") == big_dir[77_777]
    assert reader.lookup(root, "file-077777x") is None
    assert reader.lookup(root, "a-before-everything") is None
    assert counting.snapshot().gets_by_prefix["trees/"] <= 4  # root + 1-2 pages
    assert reader.count(root) == 100_000


def test_iteration_is_lazy(counting: CountingStore, big_dir: list[Entry]) -> None:
    writer, _ = fresh(counting)
    root = writer.write_dir(big_dir)
    _, reader = fresh(counting)
    counting.reset()
    it = reader.iter_entries(root)
    assert [next(it).name for _ in range(3)] == ["file-000000", "file-000001", "file-000002"]
    assert counting.snapshot().gets_by_prefix["trees/"] == 2  # the index and one page
    assert sum(1 for _ in it) == 100_000 - 3


@pytest.mark.parametrize("seed", range(6))
def test_update_dir_equals_write_dir(repo: Repository, seed: int) -> None:
    rnd = random.Random(seed)
    names = sorted({f"n{rnd.randrange(10**6):07d}" for _ in range(5000)})
    base = {n: file_entry(n) for n in names}
    root = repo.tree_writer.write_dir(base.values())
    changes: dict[str, Entry | None] = {}
    for _ in range(rnd.choice([1, 5, 200, 3000])):
        n = rnd.choice(names) if rnd.random() < 0.6 else f"m{rnd.randrange(10**6):07d}"
        changes[n] = None if rnd.random() < 0.5 else file_entry(n, rnd.randrange(100))
    new = dict(base)
    for n, e in changes.items():
        if e is None:
            new.pop(n, None)
        else:
            new[n] = e
    expected = repo.tree_writer.write_dir(new.values())
    assert repo.tree_writer.update_dir(root, changes) == expected
    assert list(repo.trees.iter_entries(expected)) == [new[n] for n in sorted(new)]


def test_update_dir_across_the_paging_threshold(repo: Repository) -> None:
    small = [file_entry(f"f{i:05d}") for i in range(10)]
    root = repo.tree_writer.write_dir(small)
    grow = {f"g{i:05d}": file_entry(f"g{i:05d}") for i in range(3000)}
    big = repo.tree_writer.update_dir(root, grow)
    assert big == repo.tree_writer.write_dir(small + list(grow.values()))
    assert len(repo.trees.leaf_pages(big)) > 1
    shrink: dict[str, Entry | None] = {n: None for n in grow}
    assert repo.tree_writer.update_dir(big, shrink) == root


def test_short_block_lists_are_inline(repo: Repository) -> None:
    blocks = [BlockRef(H, 10), BlockRef("", 5)]
    content = repo.tree_writer.write_blocks(blocks)
    assert content == Content(blocks=tuple(blocks))
    assert list(repo.trees.iter_blocks(content)) == blocks


def test_long_block_lists_are_paged(counting: CountingStore) -> None:
    writer, _ = fresh(counting)
    digests = [f"{i:064x}" for i in range(50_000)]
    blocks = [BlockRef(d, 4096) for d in digests]
    content = writer.write_blocks(blocks)
    assert content.pages and not content.blocks
    _, reader = fresh(counting)
    assert list(reader.iter_blocks(content)) == blocks
    # seek: starts at the block holding the offset, without reading earlier pages
    _, reader = fresh(counting)
    counting.reset()
    first = next(reader.iter_blocks_from(content, 40_000 * 4096 + 17))
    assert first == (40_000 * 4096, blocks[40_000])
    assert counting.snapshot().gets_by_prefix["trees/"] <= 3
    # one changed block: a page and the index
    blocks[1234] = BlockRef("f" * 64, 4096)
    counting.reset()
    writer.write_blocks(blocks)
    assert counting.snapshot().puts_by_prefix["trees/"] <= 3


_names = st.text(
    st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)), min_size=1
).filter(lambda n: n not in (".", ".."))
_ints = st.integers(min_value=0, max_value=2**63 - 1)
_entries = st.builds(
    Entry,
    name=_names,
    kind=st.sampled_from([Kind.FILE, Kind.SYMLINK]),
    mode=st.integers(0, 0o7777),
    uid=_ints,
    gid=_ints,
    mtime_ns=_ints,
    ctime_ns=_ints,
    size=_ints,
    xattrs=st.dictionaries(_names, st.binary(max_size=20), max_size=3).map(
        lambda d: tuple(sorted(d.items()))
    ),
    target=st.text(max_size=20),
    content=st.builds(
        Content, blocks=st.lists(st.builds(BlockRef, st.just(H), _ints), max_size=3).map(tuple)
    ),
    link_id=st.text(max_size=5),
)


@settings(derandomize=True, max_examples=60, deadline=None)
@given(st.lists(_entries, max_size=5, unique_by=lambda e: e.name))
def test_entry_encoding_roundtrips(entries: list[Entry]) -> None:
    entries.sort(key=lambda e: e.name)
    data = fmt.encode_dir_page(fmt.entry_bytes(e) for e in entries)
    assert data == fmt.encode_node(fmt.DirPage(tuple(entries)))
    assert fmt.decode_node(data) == fmt.DirPage(tuple(entries))
