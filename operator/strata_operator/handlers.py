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

from strata.errors import StrataError
from strata_operator.deps import Deps
from strata_operator.kube import (
    GROUP,
    STAGING_PLURAL,
    VERSION,
    VERSION_PLURAL,
    VOLUME_PLURAL,
    KubeError,
)
from strata_operator.login import connection_info
from strata_operator.staging.reconcile import StagingReconciler
from strata_operator.staging.resources import ANN_OWNER, STAGING_LABELS, controller_owner
from strata_operator.staging.sweeper import Sweeper, run_periodically
from strata_operator.volumes.gc import GarbageCollector
from strata_operator.volumes.reconcile import VolumeReconciler
from strata_operator.volumes.sync import VolumeSync, run_every
from strata_operator.volumes.versions import VersionReconciler

__all__ = ["build_registry", "classify"]

RETRY_DELAY = 10.0  # seconds before kopf retries after a temporary API failure
STAGING = "StagingVolume"
VOLUME = "Volume"
VOLUME_VERSION = "VolumeVersion"


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

    if deps.repo is not None:
        _register_volumes(registry, deps, background)

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


def _register_volumes(
    registry: kopf.OperatorRegistry, deps: Deps, background: list[asyncio.Task[None]]
) -> None:
    """Volume and VolumeVersion handlers, the mirror loop and store GC (needs a store)."""
    assert deps.repo is not None
    repo = deps.repo
    volumes = VolumeReconciler(deps, repo)
    versions = VersionReconciler(deps, repo, volumes)
    sync = VolumeSync(deps, repo, volumes, versions)
    collector = GarbageCollector(deps, repo)

    @kopf.on.startup(registry=registry)
    async def start_volume_loops(logger: logging.Logger, **_: Any) -> None:
        settings = deps.settings

        async def gc_loop() -> None:
            await asyncio.sleep(settings.gc_interval)  # not on every (re)start
            await run_every(collector.run, settings.gc_interval, "store GC")

        background.append(
            asyncio.create_task(
                run_every(sync.sync, settings.mirror_interval, "volume sync"),
                name="strata-volume-sync",
            )
        )
        background.append(asyncio.create_task(gc_loop(), name="strata-gc"))
        logger.info(
            "Volumes in store %s: mirror every %ss, GC every %ss (grace %ss)",
            settings.store_display,
            settings.mirror_interval,
            settings.gc_interval,
            settings.gc_grace,
        )

    @kopf.on.resume(GROUP, VERSION, VOLUME_PLURAL, id="volume", registry=registry)
    @kopf.on.create(GROUP, VERSION, VOLUME_PLURAL, id="volume", registry=registry)
    @kopf.on.update(GROUP, VERSION, VOLUME_PLURAL, id="volume", registry=registry)
    def volume(body: kopf.Body, name: str, namespace: str, **_: Any) -> None:
        _guarded(deps, VOLUME, body, lambda: volumes.reconcile(namespace, name))

    @kopf.on.resume(GROUP, VERSION, VERSION_PLURAL, id="volumeversion", registry=registry)
    @kopf.on.create(GROUP, VERSION, VERSION_PLURAL, id="volumeversion", registry=registry)
    async def volume_version(body: kopf.Body, name: str, namespace: str, **_: Any) -> None:
        """Sealing waits on the store for up to seal_timeout: in a worker thread."""
        await asyncio.to_thread(
            _guarded, deps, VOLUME_VERSION, body, lambda: versions.reconcile(namespace, name)
        )

    # Deletion: the operator's own finalizers (strata.dev/volume, strata.dev/volume-version),
    # so kopf sees no deletion handler and adds none of its own. A watch event starts the
    # work at once; the sync loop retries whatever could not finish (deferred deletions).
    @kopf.on.event(GROUP, VERSION, VOLUME_PLURAL, registry=registry)
    def volume_event(body: kopf.Body, logger: logging.Logger, **_: Any) -> None:
        if body.metadata.get("deletionTimestamp"):
            _nudge(logger, lambda: volumes.finalize(body))

    @kopf.on.event(GROUP, VERSION, VERSION_PLURAL, registry=registry)
    def version_event(body: kopf.Body, logger: logging.Logger, **_: Any) -> None:
        if body.metadata.get("deletionTimestamp"):
            _nudge(logger, lambda: versions.finalize(body))


def _nudge(logger: logging.Logger, step: Callable[[], object]) -> None:
    """An attempt whose failure only waits for the sync loop's retry."""
    try:
        step()
    except (KubeError, StrataError, kopf.TemporaryError, kopf.PermanentError) as exc:
        logger.info("will retry on the next sync pass: %s", exc)
