"""Retries of temporary store failures, with exponential backoff and full jitter.

Backends say which failures are temporary by raising
:class:`~strata.errors.TemporaryStoreError`; this wrapper alone decides how often to
try again (botocore's own retries are off, see :mod:`strata.store.s3`). When it gives
up it raises :class:`~strata.errors.StoreUnavailable`, naming the operation, the
object, the number of attempts and the last cause, so the one line a user sees says
what to look at.

Retrying a write is only safe when the write is idempotent, and a *timed-out* write
may have succeeded. How each verb copes:

* ``get``, ``head``, ``delete``, plain ``put``: idempotent; retried as is.
* ``list``: lists again and skips keys up to the last one it yielded (listings are
  in key order), so a failure mid-listing neither repeats nor drops a key.
* ``put(if_absent=True)``: if an earlier attempt's outcome is unknown and a later one
  says the object already exists, the object may be our own first write. We read it
  back: identical bytes mean the write is done, and we return its etag. This is sound
  because ``if_absent`` is used for content-addressed and uniquely named objects, whose
  bytes are fixed by their key: whoever wrote identical bytes, the post-condition the
  caller wants ("this key holds these bytes") holds. Different bytes are a real lost
  race and raise :class:`~strata.errors.PreconditionFailed`.
* ``put(if_match=etag)``: the same trick is *not* sound. Two writers that read the
  same head and compute the same new bytes must not both succeed (a counter would lose
  an increment), and identical bytes cannot tell "my write landed" from "someone else's
  did". So after an unknown outcome the lost-race error is raised as is, with a note;
  the caller's compare-and-swap loop re-reads and decides (a head that already names
  our version means our write landed).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from strata.errors import ObjectNotFound, PreconditionFailed, StoreUnavailable, TemporaryStoreError
from strata.store.base import ObjectInfo, Store, StoreWrapper
from strata.store.metrics import RETRIES

T = TypeVar("T")


class RetryingStore(StoreWrapper):
    """Retries :class:`TemporaryStoreError` from ``inner``; see the module docstring.

    ``attempts`` bounds tries per request (first try included); ``deadline`` bounds
    the seconds spent on one request, so a long outage fails in predictable time
    rather than ``attempts × max_delay``. The delay before retry ``n`` (1-based) is
    uniform in ``[0, min(max_delay, base_delay × 2**(n-1))]`` ("full jitter"), which
    spreads out many clients retrying against one throttled bucket. ``sleep``,
    ``clock`` and ``seed`` exist for tests.
    """

    def __init__(
        self,
        inner: Store,
        *,
        attempts: int = 8,
        base_delay: float = 0.05,
        max_delay: float = 5.0,
        deadline: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        seed: int | None = None,
    ) -> None:
        super().__init__(inner)
        if attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {attempts}")
        self.attempts = attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.deadline = deadline
        self._sleep = sleep
        self._clock = clock
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()

    def _delay(self, retry: int) -> float:
        cap = min(self.max_delay, self.base_delay * (2 ** (retry - 1)))
        with self._rng_lock:
            return self._rng.uniform(0.0, cap)

    def _call(
        self, op: str, key: str, fn: Callable[[], T], uncertain: list[bool] | None = None
    ) -> T:
        """Run ``fn`` until it succeeds, fails for good, or the budget is spent.

        ``uncertain[0]`` is set once an attempt failed in a way that may have taken
        effect (a temporary error says nothing about whether the store acted).
        """
        started = self._clock()
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn()
            except TemporaryStoreError as exc:
                if uncertain is not None:
                    uncertain[0] = True
                elapsed = self._clock() - started
                delay = self._delay(attempt)
                if attempt >= self.attempts or elapsed + delay > self.deadline:
                    raise StoreUnavailable(
                        f"{op} {key!r} in {self.url} failed after {attempt} "
                        f"attempt{'s' if attempt > 1 else ''} in {elapsed:.1f}s; "
                        f"last error: {exc}"
                    ) from exc
                RETRIES.labels(op).inc()
                self._sleep(delay)

    def get(self, key: str) -> bytes:
        return self._call("get", key, lambda: self.inner.get(key))

    def get_with_etag(self, key: str) -> tuple[bytes, str]:
        return self._call("get", key, lambda: self.inner.get_with_etag(key))

    def head(self, key: str) -> ObjectInfo:
        return self._call("head", key, lambda: self.inner.head(key))

    def delete(self, key: str) -> None:
        self._call("delete", key, lambda: self.inner.delete(key))

    def put(
        self, key: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None
    ) -> str:
        uncertain = [False]

        def attempt() -> str:
            return self.inner.put(key, data, if_absent=if_absent, if_match=if_match)

        try:
            return self._call("put", key, attempt, uncertain)
        except PreconditionFailed as exc:
            if not uncertain[0]:
                raise
            if if_match is not None:
                raise PreconditionFailed(
                    key,
                    "object changed since it was read (an earlier attempt timed out and "
                    "may have been the change; re-read to tell)",
                ) from exc
            return self._resolve_if_absent(key, data, exc)

    def _resolve_if_absent(self, key: str, data: bytes, lost: PreconditionFailed) -> str:
        """After an uncertain attempt, "already exists" may be our own write."""
        try:
            stored, etag = self._call("get", key, lambda: self.inner.get_with_etag(key))
        except ObjectNotFound:
            raise lost from None  # deleted since; the caller decides what that means
        if stored != data:
            raise lost
        return etag

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        last: str | None = None
        attempt = 0
        started = self._clock()
        while True:
            items = iter(self.inner.list(prefix))
            try:
                for info in items:
                    if last is not None and info.key <= last:
                        continue  # already yielded before the failure
                    last = info.key
                    attempt = 0  # progress: the budget is per stall, not per listing
                    yield info
                    started = self._clock()
                return
            except TemporaryStoreError as exc:
                attempt += 1
                elapsed = self._clock() - started
                delay = self._delay(attempt)
                if attempt >= self.attempts or elapsed + delay > self.deadline:
                    where = f" (after {last!r})" if last is not None else ""
                    raise StoreUnavailable(
                        f"list {prefix!r} in {self.url}{where} failed after {attempt} "
                        f"attempt{'s' if attempt > 1 else ''} in {elapsed:.1f}s; "
                        f"last error: {exc}"
                    ) from exc
                RETRIES.labels("list").inc()
                self._sleep(delay)
            finally:
                close = getattr(items, "close", None)
                if close is not None:
                    close()
