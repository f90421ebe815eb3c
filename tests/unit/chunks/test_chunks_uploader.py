"""Uploader: bounded concurrency, errors that surface, cancel before the delay."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from prometheus_client import REGISTRY

from strata.chunks.hashing import content_hash
from strata.chunks.layout import chunk_key
from strata.chunks.objects import ContentStore, StaleData
from strata.chunks.uploader import Uploader
from strata.errors import StoreUnavailable
from strata.store.base import StoreWrapper
from strata.store.memory import MemoryStore

if TYPE_CHECKING:
    from conftest import FakeClock, ProbeStore

WAIT = 10.0


def block(i: int) -> tuple[str, bytes]:
    data = f"block {i} ".encode() * 100
    return content_hash(data), data


def stored(memory: MemoryStore) -> set[str]:
    return {o.key.rsplit("/", 1)[-1] for o in memory.list("chunks/")}


def queue_depth() -> float:
    return REGISTRY.get_sample_value("strata_upload_queue_depth") or 0.0


@pytest.fixture
def content(probe: ProbeStore) -> ContentStore:
    return ContentStore(probe)


@pytest.fixture
def uploader(content: ContentStore) -> Iterator[Uploader]:
    up = Uploader(content, max_uploads=4)
    yield up
    up.close(flush=False)


def test_submitted_bytes_and_staged_files_are_uploaded(
    uploader: Uploader, memory: MemoryStore, tmp_path: Path
) -> None:
    (d1, b1), (d2, b2) = block(1), block(2)
    staged = tmp_path / "staged"
    staged.write_bytes(b2)
    uploader.submit(d1, b1)
    uploader.submit(d2, staged)
    uploader.flush(timeout=WAIT)
    assert stored(memory) == {d1, d2}
    assert memory.get(chunk_key(d2))  # through the codec, as ContentStore writes it
    assert uploader.pending() == 0


def test_at_most_max_uploads_run_at_once(content: ContentStore, probe: ProbeStore) -> None:
    probe.gate.clear()  # hold every PUT in flight
    with Uploader(content, max_uploads=3) as up:
        blocks = [block(i) for i in range(12)]
        for digest, data in blocks:
            up.submit(digest, data)
        probe.wait_in_flight(3)
        assert up.pending() == 12
        probe.gate.set()
        up.flush(timeout=WAIT)
    assert probe.max_in_flight == 3
    assert probe.calls["put"] == 12


def test_flush_raises_the_store_error_and_keeps_the_block(
    uploader: Uploader, probe: ProbeStore, memory: MemoryStore
) -> None:
    digest, data = block(1)
    probe.put_error = StoreUnavailable("store unreachable after 5 retries")
    uploader.submit(digest, data)
    with pytest.raises(StoreUnavailable, match="after 5 retries"):
        uploader.flush(timeout=WAIT)
    assert uploader.pending() == 1  # not dropped
    assert stored(memory) == set()
    probe.put_error = None
    uploader.flush(timeout=WAIT)  # retried
    assert stored(memory) == {digest}
    assert uploader.pending() == 0


def test_an_error_from_a_background_upload_is_raised_by_the_next_flush(
    uploader: Uploader, probe: ProbeStore
) -> None:
    probe.put_error = StoreUnavailable("down")
    probe.gate.clear()
    uploader.submit(*block(1))
    probe.wait_in_flight(1)
    probe.gate.set()
    probe.wait_in_flight(0)  # the PUT has failed, before anyone called flush
    probe.put_error = None
    uploader.submit(*block(2))
    with pytest.raises(StoreUnavailable):
        uploader.flush(timeout=WAIT)
    uploader.flush(timeout=WAIT)  # reported once; both blocks are now stored


def test_staged_file_that_changed_fails_the_upload(uploader: Uploader, tmp_path: Path) -> None:
    digest, data = block(1)
    staged = tmp_path / "staged"
    staged.write_bytes(data + b"appended later")
    uploader.submit(digest, staged)
    with pytest.raises(StaleData, match="changed before it was uploaded"):
        uploader.flush(timeout=WAIT)


def test_cancel_before_the_delay_means_never_uploaded(
    content: ContentStore, probe: ProbeStore, clock: FakeClock
) -> None:
    digest, data = block(1)
    with Uploader(content, upload_delay=30, clock=clock) as up:
        before = queue_depth()
        up.submit(digest, data)
        assert queue_depth() == before + 1
        clock.advance(29)
        assert up.dispatch_due() == 0  # still inside the delay: nothing may start
        assert up.cancel(digest)  # the file was deleted
        assert queue_depth() == before
        clock.advance(60)
        assert up.dispatch_due() == 0
        up.flush(timeout=WAIT)
        assert up.pending() == 0
    assert probe.calls["put"] == 0


def test_the_delay_expiring_starts_the_upload(
    content: ContentStore, memory: MemoryStore, clock: FakeClock
) -> None:
    digest, data = block(1)
    uploaded = threading.Event()

    class Signal(StoreWrapper):
        def put(self, key: str, blob: bytes, **kw: object) -> str:
            etag = super().put(key, blob, **kw)  # type: ignore[arg-type]
            uploaded.set()
            return etag

    with Uploader(ContentStore(Signal(memory)), upload_delay=30, clock=clock) as up:
        up.submit(digest, data)
        assert up.dispatch_due() == 0
        clock.advance(30)
        up.wake()  # the timer thread re-reads the clock and starts it, no flush needed
        assert uploaded.wait(WAIT)
        up.flush(timeout=WAIT)
    assert stored(memory) == {digest}


def test_shared_block_survives_cancelling_one_of_its_files(
    content: ContentStore, memory: MemoryStore, clock: FakeClock
) -> None:
    digest, data = block(1)
    with Uploader(content, upload_delay=30, clock=clock) as up:
        up.submit(digest, data)  # file A
        up.submit(digest, data)  # file B, same content
        assert up.pending() == 1
        assert up.cancel(digest)  # A deleted
        up.flush(timeout=WAIT)
    assert stored(memory) == {digest}


def test_shared_block_uploads_from_whichever_staged_copy_survives(
    content: ContentStore, memory: MemoryStore, clock: FakeClock, tmp_path: Path
) -> None:
    digest, data = block(1)
    first, second = tmp_path / "a", tmp_path / "b"
    first.write_bytes(data)
    second.write_bytes(data)
    with Uploader(content, upload_delay=30, clock=clock) as up:
        up.submit(digest, first)
        up.submit(digest, second)
        assert up.cancel(digest)
        first.unlink()  # file a deleted, with its staged copy
        up.flush(timeout=WAIT)
    assert stored(memory) == {digest}


def test_cancel_after_the_upload_started_reports_false(
    uploader: Uploader, probe: ProbeStore
) -> None:
    digest, data = block(1)
    probe.gate.clear()
    uploader.submit(digest, data)
    probe.wait_in_flight(1)
    assert not uploader.cancel(digest)
    with pytest.raises(TimeoutError):
        uploader.flush(timeout=0.01)
    probe.gate.set()
    uploader.flush(timeout=WAIT)


def test_close_uploads_what_is_waiting_unless_told_not_to(
    content: ContentStore, memory: MemoryStore, clock: FakeClock
) -> None:
    (d1, b1), (d2, b2) = block(1), block(2)
    kept = Uploader(content, upload_delay=30, clock=clock)
    kept.submit(d1, b1)
    kept.close()
    dropped = Uploader(content, upload_delay=30, clock=clock)
    before = queue_depth()
    dropped.submit(d2, b2)
    dropped.close(flush=False)
    assert queue_depth() == before
    assert stored(memory) == {d1}
    with pytest.raises(RuntimeError, match="closed"):
        dropped.submit(d2, b2)


def test_bad_arguments(content: ContentStore) -> None:
    with pytest.raises(ValueError):
        Uploader(content, max_uploads=0)
    with pytest.raises(ValueError):
        Uploader(content, upload_delay=-1)
