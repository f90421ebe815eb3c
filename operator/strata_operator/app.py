"""Run the operator: metrics server, leader election, then kopf until told to stop.

``main.py`` parses the command line and calls :func:`run`; tests call
:func:`kopf_settings` and :func:`strata_operator.handlers.build_registry` directly to run
kopf in a thread (``kopf.testing.KopfRunner``), or :func:`run` with their own stop flag.
"""

from __future__ import annotations

import asyncio
import logging
import threading

import kopf
from kubernetes import client

from strata_operator.deps import Deps
from strata_operator.handlers import build_registry
from strata_operator.leader import LeaderElector
from strata_operator.metrics import MetricsServer
from strata_operator.settings import Settings

__all__ = ["kopf_settings", "run"]

log = logging.getLogger(__name__)
ANNOTATION_PREFIX = "kopf.strata.dev"


def kopf_settings(settings: Settings) -> kopf.OperatorSettings:
    """kopf's settings for Strata.

    * standalone: leader election (a Lease, :mod:`strata_operator.leader`) replaces
      kopf's peering, which would need its own CRDs;
    * no automatic Events per log line: the operator posts deliberate ones;
    * handler progress and the last-handled spec kept in annotations under
      ``kopf.strata.dev/``, never in ``status``, which the structural schema would prune.
    """
    config = kopf.OperatorSettings()
    config.peering.standalone = True
    config.posting.enabled = False
    config.persistence.finalizer = f"{ANNOTATION_PREFIX}/finalizer"
    config.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    config.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    config.watching.server_timeout = 300
    config.watching.client_timeout = 330
    config.networking.request_timeout = 60
    return config


async def _operate(deps: Deps, stop: threading.Event, ready: threading.Event | None) -> None:
    """kopf until a signal arrives or ``stop`` is set (by the caller, or a lost Lease).

    ``stop`` is honoured by cancelling kopf rather than through kopf's ``stop_flag``:
    kopf waits on a stop flag in a task that a signal-initiated stop leaves hanging for
    its 5-second grace period, delaying every pod shutdown.
    """
    settings = deps.settings
    operator = asyncio.create_task(
        kopf.operator(
            registry=build_registry(deps),
            settings=kopf_settings(settings),
            standalone=True,
            clusterwide=settings.clusterwide,
            namespaces=settings.namespaces,
            liveness_endpoint=settings.liveness,
            ready_flag=ready,
        ),
        name="kopf",
    )

    async def watch_stop() -> None:
        while not stop.is_set():
            await asyncio.sleep(0.2)
        operator.cancel()

    watcher = asyncio.create_task(watch_stop(), name="strata-stop-watcher")
    try:
        await operator
    except asyncio.CancelledError:
        if not stop.is_set():
            raise
    finally:
        watcher.cancel()


def run(
    settings: Settings,
    api_client: client.ApiClient,
    *,
    stop: threading.Event | None = None,
    ready: threading.Event | None = None,
    deps: Deps | None = None,
) -> int:
    """Run until ``stop`` is set or a signal arrives; the process exit code.

    0 after a clean stop, 1 if the leader Lease was lost (the pod should restart and
    stand by again, as with client-go's leader election).
    """
    deps = deps or Deps.build(api_client, settings)
    stop = stop or threading.Event()
    lost = threading.Event()
    elector = None
    if settings.leader_election:
        elector = LeaderElector(
            deps.kube,
            namespace=settings.lease_namespace,
            name=settings.lease_name,
            identity=settings.identity,
            duration=settings.lease_duration,
        )

    def health() -> dict[str, object]:
        leading = elector.leading if elector else True
        return {"healthy": not lost.is_set(), "leader": leading, "identity": settings.identity}

    server = None
    if settings.metrics_port is not None:
        server = MetricsServer(deps.metrics, settings.metrics_port, health).start()
        log.info("metrics and /healthz on port %s", server.port)
    renewing = threading.Event()
    try:
        if elector is not None:
            if not elector.acquire(stop):
                return 0

            def on_lost() -> None:
                lost.set()
                stop.set()

            elector.keep(renewing, on_lost)
        deps.metrics.leader.set(1)
        asyncio.run(_operate(deps, stop, ready))
    finally:
        deps.metrics.leader.set(0)
        renewing.set()
        if elector is not None and not lost.is_set():
            elector.release()
        if server is not None:
            server.stop()
    return 1 if lost.is_set() else 0
