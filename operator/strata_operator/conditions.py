"""Standard ``metav1.Condition`` lists, updated the way Kubernetes expects.

``lastTransitionTime`` moves only when ``status`` flips, so a condition rewritten on
every reconcile still says how long it has held.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from strata_operator.timeutil import format_time

__all__ = ["find", "remove", "set_condition"]

Condition = dict[str, Any]


def find(conditions: Sequence[Mapping[str, Any]] | None, kind: str) -> Mapping[str, Any] | None:
    """The condition of type ``kind``, if present."""
    return next((c for c in conditions or () if c.get("type") == kind), None)


def set_condition(
    conditions: Sequence[Mapping[str, Any]] | None,
    kind: str,
    status: bool,
    reason: str,
    message: str,
    *,
    generation: int | None,
    now: datetime,
) -> list[Condition]:
    """A new list with condition ``kind`` set; other conditions are kept as they are."""
    text = "True" if status else "False"
    old = find(conditions, kind)
    since = old["lastTransitionTime"] if old and old.get("status") == text else format_time(now)
    new: Condition = {
        "type": kind,
        "status": text,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
    }
    if generation is not None:
        new["observedGeneration"] = generation
    return [*(dict(c) for c in conditions or () if c.get("type") != kind), new]


def remove(conditions: Sequence[Mapping[str, Any]] | None, kind: str) -> list[Condition]:
    """A new list without condition ``kind``."""
    return [dict(c) for c in conditions or () if c.get("type") != kind]
