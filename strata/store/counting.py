"""Test wrappers that watch what the engine asks of its store.

:class:`CountingStore` counts requests by operation and by key prefix, so invariant
tests can say exactly what an operation cost: "a fork writes no chunk and no tree"
is ``counts.puts_by_prefix["chunks/"] == 0 and counts.puts_by_prefix["trees/"] == 0``.

:class:`ImmutableGuardStore` fails any overwrite of an immutable object that could
change it (STYLE.md item 4): content-addressed and versioned objects are written once,
with ``if_absent``, and at most rewritten with identical bytes (a refresh of their
mtime); only a few prefixes (``heads/``…) hold objects that change.
"""

from __future__ import annotations

import copy
import hashlib
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from strata.errors import ObjectNotFound
from strata.store.base import ObjectInfo, Store, StoreWrapper


def key_prefix(key: str) -> str:
    """The first segment of ``key`` with its slash (``chunks/``), or the whole key."""
    head, sep, _ = key.partition("/")
    return head + sep


@dataclass
class RequestCounts:
    """Requests seen, whatever their outcome (a lost conditional put still counts).

    ``by_op`` keys are ``get`` (``get_with_etag`` included), ``head``, ``put``,
    ``delete`` and ``list``; the ``*_by_prefix`` counters are keyed by
    :func:`key_prefix` (for lists, of the listed prefix). A Counter answers 0 for a
    prefix it never saw, so tests can assert on absent prefixes directly.
    """

    by_op: Counter[str] = field(default_factory=Counter)
    gets_by_prefix: Counter[str] = field(default_factory=Counter)
    heads_by_prefix: Counter[str] = field(default_factory=Counter)
    puts_by_prefix: Counter[str] = field(default_factory=Counter)
    deletes_by_prefix: Counter[str] = field(default_factory=Counter)
    lists_by_prefix: Counter[str] = field(default_factory=Counter)
    bytes_put_by_prefix: Counter[str] = field(default_factory=Counter)
    bytes_got_by_prefix: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.by_op.values())


class CountingStore(StoreWrapper):
    """Counts every request to ``inner`` in :attr:`counts`; thread-safe."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.counts = RequestCounts()
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Start counting from zero (e.g. after a test's setup)."""
        with self._lock:
            self.counts = RequestCounts()

    def snapshot(self) -> RequestCounts:
        """A copy of the counts so far, unaffected by later requests."""
        with self._lock:
            return copy.deepcopy(self.counts)

    def _count(self, op: str, per_prefix: str, key: str, nbytes: int = 0) -> None:
        prefix = key_prefix(key)
        with self._lock:
            self.counts.by_op[op] += 1
            getattr(self.counts, per_prefix)[prefix] += 1
            if op == "put":
                self.counts.bytes_put_by_prefix[prefix] += nbytes
            elif op == "get":
                self.counts.bytes_got_by_prefix[prefix] += nbytes

    def get(self, key: str) -> bytes:
        return self.get_with_etag(key)[0]

    def get_with_etag(self, key: str) -> tuple[bytes, str]:
        try:
            data, etag = self.inner.get_with_etag(key)
        except Exception:
            self._count("get", "gets_by_prefix", key)
            raise
        self._count("get", "gets_by_prefix", key, len(data))
        return data, etag

    def head(self, key: str) -> ObjectInfo:
        self._count("head", "heads_by_prefix", key)
        return self.inner.head(key)

    def put(
        self, key: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None
    ) -> str:
        self._count("put", "puts_by_prefix", key, len(data))
        return self.inner.put(key, data, if_absent=if_absent, if_match=if_match)

    def delete(self, key: str) -> None:
        self._count("delete", "deletes_by_prefix", key)
        self.inner.delete(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        self._count("list", "lists_by_prefix", prefix)
        return self.inner.list(prefix)


class ImmutableOverwrite(AssertionError):
    """An immutable object was (about to be) overwritten: a bug in the engine."""


class ImmutableGuardStore(StoreWrapper):
    """Raises :class:`ImmutableOverwrite` on any overwrite of an immutable key.

    A key is mutable if it starts with one of ``mutable_prefixes``; everything else is
    immutable and may only be created. Caught, before the write reaches ``inner``:

    * a plain ``put`` (no condition) of *different* bytes to a key that exists, and any
      ``if_match`` put to a key that exists (nothing compare-and-swaps an immutable
      object);
    * a put of *different* bytes to a key this guard saw written before, even if the
      object was deleted in between (GC may delete and a writer may re-create an
      object, but a content address never names two contents).

    Allowed: ``put(if_absent=True)`` on an existing key (it cannot overwrite; the
    store answers PreconditionFailed), and a plain ``put`` of the *identical* bytes
    over an existing object: that is a refresh, which a writer does to renew the mtime
    of an old object it dedups against so GC keeps it (strata.chunks.objects); it
    changes nothing a reader can see. The existence check and the write are separate
    requests, so this is a test aid, not a lock.
    """

    def __init__(self, inner: Store, mutable_prefixes: Iterable[str] = ("heads/",)) -> None:
        super().__init__(inner)
        self.mutable_prefixes = tuple(mutable_prefixes)
        self._digests: dict[str, str] = {}
        self._lock = threading.Lock()

    def _is_mutable(self, key: str) -> bool:
        return key.startswith(self.mutable_prefixes)

    def put(
        self, key: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None
    ) -> str:
        if self._is_mutable(key):
            return self.inner.put(key, data, if_absent=if_absent, if_match=if_match)
        digest = hashlib.sha256(data).hexdigest()
        with self._lock:
            seen = self._digests.get(key)
        if seen is not None and seen != digest:
            raise ImmutableOverwrite(
                f"immutable object {key!r} in {self.url} written again with different bytes"
            )
        if not if_absent:
            self._check_overwrite(key, data, if_match)
        etag = self.inner.put(key, data, if_absent=if_absent, if_match=if_match)
        with self._lock:
            self._digests[key] = digest
        return etag

    def _check_overwrite(self, key: str, data: bytes, if_match: str | None) -> None:
        """Fail an unconditional or CAS put that would change an existing object."""
        try:
            current = self.inner.get(key)
        except ObjectNotFound:
            return  # a first write
        if if_match is None and current == data:
            return  # a refresh: same bytes, new mtime
        how = "a compare-and-swap put" if if_match is not None else "a plain put of other bytes"
        raise ImmutableOverwrite(
            f"{how} would overwrite immutable object {key!r} in {self.url}; immutable "
            f"objects are written once with if_absent=True and only ever rewritten with "
            f"identical bytes (mutable prefixes: {', '.join(self.mutable_prefixes) or 'none'})"
        )
