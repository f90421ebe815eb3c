"""One mount, from start to unmount: claim, working state, timers, control, cleanup.

A writable session holds the volume's writer claim (renewed on a timer, so a crashed
daemon's claim expires), checkpoints the overlay on a timer (autosave bounds what a
crash of un-fsync'd writes can lose), polls the store for seal requests, and answers
control xattrs. A read-only session serves an immutable version and needs none of it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import getpass
import hashlib
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from strata.config import cache_root
from strata.errors import FencedWriter, StrataError, VolumeBusy
from strata.fs.options import MountOptions
from strata.meta.names import parse_ref
from strata.meta.repo import Repository, WriterClaim
from strata.meta.seal import answer_seal, pending_seals
from strata.meta.view import VersionView
from strata.meta.working.state import WorkingState
from strata.meta.working.types import FsError

log = logging.getLogger("strata.fs.session")

CLAIM_TTL = 60.0
SEAL_POLL = 3.0


def default_cache_dir(store_url: str, volume: str) -> Path:
    """Per store and volume, so the next writable mount on this machine finds the
    overlay a crashed daemon left (invariant 6)."""
    digest = hashlib.sha256(store_url.encode()).hexdigest()[:12]
    return cache_root() / "mounts" / digest / volume


def _lock_session(cache_dir: Path, volume: str, holder: str) -> int:
    """One live writable mount per overlay directory (the kernel drops it on a crash)."""
    fd = os.open(cache_dir / "mount.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise VolumeBusy(
            f"volume {volume!r} is being written by another mount on this machine ({holder})"
        ) from None
    return fd


def chunk_cache_dir(store_url: str) -> Path:
    """One chunk cache per store, shared by every mount of it on this machine."""
    digest = hashlib.sha256(store_url.encode()).hexdigest()[:12]
    return cache_root() / "chunks" / digest


class MountSession:
    """Everything one mounted volume needs besides the FUSE loop itself."""

    def __init__(self, repo: Repository, source: str, options: MountOptions, store_url: str):
        self.repo = repo
        self.source = source
        self.options = options
        self.store_url = store_url
        self.volume, self.version_id = parse_ref(source)
        self.writable = self.version_id is None and not options.read_only
        self.state: Any = None
        self.claim: WriterClaim | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._results: dict[str, dict[str, object]] = {}
        self._commit_lock = threading.Lock()
        self.holder = ""
        self._lock_fd: int | None = None

    # --- start / stop ------------------------------------------------------------------

    def open(self) -> None:
        """Claim and open (writable), or open the version view (read-only)."""
        if not self.writable:
            version = self.repo.version(self.source)
            self.state = VersionView(self.repo, version)
            return
        cache_dir = Path(self.options.cache_dir or default_cache_dir(self.store_url, self.volume))
        cache_dir.mkdir(parents=True, exist_ok=True)
        # Holder names this machine's overlay: a restart after a crash takes its own
        # claim over at once; anyone else waits for the claim to expire. The lock makes
        # sure a live mount of the same overlay is never fenced by a second attempt.
        self.holder = f"{getpass.getuser()}@{socket.gethostname()}:{cache_dir}"
        self._lock_fd = _lock_session(cache_dir, self.volume, self.holder)
        try:
            self.claim = self.repo.acquire_writer(self.volume, self.holder, CLAIM_TTL)
            # GC protects what this session uploads from now on; anything older that
            # a write dedups against gets its age refreshed (strata.meta.gc).
            self.repo.content.set_refresh_before()
            self.state = WorkingState.open(
                self.repo,
                self.claim,
                cache_dir,
                max_uploads=self.options.max_uploads,
                upload_delay=self.options.upload_delay or 0.0,
                staged_budget=self.options.cache_size,
            )
        except BaseException:
            if self.claim is not None:
                with contextlib.suppress(StrataError):
                    self.repo.release_writer(self.claim)
            os.close(self._lock_fd)
            raise

    def start_timers(self) -> None:
        if not self.writable:
            return
        self._spawn("strata-claim", self._renew_loop, CLAIM_TTL / 3)
        if self.options.autosave > 0:
            self._spawn("strata-autosave", self._autosave_loop, self.options.autosave)
        self._spawn("strata-seals", self._seal_loop, SEAL_POLL)

    def _spawn(self, name: str, loop: Any, interval: float) -> None:
        thread = threading.Thread(target=loop, args=(interval,), name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def close(self) -> None:
        """After unmount: stop timers, make state durable, release the claim."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        if self.state is not None:
            if self.writable:
                with contextlib.suppress(StrataError):
                    self.state.seal_all()
            self.state.close()
        if self.claim is not None:
            with contextlib.suppress(StrataError):
                self.repo.release_writer(self.claim)
        if self._lock_fd is not None:
            os.close(self._lock_fd)

    # --- timers ------------------------------------------------------------------------

    def _renew_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                assert self.claim is not None
                lapsed = self.claim.expires <= time.time()
                self.claim = self.repo.renew_writer(self.claim)
                if lapsed:  # GC may have stopped protecting this session meanwhile
                    self.repo.content.set_refresh_before()
                self.state.claim = self.claim
            except FencedWriter as exc:
                log.error("lost the writer claim of %s: %s", self.volume, exc)
                return
            except StrataError as exc:
                log.warning("could not renew the writer claim of %s: %s", self.volume, exc)

    def _autosave_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.state.checkpoint()
            except StrataError as exc:
                log.warning("autosave of %s failed: %s", self.volume, exc)

    def _seal_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                requests = pending_seals(self.repo.store, self.volume)
            except StrataError as exc:
                log.warning("polling seal requests of %s failed: %s", self.volume, exc)
                continue
            for req in requests:
                try:
                    version = self.commit(req.message or f"sealed for {req.requested_by}")
                    answer_seal(self.repo.store, req, version)
                except StrataError as exc:
                    with contextlib.suppress(StrataError):
                        answer_seal(self.repo.store, req, None, str(exc))

    # --- commit and control ------------------------------------------------------------

    def commit(self, message: str) -> str:
        if not self.writable:
            raise FsError(errno.EROFS, f"{self.source} is mounted read-only")
        with self._commit_lock:
            version = self.state.commit(message, author=self.holder)
        log.info("committed %s (%s)", version.ref, message)
        return version.ref

    def info(self) -> dict[str, object]:
        return {
            "source": self.source,
            "volume": self.volume,
            "writable": self.writable,
            "base": getattr(self.state, "base", None) if self.writable else self.source,
            "pid": os.getpid(),
            "holder": self.holder,
            "store": self.store_url,
        }

    # Control protocol (strata.fs.control): names arrive without the "user.strata." prefix.
    def set(self, name: str, value: bytes) -> None:
        if name != "commit":
            raise FsError(errno.EOPNOTSUPP, f"unknown control attribute {name!r}")
        try:
            body = json.loads(value)
            request_id, message = str(body["id"]), str(body.get("message", ""))
        except (ValueError, KeyError, TypeError):
            raise FsError(errno.EINVAL, "malformed commit request") from None
        try:
            self._results[request_id] = {"version": self.commit(message), "at": time.time()}
        except StrataError as exc:
            self._results[request_id] = {"error": str(exc), "at": time.time()}
            raise

    def get(self, name: str) -> bytes:
        if name == "info":
            return json.dumps(self.info()).encode()
        if name.startswith("result."):
            result = self._results.get(name[len("result.") :])
            if result is not None:
                return json.dumps(result).encode()
        raise FsError(errno.ENODATA, f"no control attribute {name!r}")

    def names(self) -> list[str]:
        return ["info"]
