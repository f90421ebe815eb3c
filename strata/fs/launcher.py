"""Start a mount daemon in the background and stop it: shared by the CLI and the SDK.

The daemon is ``python -m strata.fs.daemon`` in its own session (it outlives the
caller), logging JSON lines to a per-mountpoint file. ``start`` returns once the kernel
shows the mount, or raises with the daemon's own last error message.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
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
            served=lambda: _served_by(mountpoint, child.pid),
        )
    except MountError:
        if child.poll() is None:
            child.kill()
        raise MountError(f"mount of {source} failed: {_last_error(log)} (log: {log})") from None
    return child.pid


def _served_by(mountpoint: Path, pid: int) -> bool:
    """The mount at ``mountpoint`` answers the control xattr as daemon ``pid``."""
    try:
        return mount_info(mountpoint).get("pid") == pid
    except (ControlError, OSError, ValueError):
        return False  # a dead mount (ENOTCONN), not Strata, or not answering yet


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
