"""Start a mount daemon in the background and stop it: shared by the CLI and the SDK.

The daemon is ``python -m strata.fs.daemon`` in its own session (it outlives the
caller), logging JSON lines to a per-mountpoint file. ``start`` returns once the kernel
shows the mount, or raises with the daemon's own last error message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from strata.fs.control import ControlError, mount_info
from strata.fs.mountpoint import MountError, unmount, wait_mounted
from strata.fs.options import MountOptions

READY_TIMEOUT = 60.0


def log_path(mountpoint: Path) -> Path:
    import platformdirs

    digest = hashlib.sha256(str(mountpoint).encode()).hexdigest()[:12]
    directory = Path(os.environ.get("STRATA_LOG_DIR") or platformdirs.user_log_dir("strata"))
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"mount-{digest}.log"


def _last_error(log: Path) -> str:
    """The daemon's last error message (its logs are JSON lines), for a one-line report."""
    try:
        lines = log.read_text(errors="replace").splitlines()[-40:]
    except FileNotFoundError:
        return "no output"
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("level") in ("error", "critical"):
            return str(record.get("msg"))
    return " / ".join(lines[-3:]) or "no output"


def start(store_url: str, source: str, options: MountOptions) -> int:
    """Mount in a detached daemon; return its pid once the mount is ready."""
    mountpoint = Path(options.mount_path)
    log = log_path(mountpoint)
    argv = [
        sys.executable,
        "-m",
        "strata.fs.daemon",
        "--store",
        store_url,
        "--source",
        source,
        "--options",
        json.dumps(dataclasses.asdict(options)),
    ]
    with open(log, "ab") as out:
        child = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )
    try:
        wait_mounted(
            mountpoint,
            READY_TIMEOUT,
            alive=lambda: child.poll() is None,
            served=_ServedBy(mountpoint, child.pid),
        )
    except MountError:
        if child.poll() is None:
            child.kill()
        raise MountError(f"mount of {source} failed: {_last_error(log)} (log: {log})") from None
    return child.pid


class _ServedBy:
    """Does the mount at ``mountpoint`` answer the control xattr as daemon ``pid``?

    The question is a FUSE request, and a FUSE request blocks until the daemon
    answers: asked from a thread (one at a time), so a daemon stuck before serving
    cannot hang the caller past ``READY_TIMEOUT``.
    """

    def __init__(self, mountpoint: Path, pid: int) -> None:
        self.mountpoint = mountpoint
        self.pid = pid
        self._answer = False
        self._thread: threading.Thread | None = None

    def __call__(self) -> bool:
        if self._answer:
            return True
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._ask, name="strata-probe", daemon=True)
            self._thread.start()
        self._thread.join(0.5)
        return self._answer

    def _ask(self) -> None:
        # Failing means a dead mount (ENOTCONN), not Strata, or not answering yet.
        with contextlib.suppress(ControlError, OSError, ValueError):
            self._answer = mount_info(self.mountpoint).get("pid") == self.pid


def stop(mountpoint: str | Path, timeout: float = 300.0) -> None:
    """Unmount and wait for the daemon to finish flushing and exit."""
    try:
        pid: int | None = int(mount_info(mountpoint)["pid"])  # type: ignore[arg-type]
    except ControlError:
        pid = None
    unmount(mountpoint)
    if pid is None:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return
        time.sleep(0.05)
    raise MountError(f"the daemon of {mountpoint} (pid {pid}) did not exit in {timeout:.0f}s")


def alive(pid: int) -> bool:
    """Running, and not a zombie (the daemon's parent may never reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False
