"""What only the local directory store has to get right: files, temp files, locks."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from strata.errors import ObjectNotFound, PreconditionFailed, StoreError
from strata.store import local
from strata.store.local import LocalStore


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "s")


def test_url_is_the_absolute_file_url(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    assert store.url == (tmp_path / "s").as_uri()
    assert store.url.startswith("file:///")


def test_root_must_be_absolute() -> None:
    with pytest.raises(ValueError, match="absolute"):
        LocalStore(Path("relative/dir"))


def test_keys_are_paths_under_the_root(store: LocalStore) -> None:
    store.put("chunks/ab/abcdef", b"data")
    assert (store.root / "chunks" / "ab" / "abcdef").read_bytes() == b"data"


def test_no_temp_files_are_left_behind(store: LocalStore) -> None:
    store.put("a/b", b"1")
    store.put("a/b", b"2")
    store.put("a/c", b"3", if_absent=True)
    with pytest.raises(PreconditionFailed):
        store.put("a/c", b"4", if_absent=True)
    assert sorted(p.name for p in (store.root / "a").iterdir()) == ["b", "c"]


def test_leftovers_of_a_crash_are_not_objects(store: LocalStore) -> None:
    store.put("chunks/aa/x", b"x")
    (store.root / "chunks" / "aa" / ".strata-tmp-0123456789abcdef").write_bytes(b"half")
    assert [i.key for i in store.list()] == ["chunks/aa/x"]


def test_non_regular_files_are_not_objects(store: LocalStore) -> None:
    store.put("a/real", b"x")
    os.symlink(store.root / "a" / "real", store.root / "a" / "link")
    assert [i.key for i in store.list()] == ["a/real"]
    with pytest.raises(ObjectNotFound):
        store.head("a/link")


def test_a_key_cannot_also_be_a_directory(store: LocalStore) -> None:
    store.put("a", b"file")
    with pytest.raises(StoreError, match="cannot hold both"):
        store.put("a/b", b"x")
    store.delete("a")
    store.put("a/b", b"x")
    with pytest.raises(StoreError, match="cannot hold both"):
        store.put("a", b"x")
    with pytest.raises(StoreError, match="cannot hold both"):
        store.put("a", b"x", if_absent=True)
    with pytest.raises(ObjectNotFound):
        store.get("a")  # a directory is not an object
    store.delete("a")  # and deleting it is a no-op, not a disaster
    assert store.get("a/b") == b"x"


def test_delete_prunes_empty_directories(store: LocalStore) -> None:
    store.put("versions/vol/v1", b"x")
    store.put("versions/vol/v2", b"x")
    store.delete("versions/vol/v1")
    assert (store.root / "versions" / "vol").is_dir()
    store.delete("versions/vol/v2")
    assert not (store.root / "versions").exists()
    store.put("versions/vol/v3", b"y")  # and writing there again just works
    assert store.get("versions/vol/v3") == b"y"


def test_etag_survives_a_filesystem_without_xattrs(store: LocalStore) -> None:
    etag = store.put("k", b"content")
    path = store.root / "k"
    os.removexattr(path, "user.strata.etag.b3")
    assert store.head("k").etag == etag
    assert [i.etag for i in store.list()] == [etag]
    _, etag2 = store.get_with_etag("k")
    assert store.put("k", b"new", if_match=etag2)


def test_if_match_compares_the_content_not_the_cached_etag(store: LocalStore) -> None:
    """Someone edited the file behind our back: the cache is stale, the compare is not."""
    etag = store.put("heads/v", b"old")
    (store.root / "heads" / "v").write_bytes(b"edited")  # in place: the xattr stays
    with pytest.raises(StoreError, match="changed"):
        store.put("heads/v", b"new", if_match=etag)


def test_listing_a_prefix_that_is_a_file_is_empty(store: LocalStore) -> None:
    store.put("a", b"x")
    assert list(store.list("a/")) == []
    assert [i.key for i in store.list("a")] == ["a"]


def test_list_of_an_invalid_prefix_is_empty(store: LocalStore) -> None:
    store.put("a/b", b"x")
    assert list(store.list("../")) == []
    assert list(store.list("a//")) == []


def test_errors_name_the_object_the_store_and_the_reason(store: LocalStore) -> None:
    key = "chunks/" + "x" * 300  # longer than any filesystem allows for one name
    with pytest.raises(StoreError, match=r"put 'chunks/x+' in file:///.*File name too long"):
        store.put(key, b"x")
    with pytest.raises(StoreError, match=r"head 'chunks/x+' in file:///.*File name too long"):
        store.head(key)


CAS_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from strata.errors import PreconditionFailed
    from strata.store.local import LocalStore

    store = LocalStore(Path(sys.argv[1]))
    for _ in range(int(sys.argv[2])):
        while True:
            data, etag = store.get_with_etag("heads/counter")
            try:
                store.put("heads/counter", str(int(data) + 1).encode(), if_match=etag)
                break
            except PreconditionFailed:
                pass
    """
)


def test_cas_holds_across_processes(store: LocalStore, tmp_path: Path) -> None:
    """flock, not a Python lock: separate processes on one directory lose no update."""
    store.put("heads/counter", b"0")
    script = tmp_path / "cas.py"
    script.write_text(CAS_SCRIPT)
    procs, per_proc = 4, 40
    repo = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    children = [
        subprocess.Popen([sys.executable, str(script), str(store.root), str(per_proc)], env=env)
        for _ in range(procs)
    ]
    for child in children:
        assert child.wait(timeout=120) == 0
    assert int(store.get("heads/counter")) == procs * per_proc


def test_content_is_made_durable_in_bulk_before_anything_that_names_it(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks and trees skip their fsyncs; the next other put runs one syncfs first."""
    calls: list[str] = []
    fsyncs: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(local, "_syncfs", lambda path: calls.append(str(path)))
    store.put("chunks/aa/aa0", b"data", if_absent=True)  # new directories are fsynced
    store.put("trees/bb/bb0", b"tree", if_absent=True)
    monkeypatch.setattr(local.os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd)))
    for i in range(1, 4):
        store.put(f"chunks/aa/aa{i}", b"data", if_absent=True)
        store.put(f"trees/bb/bb{i}", b"tree", if_absent=True)
    assert calls == [] and fsyncs == []
    store.put("versions/v/1", b"manifest", if_absent=True)
    assert calls == [str(store.root)]  # the content first, in one call ...
    store.put("heads/v", b"head")
    assert calls == [str(store.root)]  # ... and only when something is pending
    store.put("chunks/aa/aa9", b"more", if_absent=True)
    store.close()
    assert len(calls) == 2


def test_a_failed_sync_fails_the_put_that_needed_it(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.put("chunks/aa/aa1", b"data", if_absent=True)

    def broken(path: Path) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(local, "_syncfs", broken)
    with pytest.raises(StoreError, match="sync"):
        store.put("heads/v", b"head")
    assert not store.exists("heads/v")
    monkeypatch.undo()
    store.put("heads/v", b"head")  # the next attempt syncs again, then writes
    assert store.get("heads/v") == b"head"


def test_a_torn_content_object_is_replaced_not_trusted(store: LocalStore) -> None:
    path = store.root / "chunks/aa/aa1"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")  # what a power cut before the sync may leave
    store.put("chunks/aa/aa1", b"whole object", if_absent=True)
    assert store.get("chunks/aa/aa1") == b"whole object"
    with pytest.raises(PreconditionFailed):  # a whole one is still a lost race
        store.put("chunks/aa/aa1", b"whole object", if_absent=True)
    store.put("heads/v", b"x", if_absent=True)
    with pytest.raises(PreconditionFailed):  # and other keys never compare sizes
        store.put("heads/v", b"longer", if_absent=True)


def test_content_objects_take_their_etag_from_their_key(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk's key names its content: no hashing of 4 MiB per put, head or list."""

    def no_hashing(*args: object) -> str:
        raise AssertionError("content object hashed for its etag")

    monkeypatch.setattr(local, "_etag", no_hashing)
    monkeypatch.setattr(local, "_etag_file", no_hashing)
    digest = "ab" * 32
    etag = store.put(f"chunks/ab/{digest}", b"data", if_absent=True)
    assert etag == digest[:32]
    assert store.head(f"chunks/ab/{digest}").etag == etag
    assert [i.etag for i in store.list("chunks/")] == [etag]
    assert store.get_with_etag(f"chunks/ab/{digest}") == (b"data", etag)
