"""Pure logic of Volumes and VolumeVersions: status from engine records, mirror plans.

No API calls and no store calls here, so every rule is unit-tested on plain values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from strata.meta.head import Retention
from strata.meta.repo import VolumeInfo
from strata.meta.version import Version
from strata.units import parse_duration
from strata_operator.timeutil import format_time

__all__ = [
    "ANN_MIRRORED",
    "ANN_VERSION_ID",
    "LABEL_VOLUME",
    "VERSION_FINALIZER",
    "VOLUME_FINALIZER",
    "MirrorPlan",
    "is_mirrored",
    "is_pending",
    "plan_mirror",
    "retention_of",
    "version_id_of",
    "version_status",
    "volume_status",
]

VOLUME_FINALIZER = "strata.dev/volume"
VERSION_FINALIZER = "strata.dev/volume-version"
LABEL_VOLUME = "strata.dev/volume"
#: On VolumeVersions the operator made for versions sealed by a writer: never re-seal.
ANN_MIRRORED = "strata.dev/mirrored"
#: The version id a mirrored VolumeVersion stands for, written at creation so a crash
#: between create and the status write cannot lose it.
ANN_VERSION_ID = "strata.dev/version-id"

Obj = dict[str, Any]


def _time(seconds: float) -> str:
    return format_time(datetime.fromtimestamp(seconds, UTC))


def retention_of(spec: Mapping[str, Any]) -> Retention:
    """The engine's retention rule from ``spec.retention`` (already validated by CEL)."""
    rule = spec.get("retention") or {}
    max_age = rule.get("maxAge")
    return Retention(
        keep_last=rule.get("keepLast"),
        max_age=parse_duration(max_age) if max_age else None,
    )


def volume_status(info: VolumeInfo, now: float) -> Obj:
    """``status`` fields that describe the store volume (phase and conditions aside).

    The writer is the engine's claim (holder, since) while it is live; the Kubernetes
    Lease for writers comes with the CSI driver, which will add ``node``.
    """
    head = info.head
    writer = info.writer
    return {
        "head": head.id if head else None,
        "size": head.stats.bytes if head else 0,
        "files": (head.stats.files + head.stats.dirs) if head else 0,
        "versionCount": info.version_count,
        "writer": (
            {"holder": writer.holder, "since": _time(writer.since)}
            if writer is not None and writer.live(now)
            else None
        ),
    }


def version_status(version: Version) -> Obj:
    """A ready VolumeVersion's status for a sealed engine version."""
    parent = version.parent.partition("@")[2] if version.parent else None
    return {
        "readyToUse": True,
        "versionId": version.id,
        "parent": parent,
        "creationTime": _time(version.created),
        "size": version.stats.bytes,
        "error": None,
    }


def is_mirrored(vv: Mapping[str, Any]) -> bool:
    return (vv["metadata"].get("annotations") or {}).get(ANN_MIRRORED) == "true"


def version_id_of(vv: Mapping[str, Any]) -> str | None:
    """The version a VolumeVersion stands for: its status, else the mirror's annotation."""
    status = vv.get("status") or {}
    annotations = vv["metadata"].get("annotations") or {}
    return status.get("versionId") or annotations.get(ANN_VERSION_ID)


def is_pending(vv: Mapping[str, Any]) -> bool:
    """A user's VolumeVersion still being sealed: no version bound, no error, not deleting.

    One that failed (``status.error``) no longer holds the mirror back: a failure like
    "nothing to seal" may stay forever, and mirroring must go on meanwhile.
    """
    return (
        version_id_of(vv) is None
        and not (vv.get("status") or {}).get("error")
        and not vv["metadata"].get("deletionTimestamp")
    )


@dataclass
class MirrorPlan:
    """What the mirror does for one Volume in one pass."""

    create: list[Version] = field(default_factory=list)
    #: VolumeVersions whose version is no longer in the store (retention, GC).
    prune: list[str] = field(default_factory=list)
    #: True while a user's VolumeVersion of this Volume is being sealed: mirroring then
    #: could make a second object for the very version that seal is about to bind.
    waiting: bool = False


def plan_mirror(
    store_volume: str,
    log: Sequence[Version],
    versions: Iterable[Mapping[str, Any]],
    volume: str,
) -> MirrorPlan:
    """Versions sealed by ``store_volume`` lacking a VolumeVersion; VolumeVersions of
    ``volume`` whose version left its history.

    ``log`` must be read *before* ``versions`` was listed: a seal that commits after the
    log read is then either still pending in ``versions`` (so the plan waits) or bound
    already, never mirrored a second time. Versions of the history that a fork
    inherited belong to the source Volume and are not mirrored here.
    """
    plan = MirrorPlan()
    mine = [vv for vv in versions if (vv.get("spec") or {}).get("volume") == volume]
    if any(is_pending(vv) for vv in mine):
        plan.waiting = True
    known = {version_id_of(vv) for vv in mine}
    in_log = {v.id for v in log}
    if not plan.waiting:
        plan.create = [v for v in reversed(log) if v.volume == store_volume and v.id not in known]
    plan.prune = sorted(
        vv["metadata"]["name"]
        for vv in mine
        if (vid := version_id_of(vv)) is not None
        and vid not in in_log
        and not vv["metadata"].get("deletionTimestamp")
    )
    return plan
