"""Reading versions and their history; the shared base of the repository classes.

A version's ``parent`` names the volume that stored it, so the history of a fork runs
on through its source's manifests. A deleted middle version leaves a *graft* in its
volume's head (its id → the nearest older surviving version), so history walks skip
the gap. Manifests are immutable, so they are cached in a bounded LRU.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator

from strata.chunks.objects import ContentStore
from strata.errors import VersionNotFound, VolumeNotFound
from strata.meta import version as vmod
from strata.meta.head import Head, read_head
from strata.meta.names import check_volume_name, parse_ref
from strata.meta.tree import TreeReader, TreeWriter
from strata.meta.version import Version
from strata.store.base import Store

__all__ = ["HistoryBase"]


class HistoryBase:
    """Store, content, trees, clock, heads and manifests: what every operation needs."""

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

    def _head(self, name: str) -> Head:
        check_volume_name(name)
        h, _ = read_head(self.store, name)
        return self._live(name, h)

    @staticmethod
    def _live(name: str, h: Head | None) -> Head:
        if h is None or h.deleted:
            raise VolumeNotFound(name)
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
