"""The operator's collaborators, built once and passed to every handler and loop.

Nothing reaches for globals: tests build a ``Deps`` around their own API client, a
request-watching :class:`~strata_operator.kube.Kube`, a fresh metrics registry and,
where time matters, their own clock. ``repo`` is the Strata store holding Volumes,
opened once from ``settings.store``; without a store the Volume handlers stay off.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from kubernetes import client

from strata.meta.repo import Repository
from strata.store import open_store
from strata_operator.events import EventRecorder
from strata_operator.kube import Kube, Request
from strata_operator.metrics import Metrics
from strata_operator.settings import Settings
from strata_operator.timeutil import utcnow

__all__ = ["Deps"]


@dataclass
class Deps:
    kube: Kube
    settings: Settings
    metrics: Metrics
    events: EventRecorder
    clock: Callable[[], datetime] = field(default=utcnow)
    repo: Repository | None = None

    @classmethod
    def build(
        cls,
        api_client: client.ApiClient,
        settings: Settings,
        *,
        on_request: Callable[[Request], None] | None = None,
        clock: Callable[[], datetime] = utcnow,
        repo: Repository | None = None,
    ) -> Deps:
        """Everything from settings; ``repo`` overrides opening ``settings.store``."""
        kube = Kube(api_client, on_request=on_request)
        events = EventRecorder(kube, instance=settings.identity, clock=clock)
        if repo is None and settings.store:
            repo = Repository.open(open_store(settings.store))
        return cls(
            kube=kube,
            settings=settings,
            metrics=Metrics(),
            events=events,
            clock=clock,
            repo=repo,
        )
