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
   read once). Note every live writer claim in those heads.
3. **List** ``chunks/`` and ``trees/``: every unmarked object is a candidate.
4. **Re-read** heads and manifests and mark anything new (commits that landed during
   the run), and note the live writer claims again.
5. **Cut off.** ``cutoff = min(now - grace, S - claim_margin)``, where ``S`` is the
   earliest ``since`` of the writer claims noted in steps 2 and 4 that are still live
   (``expires + claim_margin > now``), across all volumes. No object with an mtime at
   or after the cutoff is swept.
6. **Sweep** candidates still unmarked: HEAD each one again and delete it only if its
   mtime, as the store says now, is before the cutoff. Dry-run does steps 1-5 and
   judges by the listed mtimes, deleting nothing.

Why this is safe while writers run (the unit of protection is the writer *session*:
from ``since``, when its claim was acquired, until the claim lapses):

* Uploads. Writers upload chunks and trees *before* the manifest that references
  them, and the manifest before the head. Everything a live session uploaded has an
  mtime at or after its ``since``, so no cutoff reaches it, however long the session
  keeps it uncommitted (a mount open for hours; autosave only checkpoints locally).
  A writer renews its claim on a timer; a crashed one stops, its claim lapses, and
  then its uploads are ordinary garbage once older than the grace window. So a
  session that recovers a crashed one's state, or one whose claim lapsed before it
  renewed it (fencing is by epoch, so it may still commit), must not trust uploads
  from before its own ``since``: it re-checks them with ``has_chunk(fresh=True)``
  and re-puts the ones that answer False (a re-put refreshes or re-creates).
* Dedup. A writer that finds an object already present (``put(if_absent)`` loses,
  or its ContentStore remembers the digest) references an object that may be old
  and unreferenced (its version was deleted). The ContentStore refreshes such an
  object: if its mtime is before ``refresh_before`` (the session's ``since`` or
  later) it writes the identical content-addressed bytes again, which changes
  nothing but the mtime, so the object joins the session's protected uploads.
  Remembered digests skip that check only when known to be younger than
  ``refresh_before`` (see :mod:`strata.chunks.objects`).
* Reuse without a put: a writer's base tree is reachable from its volume's head,
  which only that writer moves and GC always marks.
* Races with this run. Heads and manifests are re-read after the listing (step 4):
  a commit that landed meanwhile is marked before anything is deleted, and a claim
  acquired meanwhile is seen. A claim acquired after step 4 starts after this run's
  ``now - grace``, and so does everything its session uploads or refreshes. A refresh
  that lands after the listing is seen by the HEAD in step 6. The one window left is
  between that HEAD and its DELETE, one request long (git's prune has the same one):
  a refresh of that very object inside it is lost, and a commit referencing it would
  name a missing object. Closing it needs a conditional delete, which the store
  interface does not have; re-checking, at commit time, the objects the session
  refreshed (a HEAD each) would catch it in practice.
* ``claim_margin`` (default 5 min) absorbs clock skew between writer hosts, this
  host and the store, which stamps mtimes: ``since`` and ``expires`` are writer
  clock readings, mtimes are store clock readings.
* Deletion is idempotent and GC holds no lock: two concurrent runs are wasteful, never
  wrong.

The cost: one live session pins all garbage created since it started, in every volume
(a long-lived writable mount delays reclamation; :attr:`GcReport.kept_for_writers`
counts what it pins), and a dedup hit on an object older than the session costs a
HEAD and one rewrite of it.
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
from strata.meta.head import Head, WriterState, read_head
from strata.meta.names import format_ref
from strata.meta.repo import Repository
from strata.meta.treefmt import BlockIndex, BlockPage, DirIndex, DirPage
from strata.meta.version import Version, VersionInUse

__all__ = [
    "DEFAULT_CLAIM_MARGIN",
    "DEFAULT_GRACE",
    "GcError",
    "GcReport",
    "collect_garbage",
    "expire_versions",
]

log = logging.getLogger(__name__)

DEFAULT_GRACE = 3600.0
#: seconds of clock skew tolerated between writers, GC and the store (module docstring)
DEFAULT_CLAIM_MARGIN = 300.0

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
    kept_for_writers: int = 0  # unreferenced, older than grace, newer than a live claim
    protected_since: float | None = None  # the cutoff live writer claims set, if any
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
    repo: Repository,
    *,
    grace: float = DEFAULT_GRACE,
    dry_run: bool = False,
    claim_margin: float = DEFAULT_CLAIM_MARGIN,
) -> GcReport:
    """Run retention, mark and sweep (see the module docstring). Returns a report."""
    started = time.monotonic()
    report = GcReport(dry_run=dry_run)
    report.versions_expired = expire_versions(repo, grace=grace, dry_run=dry_run)
    skip = set(report.versions_expired) if dry_run else set()
    marker = _Marker(repo)
    claims = _mark_all(repo, marker, skip)
    candidates = [
        info
        for prefix, live in ((TREES, marker.trees), (CHUNKS, marker.chunks))
        for info in repo.store.list(prefix)
        if digest_of(info.key) not in live
    ]
    claims += _mark_all(repo, marker, skip)  # commits and claims that landed meanwhile
    now = repo.clock()
    young = now - grace
    report.protected_since = _protected_since(claims, now, claim_margin)
    cutoff = young if report.protected_since is None else min(young, report.protected_since)
    for info in candidates:
        kind = "tree" if info.key.startswith(TREES) else "chunk"
        if digest_of(info.key) in (marker.trees if kind == "tree" else marker.chunks):
            continue
        if not dry_run and info.mtime < cutoff:
            # The listing may be stale: a writer may have refreshed this object (a dedup
            # hit) since. Judge by what the store says now.
            try:
                info = repo.store.head(info.key)
            except ObjectNotFound:
                continue  # deleted meanwhile (a concurrent GC run)
        if info.mtime >= cutoff:
            if info.mtime >= young:
                report.kept_young += 1
            else:
                report.kept_for_writers += 1
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
        "gc %s: %d versions expired, %d trees and %d chunks freed (%d bytes), %d young kept, "
        "%d kept for live writers",
        "dry-run" if dry_run else "sweep",
        len(report.versions_expired),
        report.trees_freed,
        report.chunks_freed,
        report.bytes_freed,
        report.kept_young,
        report.kept_for_writers,
    )
    return report


def _protected_since(claims: Iterable[WriterState], now: float, margin: float) -> float | None:
    """The earliest ``since`` of the live claims, minus ``margin``; None if none is live.

    A claim counts as live until ``margin`` after it expires: its ``expires`` is the
    writer's clock reading, and ours may run ahead of it.
    """
    sinces = [w.since for w in claims if w.expires + margin > now]
    return min(sinces) - margin if sinces else None


def _mark_all(repo: Repository, marker: _Marker, skip: Iterable[str]) -> list[WriterState]:
    """Mark from every remaining manifest, then from every live head (read last).

    Returns the writer claims recorded in those heads (live or not; the caller judges).
    """
    skip = set(skip)
    for info in repo.store.list(VERSIONS):
        _, vol, vid = info.key.split("/", 2)
        if format_ref(vol, vid) in skip:
            continue
        try:
            marker.mark_root(repo.manifest(vol, vid).root)
        except VersionNotFound:
            continue  # deleted since the listing: nothing to keep for it
    claims: list[WriterState] = []
    for name, head in _heads(repo).items():
        if head.writer is not None:
            claims.append(head.writer)  # a deleted volume's too: conservative
        if not head.deleted and head.version:
            try:
                marker.mark_root(repo.version(head.version).root)
            except VersionNotFound as exc:
                raise GcError(
                    f"the head of volume {name!r} names {head.version}, which is missing; "
                    "refusing to sweep"
                ) from exc
    return claims
