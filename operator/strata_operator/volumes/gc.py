"""Store garbage collection on a schedule: the engine's retention + mark-and-sweep.

One run at a time: one loop per operator, and only the replica holding the leader
Lease runs it (a second concurrent run would be wasteful, never wrong, per the engine).
The first run waits one interval, so a crash-looping operator does not GC on every
start. Mirrored VolumeVersions of versions retention removed disappear on the mirror
loop's next pass.
"""

from __future__ import annotations

import logging

from strata.meta.gc import GcReport, collect_garbage
from strata.meta.repo import Repository
from strata_operator.deps import Deps

__all__ = ["GarbageCollector"]

log = logging.getLogger(__name__)


class GarbageCollector:
    """Runs :func:`strata.meta.gc.collect_garbage` and records what it freed."""

    def __init__(self, deps: Deps, repo: Repository) -> None:
        self.deps = deps
        self.repo = repo
        self.last: GcReport | None = None

    def run(self) -> GcReport:
        metrics = self.deps.metrics
        try:
            with metrics.gc_seconds.time():
                report = collect_garbage(self.repo, grace=self.deps.settings.gc_grace)
        except Exception:
            metrics.gc_runs.labels(result="error").inc()
            raise
        metrics.gc_runs.labels(result="ok").inc()
        metrics.gc_freed_bytes.inc(report.bytes_freed)
        metrics.gc_freed_objects.inc(report.objects_freed)
        metrics.gc_versions_expired.inc(len(report.versions_expired))
        self.last = report
        log.info(
            "store GC: %d versions expired, %d objects (%d bytes) freed, %d kept (young), "
            "%d kept for live writers, %.1fs",
            len(report.versions_expired),
            report.objects_freed,
            report.bytes_freed,
            report.kept_young,
            report.kept_for_writers,
            report.seconds,
        )
        return report
