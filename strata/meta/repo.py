"""The repository: the public engine API over one store (volumes, versions, writers).

Every operation is a few small requests whose number does not grow with volume size;
the only mutable objects are ``heads/<volume>``, changed by compare-and-swap
(:mod:`strata.meta.head`). Version manifests are immutable and cached in memory.

The class is assembled from layers, each in its own module: reading versions and
history (:mod:`strata.meta.history`), writer claims, fencing and commit
(:mod:`strata.meta.writers`), and here the volume operations (create, fork, delete,
list, inspect), version lookup, log, diff and version deletion.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from strata.chunks.layout import FORMAT_KEY, FORMAT_VERSION, HEADS, version_key, versions_prefix
from strata.errors import (
    ObjectNotFound,
    PreconditionFailed,
    UnsupportedFormat,
    VersionNotFound,
    VolumeBusy,
    VolumeExists,
    VolumeNotFound,
)
from strata.meta.diff import Diff, diff_trees
from strata.meta.head import Head, Retention, Settings, WriterState, read_head, update_head
from strata.meta.names import check_volume_name, format_ref, parse_ref
from strata.meta.version import Version, VersionInUse
from strata.meta.writers import WriterClaim, WriterOps, busy_message
from strata.store.base import Store

__all__ = ["Repository", "VolumeInfo", "WriterClaim"]


@dataclass(frozen=True)
class VolumeInfo:
    """What :meth:`Repository.volume` reports (the operator's Volume status reads it)."""

    name: str
    head: Version | None  # None: the volume has no version yet
    version_count: int  # versions in its history (following forks)
    settings: Settings
    writer: WriterState | None  # the recorded claim, live or expired
    epoch: int
    created: float
    forked_from: str | None


class Repository(WriterOps):
    """Volumes, versions and writer claims in one store. Thread-safe."""

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
                raise VolumeBusy(busy_message(name, cur.writer, self.clock()))
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
