"""The store contract, run against every backend: memory, local directory, real S3.

Each test states one promise of :class:`strata.store.base.Store`. A backend that
passes them all can carry Strata's format: atomic objects, conditional writes that
exactly one racer wins, and listings in key order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from strata.errors import ObjectNotFound, PreconditionFailed, TemporaryStoreError
from strata.store.base import Store

THREADS = 8


def run_threads(n: int, target: Callable[[int], None]) -> None:
    """Run ``target(i)`` in ``n`` threads released together; re-raise the first error."""
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            target(i)
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive(), "a worker thread hung"
    if errors:
        raise errors[0]


# --- basic verbs -----------------------------------------------------------------


def test_put_then_get_returns_the_bytes(backend: Store) -> None:
    etag = backend.put("chunks/ab/abc", b"hello")
    assert backend.get("chunks/ab/abc") == b"hello"
    data, etag2 = backend.get_with_etag("chunks/ab/abc")
    assert (data, etag2) == (b"hello", etag)
    assert etag


def test_empty_and_binary_objects_round_trip(backend: Store) -> None:
    blob = bytes(range(256)) * 4096  # 1 MiB, every byte value
    backend.put("empty", b"")
    backend.put("blob", blob)
    assert backend.get("empty") == b""
    assert backend.get("blob") == blob
    assert backend.head("blob").size == len(blob)


def test_head_describes_the_object(backend: Store) -> None:
    before = time.time()
    etag = backend.put("versions/vol/v1", b"12345")
    info = backend.head("versions/vol/v1")
    assert info.key == "versions/vol/v1"
    assert info.size == 5
    assert info.etag == etag
    # S3 reports whole seconds; allow for that and a little clock skew.
    assert before - 2 <= info.mtime <= time.time() + 2


def test_put_overwrites(backend: Store) -> None:
    first = backend.put("heads/vol", b"one")
    second = backend.put("heads/vol", b"two")
    assert backend.get("heads/vol") == b"two"
    assert first != second
    assert backend.head("heads/vol").etag == second


def test_etag_follows_content(backend: Store) -> None:
    a = backend.put("x", b"same")
    b = backend.put("y", b"same")
    c = backend.put("z", b"different")
    assert a == b != c


@pytest.mark.parametrize("verb", ["get", "get_with_etag", "head"])
def test_missing_object_is_not_found_naming_the_key(backend: Store, verb: str) -> None:
    with pytest.raises(ObjectNotFound, match="no/such/key") as info:
        getattr(backend, verb)("no/such/key")
    assert info.value.key == "no/such/key"


def test_delete_removes_and_tolerates_missing(backend: Store) -> None:
    backend.put("requests/vol/r1", b"x")
    assert backend.exists("requests/vol/r1")
    backend.delete("requests/vol/r1")
    assert not backend.exists("requests/vol/r1")
    with pytest.raises(ObjectNotFound):
        backend.get("requests/vol/r1")
    backend.delete("requests/vol/r1")  # again: not an error
    backend.delete("never/existed")


def test_delete_then_recreate(backend: Store) -> None:
    backend.put("chunks/00/k", b"one", if_absent=True)
    backend.delete("chunks/00/k")
    backend.put("chunks/00/k", b"one", if_absent=True)
    assert backend.get("chunks/00/k") == b"one"


# --- listing -----------------------------------------------------------------------

# Chosen so that directory order and key order differ: '-' < '.' < '/' < '0' < 'b'.
# (No key is also a "directory" of others: a local store cannot hold 'a' and 'a/b'.)
TRICKY_KEYS = ["a-b", "a.b", "a/b", "a/c/d", "a/ca", "a0", "ab", "b/x/y/z"]


def test_list_yields_every_key_in_key_order(backend: Store) -> None:
    for key in reversed(TRICKY_KEYS):
        backend.put(key, key.encode())
    listed = [info.key for info in backend.list()]
    assert listed == sorted(TRICKY_KEYS)
    assert listed == TRICKY_KEYS


def test_list_filters_by_prefix(backend: Store) -> None:
    for key in TRICKY_KEYS:
        backend.put(key, b"x")
    assert [i.key for i in backend.list("a/")] == ["a/b", "a/c/d", "a/ca"]
    assert [i.key for i in backend.list("a/c")] == ["a/c/d", "a/ca"]
    assert [i.key for i in backend.list("a/c/")] == ["a/c/d"]
    assert [i.key for i in backend.list("a")] == TRICKY_KEYS[:-1]
    assert [i.key for i in backend.list("b/x/")] == ["b/x/y/z"]
    assert [i.key for i in backend.list("a/b")] == ["a/b"]
    assert list(backend.list("nothing/")) == []
    assert list(backend.list("a/b/")) == []  # 'a/b' is an object, not a prefix of one


def test_list_reports_size_and_etag_like_head(backend: Store) -> None:
    backend.put("trees/aa/one", b"1")
    backend.put("trees/aa/three", b"333")
    for info in backend.list("trees/"):
        head = backend.head(info.key)
        assert (info.size, info.etag) == (head.size, head.etag)
        assert abs(info.mtime - head.mtime) < 1.0
    assert [i.size for i in backend.list("trees/")] == [1, 3]


def test_list_of_empty_store_is_empty(backend: Store) -> None:
    assert list(backend.list()) == []


# --- conditional writes ------------------------------------------------------------


def test_if_absent_creates_once(backend: Store) -> None:
    etag = backend.put("chunks/ab/c", b"first", if_absent=True)
    with pytest.raises(PreconditionFailed, match="chunks/ab/c") as info:
        backend.put("chunks/ab/c", b"second", if_absent=True)
    assert info.value.key == "chunks/ab/c"
    assert backend.get_with_etag("chunks/ab/c") == (b"first", etag)


def test_if_match_replaces_only_the_version_read(backend: Store) -> None:
    backend.put("heads/vol", b"v1")
    _, etag1 = backend.get_with_etag("heads/vol")
    etag2 = backend.put("heads/vol", b"v2", if_match=etag1)
    assert backend.get_with_etag("heads/vol") == (b"v2", etag2)
    with pytest.raises(PreconditionFailed, match="heads/vol"):
        backend.put("heads/vol", b"v3", if_match=etag1)  # stale
    assert backend.get("heads/vol") == b"v2"


def test_if_match_on_missing_object_fails(backend: Store) -> None:
    etag = backend.put("heads/other", b"x")
    with pytest.raises(PreconditionFailed):
        backend.put("heads/missing", b"x", if_match=etag)
    assert not backend.exists("heads/missing")


def test_if_match_after_delete_fails(backend: Store) -> None:
    etag = backend.put("heads/vol", b"x")
    backend.delete("heads/vol")
    with pytest.raises(PreconditionFailed):
        backend.put("heads/vol", b"y", if_match=etag)


def test_if_absent_race_has_exactly_one_winner(backend: Store) -> None:
    winners: list[int] = []
    lock = threading.Lock()
    payload = {i: bytes([i]) * 100_000 for i in range(THREADS)}

    def racer(i: int) -> None:
        try:
            backend.put("versions/vol/v1", payload[i], if_absent=True)
        except PreconditionFailed:
            return
        with lock:
            winners.append(i)

    for _ in range(3):
        winners.clear()
        backend.delete("versions/vol/v1")
        run_threads(THREADS, racer)
        assert len(winners) == 1, f"winners: {winners}"
        assert backend.get("versions/vol/v1") == payload[winners[0]]


def cas_increment(store: Store, key: str) -> int:
    """Add one to the counter at ``key`` with a compare-and-swap loop; return tries."""
    tries = 0
    while True:
        tries += 1
        try:
            data, etag = store.get_with_etag(key)
            store.put(key, str(int(data) + 1).encode(), if_match=etag)
        except (PreconditionFailed, TemporaryStoreError):
            # Lost the race (or, on some S3 servers, read headers and body of two
            # different versions, which the backend reports as temporary): re-read.
            continue
        return tries


def test_cas_counter_loses_no_increment(backend: Store) -> None:
    per_thread = 10
    backend.put("heads/counter", b"0")
    tries = [0] * THREADS

    def worker(i: int) -> None:
        for _ in range(per_thread):
            tries[i] += cas_increment(backend, "heads/counter")

    run_threads(THREADS, worker)
    assert int(backend.get("heads/counter")) == THREADS * per_thread
    assert sum(tries) >= THREADS * per_thread


# --- atomicity ---------------------------------------------------------------------


def test_readers_never_see_a_partial_or_mixed_object(backend: Store) -> None:
    size = 512 * 1024
    versions = [bytes([n]) * size for n in range(1, 4)]
    etags = {v: backend.put("probe", v) for v in versions}
    backend.put("heads/atom", versions[0])
    done = threading.Event()
    readers, min_reads = 3, 20
    reads = [0] * readers

    def writer() -> None:
        # Keep overwriting until every reader has read enough times *during* the writes.
        n = 0
        while not done.is_set() and (n < 30 or min(reads) < min_reads):
            backend.put("heads/atom", versions[n % len(versions)])
            n += 1
        done.set()

    def reader(i: int) -> None:
        while not done.is_set():
            try:
                data, etag = backend.get_with_etag("heads/atom")
            except TemporaryStoreError:
                continue  # a backend may refuse an inconsistent read; it must not serve one
            assert data in etags, f"partial or mixed object of {len(data)} bytes"
            assert etag == etags[data], "etag of one version served with another's bytes"
            reads[i] += 1

    errors: list[BaseException] = []

    def guarded(target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)
            done.set()

    targets = [writer] + [lambda i=i: reader(i) for i in range(readers)]
    threads = [threading.Thread(target=guarded, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive(), "a worker thread hung"
    if errors:
        raise errors[0]
    assert min(reads) >= min_reads


# --- keys --------------------------------------------------------------------------

BAD_KEYS = ["", "/abs", "a//b", "a/", "../up", "a/../b", "a/./b", ".", "x/.strata-tmp-1"]


def test_malformed_keys_are_refused_with_a_reason(backend: Store) -> None:
    calls: dict[str, Callable[[str], object]] = {
        "put": lambda k: backend.put(k, b"x"),
        "put if_absent": lambda k: backend.put(k, b"x", if_absent=True),
        "get": backend.get,
        "get_with_etag": backend.get_with_etag,
        "head": backend.head,
        "delete": backend.delete,
    }
    for key in BAD_KEYS:
        for verb, call in calls.items():
            with pytest.raises(ValueError, match="invalid store key") as info:
                call(key)
            assert repr(key) in str(info.value), f"{verb} {key!r}: message names no key"
    assert list(backend.list()) == []
