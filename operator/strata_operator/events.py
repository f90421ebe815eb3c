"""Kubernetes Events for state changes a user must see (``kubectl describe``).

kopf can post an Event per handler log line; the operator turns that off and posts
only these deliberate ones: one per change a user cares about (a PVC created, a run
finished, a PVC expired or kept alive by a pod, a failure that needs them).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from strata_operator.kube import Kube, KubeError
from strata_operator.timeutil import format_time, utcnow

__all__ = ["COMPONENT", "EventRecorder"]

COMPONENT = "strata-operator"
MAX_MESSAGE = 1024
log = logging.getLogger(__name__)


class EventRecorder:
    """Posts core/v1 Events about objects; a failure to post is logged, never raised."""

    def __init__(
        self, kube: Kube, *, instance: str, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.kube = kube
        self.instance = instance
        self.clock = clock

    def normal(self, obj: Mapping[str, Any], reason: str, message: str) -> None:
        self._post(obj, "Normal", reason, message)

    def warning(self, obj: Mapping[str, Any], reason: str, message: str) -> None:
        self._post(obj, "Warning", reason, message)

    def _post(self, obj: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
        meta = obj["metadata"]
        namespace = meta.get("namespace") or "default"
        now = format_time(self.clock())
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta['name'][:200]}.{secrets.token_hex(8)}",
                "namespace": namespace,
            },
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "name": meta["name"],
                "namespace": namespace,
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": kind,
            "reason": reason,
            "message": message[:MAX_MESSAGE],
            "source": {"component": COMPONENT},
            "reportingComponent": f"strata.dev/{COMPONENT}",
            "reportingInstance": self.instance[:128],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.kube.create_event(namespace, body)
        except KubeError as exc:
            # An Event is a courtesy; losing one must not fail the reconcile that made it.
            log.info("could not post %s event %s on %s: %s", kind, reason, meta["name"], exc)
