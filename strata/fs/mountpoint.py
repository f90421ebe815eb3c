"""Mount point hygiene: find dead FUSE mounts, clean them, wait for live ones.

A FUSE daemon killed with -9 leaves its mount behind: every access fails with ENOTCONN
("Transport endpoint is not connected"). The next mount detects that and lazily
unmounts it first, so users never have to.
"""

from __future__ import annotations

import errno
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from strata.errors import StrataError


class MountError(StrataError):
    errno = errno.EIO


def mount_fstype(path: str | Path) -> str | None:
    """The filesystem type mounted exactly at ``path`` (from /proc/self/mountinfo)."""
    target = os.path.realpath(path)
    found = None
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            sep = fields.index("-")
            mount_point = fields[4].encode().decode("unicode_escape")
            if mount_point == target:
                found = fields[sep + 1]  # the last one wins (stacked mounts)
    return found


def is_dead_mount(path: str | Path) -> bool:
    """A FUSE mount whose daemon is gone ("Transport endpoint is not connected").

    ``statvfs``, not ``stat``: the kernel answers ``stat`` of the mount root from its
    attribute cache (``attr_cache``, 60 s) without asking the daemon, so a dead mount
    can look alive; ``statfs`` always goes to the daemon.
    """
    try:
        os.statvfs(path)
    except OSError as exc:
        return exc.errno == errno.ENOTCONN
    return False


def unmount(path: str | Path, *, lazy: bool = False) -> None:
    """``fusermount -u`` (``-z`` lazy); raises MountError with fusermount's reason."""
    argv = ["fusermount", "-u", *(["-z"] if lazy else []), str(path)]
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise MountError(f"could not unmount {path}: {proc.stderr.strip() or proc.returncode}")


def prepare(path: str | Path) -> Path:
    """Make ``path`` ready to mount on: clean a dead mount, create it, refuse a live one."""
    mnt = Path(path)
    if is_dead_mount(mnt):
        unmount(mnt, lazy=True)
    if (mount_fstype(mnt) or "").startswith("fuse"):
        raise MountError(f"{mnt} is already a mounted filesystem; unmount it first")
    mnt.mkdir(parents=True, exist_ok=True)
    if not mnt.is_dir():
        raise MountError(f"{mnt} is not a directory")
    return mnt


def wait_mounted(
    path: str | Path,
    timeout: float,
    alive: Callable[[], bool] = lambda: True,
    served: Callable[[], bool] = lambda: True,
) -> None:
    """Wait until a FUSE filesystem is mounted at ``path`` and ``served()`` says it is
    the one we started (or ``alive()`` turns false).

    A FUSE entry in the mount table alone proves nothing: the dead mount a crashed
    daemon left (which the new daemon is about to clean) or somebody else's live mount
    look just the same.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fstype = mount_fstype(path)
        if fstype is not None and fstype.startswith("fuse") and served():
            return
        if not alive():
            raise MountError(f"the filesystem daemon for {path} exited before mounting")
        time.sleep(0.05)
    raise MountError(f"{path} was not mounted after {timeout:.0f}s")
