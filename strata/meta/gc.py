"""Garbage collection: retention, then mark-and-sweep of chunks and trees (invariant 7).

One run:

1. **Expire versions.** Per live volume with a retention rule, a version stored under
   that volume is kept if it is among the newest ``keep_last`` of its history or younger
   than ``max_age`` (a version any set rule keeps is kept); the others are deleted with
   :meth:`Repository.delete_version`. Never deleted: any volume's head version, and any
   version in another live volume's history (a fork's base and everything before it).
   Manifests in no live volume's history (a deleted volume's leftovers once no fork
   needs them, a commit that crashed between manifest and head) are deleted once older
   than the grace window.
2. **Mark** every tree and chunk reachable from every live head and every remaining
   manifest, walking trees and skipping subtrees already marked (shared subtrees are
   read once).
3. **List** ``chunks/`` and ``trees/``: every unmarked object is a candidate.
4. **Re-read** heads and manifests and mark anything new (commits that landed during
   the run), so a version sealed meanwhile keeps what it references.
5. **Sweep** candidates still unmarked whose store mtime is older than the grace window
   (default 1 h). Dry-run does steps 1-4 without deleting anything.

Why this is safe while writers run:

* Writers upload chunks and trees *before* the manifest that references them, and the
  manifest before the head. An object uploaded for a commit that has not landed yet is
  younger than the grace window, so it is never swept, provided the grace window is
  longer than any writer's upload-to-commit time (autosave commits keep that short).
* Objects a writer reuses without uploading must be reachable from a version GC keeps:
  its base head (never expired) or something it uploaded itself less than the grace
  window ago. A writer must not skip an upload because of an old, remembered
  "present" answer about an object no live version references: GC may have swept it
  (ContentStore remembers digests; callers bound how long that knowledge is trusted).
* Heads and manifests are re-read after the listing (step 4): a commit that landed
  after the first read is marked before anything is deleted.
* Deletion is idempotent and GC holds no lock: two concurrent runs are wasteful, never
  wrong. Deleting an object that a concurrent dedup ``put(if_absent)`` just "found" is
  the one race the grace window and the rule above exist for.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client import Counter

from strata.chunks.layout import CHUNKS, TREES, VERSIONS, digest_of
from strata.errors import ObjectNotFound, StrataError, VersionNotFound
from strata.meta.entry import Kind
from strata.meta.head import Head, read_head
from strata.meta.names import format_ref
from strata.meta.repo import Repository
from strata.meta.treefmt import BlockIndex, BlockPage, DirIndex, DirPage
from strata.meta.version import Version, VersionInUse

__all__ = ["DEFAULT_GRACE", "GcError", "GcReport", "collect_garbage", "expire_versions"]

log = logging.getLogger(__name__)

DEFAULT_GRACE = 3600.0

GC_RUNS = Counter("strata_gc_runs_total", "Garbage collection runs", ["mode"])
GC_OBJECTS_FREED = Counter(
    "strata_gc_objects_freed_total", "Objects deleted by garbage collection", ["kind"]
)
GC_BYTES_FREED = Counter(
    "strata_gc_bytes_freed_total", "Stored bytes deleted by garbage collection", ["kind"]
)
GC_VERSIONS_EXPIRED = Counter(
    "strata_gc_versions_expired_total", "Version manifests deleted by retention or as orphans"
)


class GcError(StrataError):
    """GC stopped before sweeping: the reachable set could not be computed."""


@dataclass
class GcReport:
    """What a run did (or, in dry-run, would do)."""

    dry_run: bool
    versions_expired: list[str] = field(default_factory=list)
    trees_live: int = 0
    chunks_live: int = 0
    trees_freed: int = 0
    chunks_freed: int = 0
    bytes_freed: int = 0
    kept_young: int = 0  # unreferenced but inside the grace window
    seconds: float = 0.0

    @property
    def objects_freed(self) -> int:
        return self.trees_freed + self.chunks_freed


class _Marker:
    """The reachable set, grown by walking trees from version roots."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.trees: set[str] = set()
        self.chunks: set[str] = set()

    def mark_root(self, root: str) -> None:
        stack = [root]
        while stack:
            digest = stack.pop()
            if digest in self.trees:
                continue  # shared subtree: already walked
            try:
                node = self.repo.trees.node(digest)
            except ObjectNotFound as exc:
                raise GcError(
                    f"tree {digest} is referenced but missing from {self.repo.store.url}; "
                    "refusing to sweep (run a store check)"
                ) from exc
            self.trees.add(digest)
            if isinstance(node, DirPage):
                for e in node.entries:
                    if e.kind == Kind.DIR:
                        stack.append(e.tree)
                    elif e.kind == Kind.FILE:
                        self.chunks.update(b.hash for b in e.content.blocks if b.hash)
                        if e.content.pages:
                            stack.append(e.content.pages)
            elif isinstance(node, DirIndex | BlockIndex):
                stack.extend(c.hash for c in node.children)
            elif isinstance(node, BlockPage):
                self.chunks.update(b.hash for b in node.blocks if b.hash)


def _heads(repo: Repository) -> dict[str, Head]:
    out = {}
    for info in repo.store.list("heads/"):
        name = info.key[len("heads/") :]
        head, _ = read_head(repo.store, name)
        if head is not None:
            out[name] = head
    return out


def _lineages(repo: Repository, heads: dict[str, Head]) -> dict[str, list[Version]]:
    return {n: list(repo.history(h.version)) for n, h in heads.items() if not h.deleted}


def expire_versions(
    repo: Repository, *, grace: float = DEFAULT_GRACE, dry_run: bool = False
) -> list[str]:
    """Step 1: apply retention and drop orphan manifests; return the refs expired."""
    now = repo.clock()
    heads = _heads(repo)
    lineage = _lineages(repo, heads)
    in_some_history = {v.ref for vs in lineage.values() for v in vs}
    head_refs = {h.version for h in heads.values() if not h.deleted and h.version}
    expired: list[str] = []
    for info in repo.store.list(VERSIONS):
        _, vol, vid = info.key.split("/", 2)
        ref = format_ref(vol, vid)
        if ref not in in_some_history and info.mtime < now - grace:
            expired.append(ref)
    for name, versions in lineage.items():
        rule = heads[name].settings.retention
        if rule.keep_last is None and rule.max_age is None:
            continue
        others = {v.ref for n, vs in lineage.items() if n != name for v in vs}
        own = [v for v in versions if v.volume == name]  # newest first
        for i, v in enumerate(own):
            kept = (rule.keep_last is not None and i < rule.keep_last) or (
                rule.max_age is not None and v.created >= now - rule.max_age
            )
            if not kept and v.ref not in head_refs and v.ref not in others:
                expired.append(v.ref)
    if not dry_run:
        for ref in reversed(expired):  # oldest first: fewer grafts to record
            try:
                repo.delete_version(ref)
            except VersionNotFound:
                continue  # deleted concurrently
            except VersionInUse:
                continue  # became a head meanwhile (e.g. a fork landed): keep it
            GC_VERSIONS_EXPIRED.inc()
    return expired


def collect_garbage(
    repo: Repository, *, grace: float = DEFAULT_GRACE, dry_run: bool = False
) -> GcReport:
    """Run retention, mark and sweep (see the module docstring). Returns a report."""
    started = time.monotonic()
    report = GcReport(dry_run=dry_run)
    report.versions_expired = expire_versions(repo, grace=grace, dry_run=dry_run)
    skip = set(report.versions_expired) if dry_run else set()
    marker = _Marker(repo)
    _mark_all(repo, marker, skip)
    candidates = [
        info
        for prefix, live in ((TREES, marker.trees), (CHUNKS, marker.chunks))
        for info in repo.store.list(prefix)
        if digest_of(info.key) not in live
    ]
    _mark_all(repo, marker, skip)  # commits that landed while we listed
    cutoff = repo.clock() - grace
    for info in candidates:
        kind = "tree" if info.key.startswith(TREES) else "chunk"
        if digest_of(info.key) in (marker.trees if kind == "tree" else marker.chunks):
            continue
        if info.mtime >= cutoff:
            report.kept_young += 1
            continue
        if not dry_run:
            repo.store.delete(info.key)
            GC_OBJECTS_FREED.labels(kind).inc()
            GC_BYTES_FREED.labels(kind).inc(info.size)
        report.bytes_freed += info.size
        if kind == "tree":
            report.trees_freed += 1
        else:
            report.chunks_freed += 1
    if not dry_run and report.objects_freed:
        repo.content.forget_present()  # this process must not dedup against swept objects
    report.trees_live, report.chunks_live = len(marker.trees), len(marker.chunks)
    report.seconds = time.monotonic() - started
    GC_RUNS.labels("dry-run" if dry_run else "sweep").inc()
    log.info(
        "gc %s: %d versions expired, %d trees and %d chunks freed (%d bytes), %d young kept",
        "dry-run" if dry_run else "sweep",
        len(report.versions_expired),
        report.trees_freed,
        report.chunks_freed,
        report.bytes_freed,
        report.kept_young,
    )
    return report


def _mark_all(repo: Repository, marker: _Marker, skip: Iterable[str]) -> None:
    """Mark from every remaining manifest, then from every live head (read last)."""
    skip = set(skip)
    for info in repo.store.list(VERSIONS):
        _, vol, vid = info.key.split("/", 2)
        if format_ref(vol, vid) in skip:
            continue
        try:
            marker.mark_root(repo.manifest(vol, vid).root)
        except VersionNotFound:
            continue  # deleted since the listing: nothing to keep for it
    for name, head in _heads(repo).items():
        if not head.deleted and head.version:
            try:
                marker.mark_root(repo.version(head.version).root)
            except VersionNotFound as exc:
                raise GcError(
                    f"the head of volume {name!r} names {head.version}, which is missing; "
                    "refusing to sweep"
                ) from exc
