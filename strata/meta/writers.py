"""Writer claims and commits: the fencing half of :class:`strata.meta.repo.Repository`.

:meth:`WriterOps.acquire_writer` increments the head's ``epoch`` and records the
holder; :meth:`WriterOps.commit` writes the manifest and then moves the head in a CAS
that re-checks ``epoch`` and holder against the claim, so a writer whose claim was
taken over can never move the head, even if it raced (invariant 5). An expired claim
that nobody took over still commits: fencing is by epoch, not by clock.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from strata.chunks.hashing import check_digest
from strata.chunks.layout import version_key
from strata.errors import FencedWriter, VersionNotFound, VolumeBusy
from strata.meta import version as vmod
from strata.meta.entry import Entry
from strata.meta.head import Head, WriterState, read_head, update_head
from strata.meta.history import HistoryBase
from strata.meta.version import Stats, Version

__all__ = ["WriterClaim", "WriterOps", "busy_message"]

_UNSET: object = object()


@dataclass(frozen=True)
class WriterClaim:
    """Proof that ``holder`` may write ``volume`` while the head's epoch is ``epoch``."""

    volume: str
    holder: str
    epoch: int
    expires: float
    ttl: float = 0.0


class WriterOps(HistoryBase):
    """acquire / renew / release a writer claim, and commit under it."""

    def acquire_writer(self, name: str, holder: str, ttl: float) -> WriterClaim:
        """Claim the volume for ``holder`` for ``ttl`` seconds; the epoch increments.

        VolumeBusy names the current holder when another live claim exists. An expired
        claim is taken over; so is one by the same holder (a restarted process), which
        fences that holder's older session.
        """
        if not holder:
            raise ValueError("a writer claim needs a non-empty holder")
        if ttl < 0:
            raise ValueError(f"a writer claim needs a ttl >= 0 seconds, not {ttl}")
        now = self.clock()

        def change(cur: Head | None) -> Head:
            h = self._live(name, cur)
            if h.writer and h.writer.live(now) and h.writer.holder != holder:
                raise VolumeBusy(busy_message(name, h.writer, now))
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
        root_attrs: Entry | None = None,
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
            root_attrs=root_attrs,
        )
        v = vmod.write_manifest(self.store, claim.volume, body)

        def change(cur: Head | None) -> Head:
            c = self._fenced_check(claim, cur)
            if c.version == v.ref:
                # Our earlier attempt landed but its reply was lost: already done. (Never
                # treat this as fenced: the manifest would be deleted under the head.)
                return c
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


def _holds(h: Head, claim: WriterClaim) -> bool:
    w = h.writer
    return (
        w is not None
        and h.epoch == claim.epoch
        and w.epoch == claim.epoch
        and w.holder == claim.holder
    )


def busy_message(name: str, w: WriterState, now: float) -> str:
    return (
        f"volume {name!r} is being written by {w.holder!r} (epoch {w.epoch}); "
        f"the claim expires in {max(0.0, w.expires - now):.0f}s"
    )
