"""The repository: the public engine API over one store (volumes, versions, writers).

Every operation is a few small requests whose number does not grow with volume size;
the only mutable objects are ``heads/<volume>``, changed by compare-and-swap
(:mod:`strata.meta.head`). Version manifests are immutable and cached in memory.

Fencing (invariant 5). :meth:`Repository.acquire_writer` increments the head's
``epoch`` and records the holder; :meth:`Repository.commit` writes the manifest and
then moves the head in a CAS that re-checks ``epoch`` and holder against the claim, so
a writer whose claim was taken over can never move the head, even if it raced.

History. A version's ``parent`` names the volume that stored it, so the history of a
fork runs on through its source's manifests. A deleted middle version leaves a *graft*
in its volume's head (its id → its parent), so history walks skip the gap.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from strata.chunks.hashing import check_digest
from strata.chunks.layout import FORMAT_KEY, FORMAT_VERSION, HEADS, version_key, versions_prefix
from strata.chunks.objects import ContentStore
from strata.errors import (
    FencedWriter,
    ObjectNotFound,
    PreconditionFailed,
    UnsupportedFormat,
    VersionNotFound,
    VolumeBusy,
    VolumeExists,
    VolumeNotFound,
)
from strata.meta import version as vmod
from strata.meta.diff import Diff, diff_trees
from strata.meta.head import Head, Retention, Settings, WriterState, read_head, update_head
from strata.meta.names import check_volume_name, format_ref, parse_ref
from strata.meta.tree import TreeReader, TreeWriter
from strata.meta.version import Stats, Version, VersionInUse
from strata.store.base import Store

__all__ = ["Repository", "VolumeInfo", "WriterClaim"]

_UNSET: object = object()


@dataclass(frozen=True)
class WriterClaim:
    """Proof that ``holder`` may write ``volume`` while the head's epoch is ``epoch``."""

    volume: str
    holder: str
    epoch: int
    expires: float
    ttl: float = 0.0


@dataclass(frozen=True)
class VolumeInfo:
    name: str
    head: Version | None  # None: the volume has no version yet
    version_count: int  # versions in its history (following forks)
    settings: Settings
    writer: WriterState | None  # the recorded claim, live or expired
    epoch: int
    created: float
    forked_from: str | None


class Repository:
    """Volumes, versions and writer claims in one store. Thread-safe."""

    def __init__(
        self,
        store: Store,
        *,
        content: ContentStore | None = None,
        clock: Callable[[], float] = time.time,
        manifest_cache: int = 4096,
    ) -> None:
        self.store = store
        self.content = content if content is not None else ContentStore(store)
        self.trees = TreeReader(self.content)
        self.tree_writer = TreeWriter(self.content)
        self.clock = clock
        self._manifests: OrderedDict[tuple[str, str], Version] = OrderedDict()
        self._cap = manifest_cache
        self._lock = threading.Lock()

    @classmethod
    def open(cls, store: Store, **kwargs: object) -> Repository:
        """Open a store, creating the format marker on first use; refuse newer formats."""
        try:
            data = store.get(FORMAT_KEY)
        except ObjectNotFound:
            marker = {"format": FORMAT_VERSION, "created_ms": int(time.time() * 1000)}
            data = json.dumps(marker, sort_keys=True).encode()
            try:
                store.put(FORMAT_KEY, data, if_absent=True)
            except PreconditionFailed:
                data = store.get(FORMAT_KEY)  # another process initialised it first
        try:
            fmt = json.loads(data)["format"]
        except (ValueError, KeyError, TypeError) as exc:
            raise UnsupportedFormat(
                f"{store.url}: unreadable format marker {FORMAT_KEY}: {exc}"
            ) from exc
        if not isinstance(fmt, int) or fmt != FORMAT_VERSION:
            raise UnsupportedFormat(
                f"{store.url} uses store format {fmt!r}; this Strata reads format "
                f"{FORMAT_VERSION} only (upgrade Strata to use this store)"
            )
        return cls(store, **kwargs)  # type: ignore[arg-type]

    # --- volumes ---------------------------------------------------------------------

    def create_volume(
        self, name: str, *, retention: Retention | None = None, high_throughput: bool = False
    ) -> VolumeInfo:
        """Create an empty volume (VolumeExists if it exists)."""
        check_volume_name(name)
        settings = Settings(retention or Retention(), high_throughput)
        self._create_head(name, lambda old: Head(name, settings=settings, **old))
        return self.volume(name)

    def fork(
        self,
        source_ref: str,
        new_name: str,
        *,
        retention: Retention | None = None,
        high_throughput: bool | None = None,
    ) -> Head:
        """New volume ``new_name`` whose head is ``source_ref`` (``name`` or ``name@id``).

        O(1): reads the source head (and manifest), writes only the new head, and returns
        it. No chunk, tree or manifest is copied, and the history is not walked; the new
        volume's history continues into the source's.
        """
        check_volume_name(new_name)
        src_name, vid = parse_ref(source_ref)
        src = self._head(src_name)
        base = src.version if vid is None else self.version(source_ref).ref
        settings = Settings(
            retention if retention is not None else src.settings.retention,
            src.settings.high_throughput if high_throughput is None else high_throughput,
        )
        return self._create_head(
            new_name,
            lambda old: Head(
                new_name, version=base, settings=settings, forked_from=base or src_name, **old
            ),
        )

    def _create_head(self, name: str, make: Callable[[dict[str, object]], Head]) -> Head:
        def change(cur: Head | None) -> Head:
            if cur is not None and not cur.deleted:
                raise VolumeExists(name)
            # A recreated volume continues the old epoch (old writers stay fenced).
            old: dict[str, object] = {"created": self.clock()}
            if cur is not None:
                old.update(epoch=cur.epoch + 1, grafts=cur.grafts)
            return make(old)

        h = update_head(self.store, name, change)
        assert h is not None
        return h

    def list_volumes(self) -> list[str]:
        """Names of every existing volume, sorted."""
        names = []
        for info in self.store.list(HEADS):
            name = info.key[len(HEADS) :]
            head, _ = read_head(self.store, name)
            if head is not None and not head.deleted:
                names.append(name)
        return names

    def volume(self, name: str) -> VolumeInfo:
        """Head, history length, settings and writer of one volume."""
        h = self._head(name)
        count = sum(1 for _ in self.history(h.version))
        head = self._manifest_ref(h.version) if h.version else None
        return VolumeInfo(
            name, head, count, h.settings, h.writer, h.epoch, h.created, h.forked_from
        )

    def head(self, name: str) -> Head:
        """The raw head record (for callers that need the epoch or the grafts)."""
        return self._head(name)

    def delete_volume(self, name: str, *, missing_ok: bool = False, force: bool = False) -> None:
        """Delete a volume: tombstone its head, drop its manifests no other volume needs.

        Refuses (VolumeBusy) while a live writer holds it unless ``force``; the epoch is
        incremented either way, so that writer is fenced. Data is freed by GC.
        """

        def change(cur: Head | None) -> Head | None:
            if cur is None or cur.deleted:
                if missing_ok:
                    return cur
                raise VolumeNotFound(name)
            if cur.writer and cur.writer.live(self.clock()) and not force:
                raise VolumeBusy(_busy(name, cur.writer, self.clock()))
            return replace(cur, version=None, writer=None, epoch=cur.epoch + 1, deleted=True)

        update_head(self.store, name, change)
        needed = self.needed_by_others(name)
        for info in list(self.store.list(versions_prefix(name))):
            vid = info.key.rsplit("/", 1)[-1]
            if format_ref(name, vid) not in needed:
                self.store.delete(info.key)
                self._forget(name, vid)

    def needed_by_others(self, name: str) -> set[str]:
        """Refs of every version in the history of a live volume other than ``name``."""
        needed: set[str] = set()
        for other in self.list_volumes():
            if other != name:
                needed.update(v.ref for v in self.history(self._head(other).version))
        return needed

    # --- versions --------------------------------------------------------------------

    def version(self, ref: str) -> Version:
        """``name`` (its head) or ``name@id`` (also ids of its history before a fork)."""
        name, vid = parse_ref(ref)
        if vid is None:
            h = self._head(name)
            if h.version is None:
                raise VersionNotFound(name, "(head: the volume has no version yet)")
            return self._manifest_ref(h.version)
        try:
            return self.manifest(name, vid)
        except VersionNotFound:
            head, _ = read_head(self.store, name)
            if head is not None and not head.deleted:
                for v in self.history(head.version):
                    if v.id == vid:
                        return v
            raise

    def log(self, name: str, limit: int | None = None) -> list[Version]:
        """History of a volume, newest first, following parents across forks."""
        out: list[Version] = []
        for v in self.history(self._head(name).version):
            if limit is not None and len(out) >= limit:
                break
            out.append(v)
        return out

    def diff(self, ref_a: str, ref_b: str) -> Diff:
        """Paths added, removed and modified from ``ref_a`` to ``ref_b``."""
        return diff_trees(self.trees, self._root_of(ref_a), self._root_of(ref_b))

    def _root_of(self, ref: str) -> str | None:
        name, vid = parse_ref(ref)
        if vid is None and self._head(name).version is None:
            return None  # an empty volume diffs as an empty tree
        return self.version(ref).root

    def delete_version(self, ref: str) -> None:
        """Delete one version's manifest (its data becomes garbage unless shared).

        Refuses (VersionInUse) the head of any volume. A middle version leaves a graft
        in its volume's head first, so later versions' history skips over it.
        """
        v = self.version(ref)
        for other in self.list_volumes():
            if self._head(other).version == v.ref:
                raise VersionInUse(f"version {v.ref} is the head of volume {other!r}")
        older = self._resolve_parent(v.parent)
        if older is not None:
            update_head(
                self.store,
                v.volume,
                lambda cur: (
                    None
                    if cur is None
                    else replace(
                        cur, grafts=tuple(sorted({**dict(cur.grafts), v.id: older}.items()))
                    )
                ),
            )
        self.store.delete(version_key(v.volume, v.id))
        self._forget(v.volume, v.id)

    # --- writers ---------------------------------------------------------------------

    def acquire_writer(self, name: str, holder: str, ttl: float) -> WriterClaim:
        """Claim the volume for ``holder`` for ``ttl`` seconds; the epoch increments.

        VolumeBusy names the current holder when another live claim exists. An expired
        claim is taken over; so is one by the same holder (a restarted process), which
        fences that holder's older session.
        """
        if not holder:
            raise ValueError("a writer claim needs a non-empty holder")
        now = self.clock()

        def change(cur: Head | None) -> Head:
            h = self._live(name, cur)
            if h.writer and h.writer.live(now) and h.writer.holder != holder:
                raise VolumeBusy(_busy(name, h.writer, now))
            epoch = h.epoch + 1
            return replace(h, epoch=epoch, writer=WriterState(holder, epoch, now, now + ttl, ttl))

        h = update_head(self.store, name, change)
        assert h is not None and h.writer is not None
        return WriterClaim(name, holder, h.epoch, h.writer.expires, ttl)

    def renew_writer(self, claim: WriterClaim, ttl: float | None = None) -> WriterClaim:
        """Extend a claim (FencedWriter if it was taken over in the meantime)."""
        ttl = claim.ttl if ttl is None else ttl
        now = self.clock()

        def change(cur: Head | None) -> Head:
            h = self._fenced_check(claim, cur)
            assert h.writer is not None
            return replace(h, writer=replace(h.writer, expires=now + ttl, ttl=ttl))

        update_head(self.store, claim.volume, change)
        return replace(claim, expires=now + ttl, ttl=ttl)

    def release_writer(self, claim: WriterClaim) -> None:
        """Give the volume up; a no-op if the claim is no longer current."""

        def change(cur: Head | None) -> Head | None:
            if cur is None or cur.deleted or not _holds(cur, claim):
                return cur
            return replace(cur, writer=None)

        update_head(self.store, claim.volume, change)

    def commit(
        self,
        claim: WriterClaim,
        root_tree: str,
        message: str = "",
        stats: Stats | None = None,
        parent: object = _UNSET,
        *,
        author: str = "",
    ) -> Version:
        """Seal ``root_tree`` as the volume's new head version.

        Writes the manifest, then moves the head by CAS only while the claim is current
        and the head is still ``parent`` (default: whatever the head is); otherwise
        raises FencedWriter and the head does not move. The tree must already be stored.
        """
        check_digest(root_tree)
        if not self.content.has_tree(root_tree):
            raise VersionNotFound(claim.volume, f"(root tree {root_tree} is not in the store)")
        h = self._fenced_check(claim, read_head(self.store, claim.volume)[0])
        base = h.version if parent is _UNSET else parent
        if base != h.version:
            raise FencedWriter(
                f"volume {claim.volume!r} moved to {h.version} but this writer started "
                f"from {base}; it can no longer commit"
            )
        body = vmod.manifest_body(
            volume=claim.volume,
            root=root_tree,
            parent=h.version,
            message=message,
            author=author,
            writer=claim.holder,
            epoch=claim.epoch,
            created=self.clock(),
            stats=stats or Stats(),
        )
        v = vmod.write_manifest(self.store, claim.volume, body)

        def change(cur: Head | None) -> Head:
            c = self._fenced_check(claim, cur)
            if c.version != h.version:
                raise FencedWriter(
                    f"volume {claim.volume!r} moved to {c.version} while this writer "
                    "committed; it can no longer commit"
                )
            return replace(c, version=v.ref)

        try:
            update_head(self.store, claim.volume, change)
        except FencedWriter:
            self.store.delete(version_key(v.volume, v.id))  # never referenced by anything
            raise
        self._remember(v)
        return v

    # --- internals -------------------------------------------------------------------

    def _head(self, name: str) -> Head:
        check_volume_name(name)
        h, _ = read_head(self.store, name)
        return self._live(name, h)

    @staticmethod
    def _live(name: str, h: Head | None) -> Head:
        if h is None or h.deleted:
            raise VolumeNotFound(name)
        return h

    def _fenced_check(self, claim: WriterClaim, cur: Head | None) -> Head:
        h = self._live(claim.volume, cur)
        if not _holds(h, claim):
            w = h.writer
            now_by = f"{w.holder!r} (epoch {w.epoch})" if w else f"nobody (epoch {h.epoch})"
            raise FencedWriter(
                f"volume {claim.volume!r} is now written by {now_by}; this writer "
                f"{claim.holder!r} (epoch {claim.epoch}) can no longer commit"
            )
        return h

    def history(self, ref: str | None) -> Iterator[Version]:
        """Versions from ``ref`` back through parents (and grafts), newest first."""
        seen: set[str] = set()
        while ref is not None and ref not in seen:
            seen.add(ref)
            try:
                v = self._manifest_ref(ref)
            except VersionNotFound:
                ref = self._graft(ref)
                continue
            yield v
            ref = v.parent

    def _graft(self, ref: str) -> str | None:
        name, vid = parse_ref(ref)
        head, _ = read_head(self.store, name)
        return None if head is None or vid is None else head.graft(vid)[1]

    def _resolve_parent(self, ref: str | None) -> str | None:
        """The nearest existing version at or before ``ref`` (following grafts)."""
        return next((v.ref for v in self.history(ref)), None)

    def _manifest_ref(self, ref: str) -> Version:
        name, vid = parse_ref(ref)
        if vid is None:
            raise VersionNotFound(name, "(a version reference needs NAME@ID)")
        return self.manifest(name, vid)

    def manifest(self, name: str, vid: str) -> Version:
        """The manifest ``versions/<name>/<vid>`` (cached: manifests are immutable)."""
        with self._lock:
            v = self._manifests.get((name, vid))
            if v is not None:
                self._manifests.move_to_end((name, vid))
                return v
        v = vmod.read_manifest(self.store, name, vid)
        self._remember(v)
        return v

    def _remember(self, v: Version) -> None:
        with self._lock:
            self._manifests[(v.volume, v.id)] = v
            while len(self._manifests) > self._cap:
                self._manifests.popitem(last=False)

    def _forget(self, name: str, vid: str) -> None:
        with self._lock:
            self._manifests.pop((name, vid), None)


def _holds(h: Head, claim: WriterClaim) -> bool:
    w = h.writer
    return (
        w is not None
        and h.epoch == claim.epoch
        and w.epoch == claim.epoch
        and w.holder == claim.holder
    )


def _busy(name: str, w: WriterState, now: float) -> str:
    return (
        f"volume {name!r} is being written by {w.holder!r} (epoch {w.epoch}); "
        f"the claim expires in {max(0.0, w.expires - now):.0f}s"
    )
