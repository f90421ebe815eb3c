"""The control channel: reserved extended attributes on the mount root.

A process that can see the mount (the task itself, ``strata commit`` in the same pod,
the CSI node plugin through its bind mount) talks to the daemon with two syscalls:

* ``setxattr(root, "user.strata.commit", {"id": ID, "message": MSG})`` — the daemon
  commits synchronously; the call returns when the version is sealed (or fails with
  the error's errno).
* ``getxattr(root, "user.strata.result.ID")`` → ``{"version": "vol@id"}`` or
  ``{"error": "…"}``; ``getxattr(root, "user.strata.info")`` → JSON about the mount.

No socket, no credentials, no network path: the kernel carries the request.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
from pathlib import Path

from strata.errors import StrataError

PREFIX = "user.strata."


class ControlError(StrataError):
    """A control request to a mount failed (not a Strata mount, or the commit failed)."""


def _xattr(path: Path, name: str) -> bytes:
    try:
        return os.getxattr(path, PREFIX + name)
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise ControlError(f"{path} is not a Strata mount") from None
        raise ControlError(f"{path}: {exc.strerror}") from None


def mount_info(path: str | Path) -> dict[str, object]:
    """What the daemon says about itself: volume, base, writable, pid, …"""
    return json.loads(_xattr(Path(path), "info"))


def commit_mount(path: str | Path, message: str = "") -> str:
    """Ask the daemon serving ``path`` to commit; return the new version ref."""
    mnt = Path(path)
    info = mount_info(mnt)
    if not info.get("writable"):
        raise ControlError(f"{mnt} is a read-only mount of {info.get('source')}; nothing to commit")
    request_id = secrets.token_hex(8)
    body = json.dumps({"id": request_id, "message": message}).encode()
    try:
        os.setxattr(mnt, PREFIX + "commit", body)
    except OSError as exc:
        detail = _result_error(mnt, request_id) or exc.strerror
        raise ControlError(f"commit of {mnt} failed: {detail}") from None
    result = json.loads(_xattr(mnt, f"result.{request_id}"))
    if result.get("error"):
        raise ControlError(f"commit of {mnt} failed: {result['error']}")
    return str(result["version"])


def _result_error(mnt: Path, request_id: str) -> str | None:
    try:
        return json.loads(os.getxattr(mnt, f"{PREFIX}result.{request_id}")).get("error")
    except OSError:
        return None
