"""The kopf handlers: thin, each a few lines handing over to the reconcilers.

Handlers are registered into a fresh :class:`kopf.OperatorRegistry` built around one
:class:`~strata_operator.deps.Deps`, rather than with module-level decorators, so two
operators with different settings can run side by side in one test process.

Error meaning is decided here, once: a :class:`~strata_operator.kube.KubeError` that a
retry can fix becomes :class:`kopf.TemporaryError`, any other one
:class:`kopf.PermanentError`; anything unexpected is shown to the user as a Warning
Event and left to kopf's retry with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

import kopf

from strata_operator.deps import Deps
from strata_operator.kube import GROUP, STAGING_PLURAL, VERSION, KubeError
from strata_operator.login import connection_info
from strata_operator.staging.reconcile import StagingReconciler
from strata_operator.staging.resources import ANN_OWNER, STAGING_LABELS, controller_owner
from strata_operator.staging.sweeper import Sweeper, run_periodically

__all__ = ["build_registry", "classify"]

RETRY_DELAY = 10.0  # seconds before kopf retries after a temporary API failure
STAGING = "StagingVolume"


def classify(exc: BaseException) -> str:
    """The metric label for a failed reconcile."""
    if isinstance(exc, kopf.TemporaryError):
        return "temporary"
    if isinstance(exc, kopf.PermanentError):
        return "permanent"
    return "unexpected"


def _guarded(deps: Deps, kind: str, body: Mapping[str, Any], step: Callable[[], None]) -> None:
    """Run ``step`` counted in the metrics, with API failures given kopf's meaning."""
    with deps.metrics.reconciling(kind, classify):
        try:
            step()
        except KubeError as exc:
            if exc.retryable:
                raise kopf.TemporaryError(str(exc), delay=RETRY_DELAY) from exc
            raise kopf.PermanentError(str(exc)) from exc
        except (kopf.TemporaryError, kopf.PermanentError):
            raise
        except Exception as exc:
            deps.events.warning(body, "ReconcileError", f"unexpected error, will retry: {exc}")
            raise


def build_registry(deps: Deps) -> kopf.OperatorRegistry:
    """A registry with every handler of the operator, bound to ``deps``."""
    registry = kopf.OperatorRegistry()
    reconciler = StagingReconciler(deps)
    sweeper = Sweeper(deps, reconciler)
    background: list[asyncio.Task[None]] = []

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(deps.kube.api_client)

    @kopf.on.startup(registry=registry)
    async def start_sweeper(logger: logging.Logger, **_: Any) -> None:
        interval = deps.settings.sweep_interval
        task = asyncio.create_task(run_periodically(sweeper, interval), name="strata-sweeper")
        background.append(task)
        logger.info("staging sweeper started: every %ss", interval)

    @kopf.on.cleanup(registry=registry)
    async def stop_sweeper(**_: Any) -> None:
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @kopf.on.probe(id="sweeper", registry=registry)
    def sweeper_running(**_: Any) -> bool:
        return bool(background) and not background[0].done()

    @kopf.on.resume(GROUP, VERSION, STAGING_PLURAL, id="staging", registry=registry)
    @kopf.on.create(GROUP, VERSION, STAGING_PLURAL, id="staging", registry=registry)
    @kopf.on.update(GROUP, VERSION, STAGING_PLURAL, id="staging", registry=registry)
    def staging_volume(body: kopf.Body, name: str, namespace: str, **_: Any) -> None:
        _guarded(deps, STAGING, body, lambda: reconciler.reconcile(namespace, name))

    @kopf.on.event("v1", "persistentvolumeclaims", labels=STAGING_LABELS, registry=registry)
    def staging_pvc(body: kopf.Body, namespace: str, logger: logging.Logger, **_: Any) -> None:
        """A staging PVC changed (bound, lost, deleted): refresh its StagingVolume."""
        owner = controller_owner(body)
        name = (owner or {}).get("name") or body.metadata.annotations.get(ANN_OWNER)
        if not name:
            return
        try:
            reconciler.reconcile(namespace, name)
        except (KubeError, kopf.TemporaryError, kopf.PermanentError) as exc:
            # The StagingVolume's own handler owns retries and reporting; this is a nudge.
            logger.debug("refreshing StagingVolume %s after a PVC event: %s", name, exc)

    return registry
