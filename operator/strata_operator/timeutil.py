"""Kubernetes timestamps: RFC 3339 in UTC, second precision (``metav1.Time``)."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["format_micro", "format_time", "parse_time", "utcnow"]


def utcnow() -> datetime:
    """The current time, timezone-aware; the default clock everywhere."""
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    """``2026-11-20T00:00:00Z``: the form the API server stores for ``metav1.Time``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_micro(moment: datetime) -> str:
    """``2026-11-20T00:00:00.000000Z``: ``metav1.MicroTime`` (Lease renew times)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str | None) -> datetime | None:
    """Parse an RFC 3339 timestamp as the API server writes it; ``None`` stays ``None``."""
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
