"""Prometheus metrics and the /healthz liveness endpoint.

One small HTTP server serves both ``/metrics`` and ``/healthz`` from the moment the
process starts, so a standby replica waiting for the leader Lease is alive to its
probes too (kopf's own ``--liveness`` endpoint only exists while kopf runs, i.e. while
leading). The registry is per operator instance, so in-process tests never collide.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["Metrics", "MetricsServer"]


class Metrics:
    """The operator's metrics, in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.reconciles = Counter(
            "strata_operator_reconcile_total",
            "Reconciles run, by kind of object.",
            ["kind"],
            registry=self.registry,
        )
        self.reconcile_errors = Counter(
            "strata_operator_reconcile_errors_total",
            "Reconciles that failed, by kind of object and error (temporary, permanent, "
            "unexpected).",
            ["kind", "error"],
            registry=self.registry,
        )
        self.staging_pvcs_live = Gauge(
            "strata_operator_staging_pvcs_live",
            "Staging PVCs that exist and are not being deleted, as of the last sweep.",
            registry=self.registry,
        )
        self.staging_volumes_expired = Gauge(
            "strata_operator_staging_volumes_expired",
            "StagingVolumes whose PVC was deleted after their TTL, as of the last sweep.",
            registry=self.registry,
        )
        self.staging_pvcs_deleted = Counter(
            "strata_operator_staging_pvcs_deleted_total",
            "Staging PVCs deleted by the sweeper, by cause (expired, orphan).",
            ["cause"],
            registry=self.registry,
        )
        self.sweep_seconds = Histogram(
            "strata_operator_sweep_seconds",
            "Time one sweep of staging PVCs took.",
            registry=self.registry,
        )
        self.versions_mirrored = Counter(
            "strata_operator_versions_mirrored_total",
            "VolumeVersions created for versions sealed by writers (mounts, the CLI).",
            registry=self.registry,
        )
        self.seals = Counter(
            "strata_operator_seals_total",
            "VolumeVersions sealed on request, by how: writer (a live mount committed) or "
            "idle (bound to the already-sealed head).",
            ["how"],
            registry=self.registry,
        )
        self.gc_runs = Counter(
            "strata_operator_gc_runs_total",
            "Store garbage collections run, by result (ok, error).",
            ["result"],
            registry=self.registry,
        )
        self.gc_freed_bytes = Counter(
            "strata_operator_gc_freed_bytes_total",
            "Bytes of chunks and trees the store garbage collection deleted.",
            registry=self.registry,
        )
        self.gc_freed_objects = Counter(
            "strata_operator_gc_freed_objects_total",
            "Chunks and trees the store garbage collection deleted.",
            registry=self.registry,
        )
        self.gc_versions_expired = Counter(
            "strata_operator_gc_versions_expired_total",
            "Versions deleted by retention rules during store garbage collection.",
            registry=self.registry,
        )
        self.gc_seconds = Histogram(
            "strata_operator_gc_seconds",
            "Time one store garbage collection took.",
            buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600),
            registry=self.registry,
        )
        self.leader = Gauge(
            "strata_operator_leader",
            "1 while this replica holds the leader Lease and acts, else 0.",
            registry=self.registry,
        )

    @contextmanager
    def reconciling(self, kind: str, classify: Callable[[BaseException], str]) -> Iterator[None]:
        """Count one reconcile of ``kind``; a failure is counted by ``classify(exc)``."""
        self.reconciles.labels(kind=kind).inc()
        try:
            yield
        except Exception as exc:
            self.reconcile_errors.labels(kind=kind, error=classify(exc)).inc()
            raise


class MetricsServer:
    """``/metrics`` and ``/healthz`` on ``port`` (0 picks a free one) in a daemon thread."""

    def __init__(
        self, metrics: Metrics, port: int, health: Callable[[], dict[str, object]]
    ) -> None:
        registry = metrics.registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._reply(200, CONTENT_TYPE_LATEST, generate_latest(registry))
                elif path in ("/healthz", "/livez", "/readyz"):
                    state = health()
                    code = 200 if state.get("healthy", True) else 503
                    self._reply(code, "application/json", json.dumps(state).encode())
                else:
                    self._reply(404, "text/plain", b"not found\n")

            def _reply(self, code: int, ctype: str, data: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                """Probes every few seconds would drown the log; stay quiet."""

        self._server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="strata-metrics", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
