"""Error types of the Strata engine.

Errors are born with their meaning: each carries an ``errno`` so the FUSE layer can
answer the kernel without guessing, and a message written for a person (which object,
which volume, what to do). The CLI prints ``str(err)`` on one line; the CSI driver and
the operator map the types to gRPC codes and kopf errors.
"""

from __future__ import annotations

import errno as _errno


class StrataError(Exception):
    """Base of every error the engine raises on purpose."""

    errno: int = _errno.EIO


# --- store layer -----------------------------------------------------------------


class StoreError(StrataError):
    """A store request failed (after retries, if the failure was temporary)."""

    errno = _errno.EIO


class ObjectNotFound(StoreError):
    """The object does not exist in the store."""

    errno = _errno.ENOENT

    def __init__(self, key: str, store: str = "") -> None:
        where = f" in {store}" if store else ""
        super().__init__(f"object {key!r} not found{where}")
        self.key = key


class PreconditionFailed(StoreError):
    """A conditional write lost: the object exists / changed since it was read."""

    errno = _errno.EAGAIN

    def __init__(self, key: str, detail: str = "") -> None:
        super().__init__(f"conditional write of {key!r} lost{': ' + detail if detail else ''}")
        self.key = key


class StoreUnavailable(StoreError):
    """The store could not be reached or kept failing after retries."""

    errno = _errno.EIO


class TemporaryStoreError(StoreError):
    """A failure worth retrying (throttling, 5xx, timeout, connection reset).

    Backends raise it; the retry wrapper retries it and turns the last one into
    :class:`StoreUnavailable`.
    """

    errno = _errno.EAGAIN


class InvalidStoreURL(StoreError):
    """A store URL that no backend understands."""

    errno = _errno.EINVAL


# --- chunk layer -------------------------------------------------------------------


class CorruptObject(StrataError):
    """Bytes read from the store do not match their content address.

    Never return wrong bytes: this becomes EIO at the filesystem.
    """

    errno = _errno.EIO

    def __init__(self, key: str, detail: str = "content hash mismatch") -> None:
        super().__init__(f"object {key!r} is corrupt ({detail}); refusing to return its data")
        self.key = key


# --- metadata layer ----------------------------------------------------------------


class InvalidName(StrataError):
    """A volume or version name that is not a DNS-1123 label."""

    errno = _errno.EINVAL


class VolumeNotFound(StrataError):
    errno = _errno.ENOENT

    def __init__(self, name: str) -> None:
        super().__init__(f"volume {name!r} does not exist")
        self.name = name


class VolumeExists(StrataError):
    errno = _errno.EEXIST

    def __init__(self, name: str) -> None:
        super().__init__(f"volume {name!r} already exists")
        self.name = name


class VersionNotFound(StrataError):
    errno = _errno.ENOENT

    def __init__(self, volume: str, version: str) -> None:
        super().__init__(f"version {version!r} of volume {volume!r} does not exist")
        self.volume = volume
        self.version = version


class FencedWriter(StrataError):
    """This writer lost its claim on the volume; it must never move the head."""

    errno = _errno.EROFS


class VolumeBusy(StrataError):
    """Another writer holds the volume."""

    errno = _errno.EBUSY


class UnsupportedFormat(StrataError):
    """The store was written by a newer (or unknown) layout version."""

    errno = _errno.EPROTO
