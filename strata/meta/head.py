"""Volume heads: the one mutable object per volume, changed only by compare-and-swap.

Key: ``heads/<volume>`` (:func:`strata.chunks.layout.head_key`). Body: JSON (sorted
keys; the head is not content-addressed, so canonical form is a convenience)::

    {"format": 1,
     "volume": str,
     "version": "VOL@ID" | null,   current head version (null: empty volume); VOL is the
                                   volume whose versions/ holds it (a fork's source
                                   until the fork's first commit)
     "epoch": int,                 fencing epoch: +1 on every writer claim and on
                                   delete; never decreases, survives delete/recreate
     "writer": null | {"holder": str, "epoch": int, "since_ms": int,
                       "expires_ms": int, "ttl_ms": int},
     "settings": {"keep_last": int | null, "max_age_s": int | null,
                  "high_throughput": bool},
     "created_ms": int,            when this incarnation of the volume was created
     "forked_from": "VOL@ID" | "VOL" | null,   source of a fork (VOL alone: an empty one)
     "deleted": bool,              tombstone: the volume does not exist, but the epoch
                                   and grafts are kept so a recreated volume continues
                                   them (an old writer can never commit to it)
     "grafts": {"ID": "VOL@ID" | null}}  a deleted middle version ID of this volume and
                                   the parent it had, so history walks skip the gap

CAS rules. A head is created with ``put(if_absent=True)`` and every later change is
``put(if_match=<etag read>)``: read, compute the new head from the old one, write
conditionally, and on :class:`~strata.errors.PreconditionFailed` read again and
recompute (:func:`update_head`). A writer may move ``version`` only while
``epoch == its claim's epoch`` and ``writer.holder`` is itself; both are checked inside
the same CAS that moves it, so a stale writer can never move the head (invariant 5).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from strata.chunks.layout import head_key
from strata.errors import CorruptObject, ObjectNotFound, PreconditionFailed, StoreUnavailable
from strata.store.base import Store

HEAD_FORMAT = 1
CAS_ATTEMPTS = 100


@dataclass(frozen=True)
class Retention:
    """Keep the newest ``keep_last`` versions and/or those younger than ``max_age`` s."""

    keep_last: int | None = None
    max_age: float | None = None


@dataclass(frozen=True)
class Settings:
    retention: Retention = field(default_factory=Retention)
    high_throughput: bool = False


@dataclass(frozen=True)
class WriterState:
    """The writer claim recorded in the head."""

    holder: str
    epoch: int
    since: float
    expires: float
    ttl: float

    def live(self, now: float) -> bool:
        return self.expires > now


@dataclass(frozen=True)
class Head:
    volume: str
    version: str | None = None
    epoch: int = 0
    writer: WriterState | None = None
    settings: Settings = field(default_factory=Settings)
    created: float = 0.0
    forked_from: str | None = None
    deleted: bool = False
    grafts: tuple[tuple[str, str | None], ...] = ()

    def graft(self, vid: str) -> tuple[bool, str | None]:
        """``(True, parent)`` if ``vid`` was a deleted middle version of this volume."""
        for k, v in self.grafts:
            if k == vid:
                return True, v
        return False, None


def _ms(t: float) -> int:
    return round(t * 1000)


def encode_head(h: Head) -> bytes:
    w = h.writer
    r = h.settings.retention
    obj: dict[str, Any] = {
        "format": HEAD_FORMAT,
        "volume": h.volume,
        "version": h.version,
        "epoch": h.epoch,
        "writer": None
        if w is None
        else {
            "holder": w.holder,
            "epoch": w.epoch,
            "since_ms": _ms(w.since),
            "expires_ms": _ms(w.expires),
            "ttl_ms": _ms(w.ttl),
        },
        "settings": {
            "keep_last": r.keep_last,
            "max_age_s": None if r.max_age is None else int(r.max_age),
            "high_throughput": h.settings.high_throughput,
        },
        "created_ms": _ms(h.created),
        "forked_from": h.forked_from,
        "deleted": h.deleted,
        "grafts": dict(h.grafts),
    }
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def decode_head(volume: str, data: bytes) -> Head:
    try:
        o = json.loads(data)
        if o["format"] != HEAD_FORMAT:
            raise ValueError(f"unknown head format {o['format']!r}")
        w = o["writer"]
        s = o["settings"]
        return Head(
            volume=volume,
            version=o["version"],
            epoch=int(o["epoch"]),
            writer=None
            if w is None
            else WriterState(
                holder=str(w["holder"]),
                epoch=int(w["epoch"]),
                since=w["since_ms"] / 1000,
                expires=w["expires_ms"] / 1000,
                ttl=w["ttl_ms"] / 1000,
            ),
            settings=Settings(
                Retention(s["keep_last"], s["max_age_s"]), bool(s["high_throughput"])
            ),
            created=o["created_ms"] / 1000,
            forked_from=o["forked_from"],
            deleted=bool(o["deleted"]),
            grafts=tuple(sorted(o.get("grafts", {}).items())),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CorruptObject(head_key(volume), f"not a volume head: {exc}") from exc


def read_head(store: Store, volume: str) -> tuple[Head | None, str | None]:
    """The head and its etag, or ``(None, None)`` if the key does not exist."""
    try:
        data, etag = store.get_with_etag(head_key(volume))
    except ObjectNotFound:
        return None, None
    return decode_head(volume, data), etag


def update_head(
    store: Store,
    volume: str,
    change: Callable[[Head | None], Head | None],
    *,
    attempts: int = CAS_ATTEMPTS,
) -> Head | None:
    """Compare-and-swap loop: apply ``change`` to the current head until the write wins.

    ``change`` gets the current head (None if absent; tombstones are passed as they are)
    and returns the new head, or the same object to leave it untouched. It may raise to
    abort (e.g. FencedWriter); it may run several times, so it must not have side
    effects. Returns the head as stored after the call.
    """
    for attempt in range(attempts):
        current, etag = read_head(store, volume)
        new = change(current)
        if new is current or new is None:
            return current
        data = encode_head(new)
        try:
            if etag is None:
                store.put(head_key(volume), data, if_absent=True)
            else:
                store.put(head_key(volume), data, if_match=etag)
        except PreconditionFailed:
            # Somebody else moved the head between our read and write: re-read, recompute.
            time.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))
            continue
        return new
    raise StoreUnavailable(
        f"could not update the head of volume {volume!r}: {attempts} compare-and-swap "
        "attempts lost to concurrent writers"
    )
