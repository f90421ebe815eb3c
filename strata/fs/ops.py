"""The llfuse adapter: each handler is a few lines over the working state.

Errors are born in the engine with their errno; :func:`handler` turns them into
``FUSEError`` and turns anything unexpected into EIO *and logs it*, because an exception
escaping an llfuse handler silently ends the mount (FUSE-NOTES.md). Every handler
releases llfuse's global lock around the engine call, so worker threads run in
parallel; the working state has its own lock.

The mount root answers a few reserved extended attributes (``user.strata.*``, see
:mod:`strata.fs.control`): that is how ``strata commit MOUNTPOINT`` reaches the daemon
from any process that can see the mount, even in another container.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import stat
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import llfuse

from strata.errors import StrataError
from strata.fs.attrs import entry_attributes, statvfs
from strata.fs.options import MountOptions
from strata.meta.working.types import Attr

log = logging.getLogger("strata.fs")

F = TypeVar("F", bound=Callable[..., Any])

CONTROL_PREFIX = "user.strata."


class Control(Protocol):
    """The daemon side of the reserved root xattrs (commit requests, info)."""

    def set(self, name: str, value: bytes) -> None: ...

    def get(self, name: str) -> bytes: ...

    def names(self) -> list[str]: ...


def handler(fn: F) -> F:
    """Run ``fn`` without the llfuse lock; map every error to an errno, never escape."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with llfuse.lock_released:
                return fn(*args, **kwargs)
        except llfuse.FUSEError:
            raise
        except StrataError as exc:
            if exc.errno == errno.EIO:
                log.error("%s failed: %s", fn.__name__, exc)
            raise llfuse.FUSEError(exc.errno) from None
        except OSError as exc:
            log.error("%s failed: %s", fn.__name__, exc)
            raise llfuse.FUSEError(exc.errno or errno.EIO) from None
        except Exception:
            log.exception("unexpected error in %s; answering EIO", fn.__name__)
            raise llfuse.FUSEError(errno.EIO) from None

    return wrapper  # type: ignore[return-value]


def _name(raw: bytes) -> str:
    return os.fsdecode(raw)


def _no_system_namespace(key: str) -> None:
    """Refuse ``system.*`` xattrs (POSIX ACLs) with EOPNOTSUPP.

    libfuse 2 never enables kernel ACL support, so the kernel hands
    ``system.posix_acl_access`` to us as an ordinary xattr. Storing it would be a lie:
    ``cp -a``/``tar --acls``/``rsync -A`` set the ACL *instead of* chmod when that
    succeeds, and files would keep their creation mode (0600). EOPNOTSUPP makes them
    fall back to chmod, as on a filesystem mounted without ACLs.
    """
    if key.startswith("system."):
        raise llfuse.FUSEError(errno.EOPNOTSUPP)


class Operations(llfuse.Operations):
    """FUSE requests → WorkingState calls. ``read_only`` refuses changes with EROFS."""

    def __init__(self, state: Any, options: MountOptions, control: Control | None) -> None:
        super().__init__()
        self.state = state
        self.read_only = options.read_only
        self.attr_timeout, self.entry_timeout, self.dir_timeout = options.cache_timeouts()
        self.control = control
        self._dirs: dict[int, list[tuple[bytes, Attr]]] = {}
        self._next_dir = 1
        self._dirs_lock = threading.Lock()

    def _entry(self, attr: Attr, *, entry_timeout: float | None = None) -> llfuse.EntryAttributes:
        timeout = self.entry_timeout if entry_timeout is None else entry_timeout
        return entry_attributes(attr, self.attr_timeout, timeout)

    def _writable(self) -> None:
        if self.read_only:
            raise llfuse.FUSEError(errno.EROFS)

    # --- queries -------------------------------------------------------------------------

    @handler
    def lookup(self, parent_inode: int, name: bytes, ctx: Any = None) -> llfuse.EntryAttributes:
        attr = self.state.lookup(parent_inode, _name(name))
        timeout = self.dir_timeout if attr.kind.value == "d" else self.entry_timeout
        return self._entry(attr, entry_timeout=timeout)

    @handler
    def getattr(self, inode: int, ctx: Any = None) -> llfuse.EntryAttributes:
        return self._entry(self.state.getattr(inode))

    @handler
    def forget(self, inode_list: list[tuple[int, int]]) -> None:
        for inode, _nlookup in inode_list:
            self.state.forget(inode)

    @handler
    def readlink(self, inode: int, ctx: Any) -> bytes:
        return os.fsencode(self.state.readlink(inode))

    @handler
    def opendir(self, inode: int, ctx: Any) -> int:
        listing = [(os.fsencode(e.name), e.attr) for e in self.state.readdir(inode)]
        with self._dirs_lock:
            fh = self._next_dir
            self._next_dir += 1
            self._dirs[fh] = listing
        return fh

    def readdir(self, fh: int, off: int):  # type: ignore[override]
        # A generator: errors cannot happen here (the listing was taken in opendir).
        listing = self._dirs.get(fh, [])
        for index in range(off, len(listing)):
            name, attr = listing[index]
            yield name, self._entry(attr), index + 1

    @handler
    def releasedir(self, fh: int) -> None:
        with self._dirs_lock:
            self._dirs.pop(fh, None)

    @handler
    def statfs(self, ctx: Any) -> llfuse.StatvfsData:
        return statvfs(self.state.statfs())

    @handler
    def access(self, inode: int, mode: int, ctx: Any) -> bool:
        return not (mode & os.W_OK and self.read_only)

    # --- files ---------------------------------------------------------------------------

    @handler
    def open(self, inode: int, flags: int, ctx: Any) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC):
            self._writable()
        self.state.open_handle(inode)
        return inode

    @handler
    def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: Any
    ) -> tuple[int, llfuse.EntryAttributes]:
        self._writable()
        attr = self.state.create(parent_inode, _name(name), mode & 0o7777, ctx.uid, ctx.gid)
        self.state.open_handle(attr.ino)
        return attr.ino, self._entry(attr)

    @handler
    def read(self, fh: int, off: int, size: int) -> bytes:
        return self.state.read(fh, off, size)

    @handler
    def write(self, fh: int, off: int, buf: bytes) -> int:
        self._writable()
        return self.state.write(fh, off, buf)

    @handler
    def flush(self, fh: int) -> None:
        return None

    @handler
    def release(self, fh: int) -> None:
        self.state.release_handle(fh)

    @handler
    def fsync(self, fh: int, datasync: bool) -> None:
        if not self.read_only:
            self.state.fsync(fh, datasync)

    @handler
    def fsyncdir(self, fh: int, datasync: bool) -> None:
        if not self.read_only:
            self.state.checkpoint()

    # --- namespace -----------------------------------------------------------------------

    @handler
    def mkdir(self, parent_inode: int, name: bytes, mode: int, ctx: Any) -> llfuse.EntryAttributes:
        self._writable()
        return self._entry(
            self.state.mkdir(parent_inode, _name(name), mode & 0o7777, ctx.uid, ctx.gid)
        )

    @handler
    def mknod(
        self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: Any
    ) -> llfuse.EntryAttributes:
        self._writable()
        if not stat.S_ISREG(mode):
            raise llfuse.FUSEError(errno.EPERM)  # devices, fifos and sockets: not stored
        return self._entry(
            self.state.create(parent_inode, _name(name), mode & 0o7777, ctx.uid, ctx.gid)
        )

    @handler
    def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: Any
    ) -> llfuse.EntryAttributes:
        self._writable()
        return self._entry(
            self.state.symlink(parent_inode, _name(name), os.fsdecode(target), ctx.uid, ctx.gid)
        )

    @handler
    def link(
        self, inode: int, new_parent_inode: int, new_name: bytes, ctx: Any
    ) -> llfuse.EntryAttributes:
        self._writable()
        return self._entry(self.state.link(inode, new_parent_inode, _name(new_name)))

    @handler
    def unlink(self, parent_inode: int, name: bytes, ctx: Any) -> None:
        self._writable()
        self.state.unlink(parent_inode, _name(name))

    @handler
    def rmdir(self, parent_inode: int, name: bytes, ctx: Any) -> None:
        self._writable()
        self.state.rmdir(parent_inode, _name(name))

    @handler
    def rename(
        self,
        parent_inode_old: int,
        name_old: bytes,
        parent_inode_new: int,
        name_new: bytes,
        ctx: Any,
    ) -> None:
        self._writable()
        self.state.rename(parent_inode_old, _name(name_old), parent_inode_new, _name(name_new))

    @handler
    def setattr(
        self, inode: int, attr: llfuse.EntryAttributes, fields: Any, fh: int | None, ctx: Any
    ) -> llfuse.EntryAttributes:
        self._writable()
        return self._entry(
            self.state.setattr(
                inode,
                mode=attr.st_mode & 0o7777 if fields.update_mode else None,
                uid=attr.st_uid if fields.update_uid else None,
                gid=attr.st_gid if fields.update_gid else None,
                size=attr.st_size if fields.update_size else None,
                atime_ns=attr.st_atime_ns if fields.update_atime else None,
                mtime_ns=attr.st_mtime_ns if fields.update_mtime else None,
            )
        )

    # --- extended attributes (and the control channel on the root) -----------------------

    @handler
    def getxattr(self, inode: int, name: bytes, ctx: Any = None) -> bytes:
        # ctx is optional: llfuse itself calls getxattr(inode, name) to check
        # XATTR_CREATE / XATTR_REPLACE before setxattr (handlers.pxi).
        key = _name(name)
        if inode == llfuse.ROOT_INODE and key.startswith(CONTROL_PREFIX) and self.control:
            return self.control.get(key[len(CONTROL_PREFIX) :])
        _no_system_namespace(key)
        return self.state.getxattr(inode, key)

    @handler
    def setxattr(self, inode: int, name: bytes, value: bytes, ctx: Any) -> None:
        key = _name(name)
        if inode == llfuse.ROOT_INODE and key.startswith(CONTROL_PREFIX) and self.control:
            self.control.set(key[len(CONTROL_PREFIX) :], value)
            return
        _no_system_namespace(key)
        self._writable()
        self.state.setxattr(inode, key, value)

    @handler
    def listxattr(self, inode: int, ctx: Any) -> list[bytes]:
        return [os.fsencode(n) for n in self.state.listxattr(inode)]

    @handler
    def removexattr(self, inode: int, name: bytes, ctx: Any) -> None:
        key = _name(name)
        _no_system_namespace(key)
        self._writable()
        self.state.removexattr(inode, key)
