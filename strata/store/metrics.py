"""Prometheus metrics of store requests, and the wrapper that records them.

The metrics are module-level (one set per process, in prometheus_client's default
registry) because every long-running component exposes that registry; a process with
several stores reports their sum.

:class:`MeteredStore` sits outermost in the stack that :func:`strata.store.open_store`
builds, so ``requests_total`` and ``request_seconds`` describe what the engine asked
for and how long it waited *including* retries and queueing for a connection slot.
``retries_total`` is incremented by :class:`~strata.store.retry.RetryingStore`, so
``retries_total / requests_total`` is the share of requests that needed another try.

Results (the ``result`` label of ``requests_total``):

* ``ok``
* ``not_found`` and ``precondition_failed``: normal outcomes the engine asks about
  (existence checks, lost compare-and-swap races), so not counted as errors;
* ``error``: anything else, also counted in ``errors_total{kind=<exception class>}``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import Counter, Histogram

from strata.errors import ObjectNotFound, PreconditionFailed
from strata.store.base import ObjectInfo, StoreWrapper

REQUESTS = Counter(
    "strata_store_requests_total",
    "Store requests made by the engine, by operation and result",
    ["op", "result"],
)
REQUEST_SECONDS = Histogram(
    "strata_store_request_seconds",
    "Time from asking the store to getting an answer, including retries",
    ["op"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
BYTES = Counter(
    "strata_store_bytes_total",
    "Object payload bytes moved: direction 'in' is read from the store, 'out' written",
    ["direction"],
)
RETRIES = Counter(
    "strata_store_retries_total",
    "Store requests retried after a temporary failure",
    ["op"],
)
ERRORS = Counter(
    "strata_store_errors_total",
    "Store requests that failed (after retries), by exception class",
    ["op", "kind"],
)


def _result(exc: BaseException | None) -> str:
    if exc is None:
        return "ok"
    if isinstance(exc, ObjectNotFound):
        return "not_found"
    if isinstance(exc, PreconditionFailed):
        return "precondition_failed"
    return "error"


def _record(op: str, started: float, exc: BaseException | None) -> None:
    REQUEST_SECONDS.labels(op).observe(time.monotonic() - started)
    result = _result(exc)
    REQUESTS.labels(op, result).inc()
    if exc is not None and result == "error":
        ERRORS.labels(op, type(exc).__name__).inc()


class MeteredStore(StoreWrapper):
    """Records requests, latency, bytes and errors of every call to ``inner``."""

    def get(self, key: str) -> bytes:
        return self.get_with_etag(key)[0]

    def get_with_etag(self, key: str) -> tuple[bytes, str]:
        started = time.monotonic()
        try:
            data, etag = self.inner.get_with_etag(key)
        except Exception as exc:
            _record("get", started, exc)
            raise
        _record("get", started, None)
        BYTES.labels("in").inc(len(data))
        return data, etag

    def head(self, key: str) -> ObjectInfo:
        started = time.monotonic()
        try:
            info = self.inner.head(key)
        except Exception as exc:
            _record("head", started, exc)
            raise
        _record("head", started, None)
        return info

    def put(
        self, key: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None
    ) -> str:
        started = time.monotonic()
        try:
            etag = self.inner.put(key, data, if_absent=if_absent, if_match=if_match)
        except Exception as exc:
            _record("put", started, exc)
            raise
        _record("put", started, None)
        BYTES.labels("out").inc(len(data))
        return etag

    def delete(self, key: str) -> None:
        started = time.monotonic()
        try:
            self.inner.delete(key)
        except Exception as exc:
            _record("delete", started, exc)
            raise
        _record("delete", started, None)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """One ``list`` request per listing, timed while waiting on ``inner`` only.

        The consumer's own pauses between items are not store latency, so the clock
        runs only inside ``next()``; a listing abandoned early counts as ``ok``.
        """
        waited = 0.0
        items = iter(self.inner.list(prefix))
        try:
            while True:
                started = time.monotonic()
                try:
                    info = next(items)
                except StopIteration:
                    _record("list", started - waited, None)
                    return
                except Exception as exc:
                    _record("list", started - waited, exc)
                    raise
                waited += time.monotonic() - started
                try:
                    yield info
                except GeneratorExit:
                    _record("list", time.monotonic() - waited, None)
                    raise
        finally:
            _close(items)


def _close(items: Iterator[ObjectInfo]) -> None:
    """Close an abandoned inner listing now rather than whenever it is collected."""
    close = getattr(items, "close", None)
    if close is not None:
        close()
