"""Uploader: background upload of dirty blocks, bounded, cancellable, never silent.

A writable mount stages dirty blocks locally and hands them here by digest. Each block
waits ``upload_delay`` seconds first (so scratch files deleted quickly are never
uploaded: ``cancel`` removes a block that has not started), then is stored through
:meth:`ContentStore.put_chunk` on a pool of ``max_uploads`` threads, which bounds the
requests in flight.

Submissions are reference counted by digest: two files sharing a block submit it twice,
and deleting one of them (one ``cancel``) does not cancel the other's upload. Every
staged path submitted for a digest is kept, and the upload uses the first one that
still holds the block, so deleting the first file's staging copy does not fail it.

Failures are never dropped. A failed block is kept (counted by ``pending()``) and the
error is recorded; the next :meth:`flush` retries every kept block and raises the first
error recorded since the previous flush, so a commit cannot seal a version whose blocks
did not reach the store.

``clock`` is the time source for the delay (``time.monotonic`` by default); tests pass a
fake clock and call :meth:`dispatch_due` (or :meth:`wake`) after moving it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

from strata.chunks import metrics
from strata.chunks.hashing import check_digest
from strata.chunks.objects import ContentStore, StaleData

log = logging.getLogger(__name__)

Source = bytes | bytearray | memoryview | str | os.PathLike[str]


@dataclass
class _Item:
    digest: str
    sources: list[Source]  # bytes, or staged files that should hold the block
    due: float
    refs: int = 1

    def merge(self, source: Source, refs: int = 1) -> None:
        """Count one more submission; keep its source if it adds a way to the bytes."""
        self.refs += refs
        if _is_path(source) or not any(not _is_path(s) for s in self.sources):
            self.sources.append(source)


def _is_path(source: Source) -> TypeGuard[str | os.PathLike[str]]:
    return isinstance(source, str | os.PathLike)


class Uploader:
    """Upload submitted blocks in the background with bounded concurrency."""

    def __init__(
        self,
        content: ContentStore,
        max_uploads: int = 50,
        upload_delay: float = 0.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_uploads < 1:
            raise ValueError(f"max_uploads must be >= 1, got {max_uploads}")
        if upload_delay < 0:
            raise ValueError(f"upload_delay must be >= 0, got {upload_delay}")
        self.content = content
        self.max_uploads = max_uploads
        self.upload_delay = upload_delay
        self._clock = clock
        self._pool = ThreadPoolExecutor(max_uploads, thread_name_prefix="strata-upload")
        self._cond = threading.Condition()
        self._waiting: dict[str, _Item] = {}  # submitted, delay not yet over
        self._failed: dict[str, _Item] = {}  # tried and failed; retried by flush()
        self._running: set[Future[None]] = set()  # for flush() to wait on
        self._in_flight = 0  # blocks whose upload has started and not ended
        self._errors: list[BaseException] = []
        self._closed = False
        self._timer: threading.Thread | None = None

    # --- API -------------------------------------------------------------------------

    def submit(self, digest: str, data_or_path: Source) -> None:
        """Queue block ``digest``: its bytes, or the path of the staged file holding them.

        A path is read when the upload starts; if the bytes there no longer hash to
        ``digest`` the upload fails with StaleData (the caller must cancel a block
        before changing or deleting its staged file).
        """
        check_digest(digest)
        with self._cond:
            if self._closed:
                raise RuntimeError("uploader is closed")
            for held in (self._waiting, self._failed):
                if digest in held:
                    held[digest].merge(data_or_path)
                    return
            item = _Item(digest, [data_or_path], self._clock() + self.upload_delay)
            metrics.UPLOAD_QUEUE_DEPTH.inc()
            if self.upload_delay <= 0:
                self._start(item)
                return
            self._waiting[digest] = item
            self._ensure_timer()
            self._cond.notify_all()

    def cancel(self, digest: str) -> bool:
        """Withdraw one submission of ``digest``; True if it will not be uploaded for it.

        Only blocks whose upload has not started can be withdrawn; the block is dropped
        once every submission of it is withdrawn.
        """
        with self._cond:
            for held in (self._waiting, self._failed):
                item = held.get(digest)
                if item is not None:
                    item.refs -= 1
                    if item.refs == 0:
                        del held[digest]
                        metrics.UPLOAD_QUEUE_DEPTH.dec()
                    return True
        return False

    def dispatch_due(self) -> int:
        """Start every waiting block whose delay is over; return how many started."""
        with self._cond:
            now = self._clock()
            due = [item for item in self._waiting.values() if item.due <= now]
            for item in due:
                del self._waiting[item.digest]
                self._start(item)
            return len(due)

    def wake(self) -> None:
        """Make the timer thread re-check due blocks now (after a clock jump)."""
        with self._cond:
            self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> None:
        """Upload everything submitted so far, now, and wait for it.

        Blocks still inside ``upload_delay`` and blocks that failed before are started
        at once. Raises the first upload error since the previous flush (e.g. the
        StoreUnavailable the retry wrapper gave up with), or TimeoutError.
        """
        with self._cond:
            for held in (self._waiting, self._failed):
                items = list(held.values())
                held.clear()
                for item in items:
                    self._start(item)
            running = set(self._running)
        _, not_done = wait_futures(running, timeout=timeout)
        if not_done:
            raise TimeoutError(f"{len(not_done)} block uploads still running after {timeout}s")
        with self._cond:
            errors, self._errors = self._errors, []
        if errors:
            if len(errors) > 1:
                log.error("%d block uploads failed; raising the first", len(errors))
            raise errors[0]

    def pending(self) -> int:
        """Blocks submitted and not yet stored: waiting, uploading, or failed."""
        with self._cond:
            return len(self._waiting) + self._in_flight + len(self._failed)

    def close(self, *, flush: bool = True) -> None:
        """Stop the uploader; by default upload everything first (raising its errors).

        ``flush=False`` abandons waiting and failed blocks (a volume being discarded).
        """
        try:
            if flush:
                self.flush()
        finally:
            with self._cond:
                self._closed = True
                dropped = len(self._waiting) + len(self._failed)
                self._waiting.clear()
                self._failed.clear()
                self._cond.notify_all()
            metrics.UPLOAD_QUEUE_DEPTH.dec(dropped)
            self._pool.shutdown(wait=True)
            if self._timer is not None:
                self._timer.join()

    def __enter__(self) -> Uploader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals -------------------------------------------------------------------

    def _start(self, item: _Item) -> None:
        """Hand ``item`` to the pool (lock held)."""
        fut = self._pool.submit(self._upload, item)
        self._in_flight += 1
        self._running.add(fut)
        fut.add_done_callback(self._finished)

    def _finished(self, fut: Future[None]) -> None:
        with self._cond:
            self._running.discard(fut)

    def _upload(self, item: _Item) -> None:
        try:
            size = self._put_from_any(item)
        except Exception as exc:  # recorded and raised by flush(), never swallowed
            log.warning("upload of block %s failed: %s", item.digest, exc)
            metrics.UPLOAD_ERRORS.inc()
            with self._cond:
                self._in_flight -= 1
                self._errors.append(exc)
                kept = self._failed.get(item.digest)
                if kept is None:
                    self._failed[item.digest] = item
                else:  # resubmitted while this attempt ran: one entry, all refs
                    for source in item.sources:
                        kept.merge(source, refs=0)
                    kept.refs += item.refs
                    metrics.UPLOAD_QUEUE_DEPTH.dec()
            return
        with self._cond:
            self._in_flight -= 1
        metrics.UPLOAD_QUEUE_DEPTH.dec()
        metrics.UPLOADED_BLOCKS.inc()
        metrics.UPLOADED_BYTES.inc(size)

    def _put_from_any(self, item: _Item) -> int:
        """Store the block from the first source that still holds it; return its size.

        A staged file that is gone or changed is skipped for the next source; a store
        error is raised at once (another copy of the bytes would not help).
        """
        first_error: Exception | None = None
        for source in item.sources:
            try:
                data = Path(source).read_bytes() if _is_path(source) else source
                # Bytes handed over in memory were hashed by whoever sealed them and
                # cannot change; a staged file can, so its bytes are checked.
                self.content.put_chunk(data, expected=item.digest, verify=_is_path(source))
            except (OSError, StaleData) as exc:
                first_error = first_error or exc
                continue
            return len(data)
        if first_error is None:
            raise RuntimeError(f"block {item.digest} was submitted without data")
        raise first_error

    def _ensure_timer(self) -> None:
        """Start the delay timer thread on first use (lock held)."""
        if self._timer is None:
            self._timer = threading.Thread(
                target=self._run_timer, name="strata-upload-timer", daemon=True
            )
            self._timer.start()

    def _run_timer(self) -> None:
        with self._cond:
            while not self._closed:
                self.dispatch_due()
                if self._waiting:
                    next_due = min(item.due for item in self._waiting.values())
                    self._cond.wait(timeout=max(next_due - self._clock(), 0.0))
                else:
                    self._cond.wait()
