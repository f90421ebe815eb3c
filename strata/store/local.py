"""A store in a local directory (``file:///abs/path``): the embedded default.

Keys map one-to-one onto paths under the root (``chunks/ab/abcd…`` is the file
``<root>/chunks/ab/abcd…``), so a store can be inspected with ``ls`` and copied with
``rsync``. Names starting with ``.strata-`` are reserved for our own bookkeeping and
are never keys.

How each guarantee of :class:`~strata.store.base.Store` is kept on a POSIX filesystem:

* **Atomic writes.** Data goes to a temp file in the target's directory, is fsynced,
  and is renamed over the target; the directory is fsynced so the rename survives a
  crash. Readers see the old object or the new one, never a mix. A crash leaves at
  worst a ``.strata-tmp-*`` file, which ``list`` ignores.
* **``if_absent``.** The fsynced temp file is hard-linked to the final name.
  ``link(2)`` fails with ``EEXIST`` atomically, so of many racing writers exactly one
  wins, and the winner's object is complete the moment it becomes visible.
* **``if_match``.** ``rename(2)`` cannot compare, so a lock does: the writer takes an
  exclusive ``flock`` on ``.strata-locks/<stripe>``, compares the current content's
  etag, and renames while holding it. Plain puts and deletes take the same lock around
  their rename/unlink so they cannot slip between the compare and the rename. Locks are
  striped over 256 files (by hash of the key) rather than one file per key, so a store
  with millions of chunks does not grow millions of lock files. ``flock`` excludes
  across processes on one host and across threads (each call opens its own file
  description); it is not a cluster lock, and local stores are single-host.
* **Etags** are an opaque digest of the content: the first 128 bits of its blake3
  hash (8-15x cheaper than MD5, which S3 uses; etags are compared, never interpreted,
  and a 4 MiB chunk costs ~1 ms instead of ~9). ``put`` caches the etag in the
  ``user.strata.etag.b3`` xattr of the file (set before the rename, so the two are
  never out of step) so ``head`` and ``list`` need not re-read large objects; where
  xattrs are unsupported, or on objects an older Strata wrote (MD5 under another
  name), it is computed from the content. The compare of ``if_match`` always hashes
  the content itself. ``get`` computes no etag at all; ``get_with_etag`` does.
  Content-addressed objects (``LAZY_PREFIXES``) need no hashing: their key already
  names their content, which never changes, so their etag is taken from the key.

* **Durability.** A put is durable when it returns (temp file fsynced, renamed or
  linked, directory fsynced) -- except for content-addressed objects (keys under
  ``chunks/`` and ``trees/``, ``LAZY_PREFIXES``), whose data is flushed in bulk: nothing
  can reference one until some other object names it (a version manifest, through a
  head), and every other put first makes all earlier content durable with one
  ``syncfs(2)`` of the store's filesystem. Two fsyncs per 4 KiB file were most of the
  cost of writing small files; one ``syncfs`` per commit is not. ``close`` syncs too.
  A power cut can leave such an object empty (ext4 may keep a name whose data never
  reached the disk); a later put of the same key replaces an empty object rather than
  trusting it, and readers reject it as corrupt meanwhile (a valid object is never
  empty: the codec header alone is 5 bytes).

One difference from a bucket is inherent to directories: ``a`` and ``a/b`` cannot
both exist. Strata's key layout (``strata.chunks.layout``) never needs both; a put that
would need both fails with a :class:`~strata.errors.StoreError` saying so.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import os
import secrets
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import blake3

from strata.errors import ObjectNotFound, PreconditionFailed, StoreError
from strata.store.base import ObjectInfo, Store

#: names with this prefix are ours (temp files, lock files), never keys
RESERVED_PREFIX = ".strata-"
_TMP_PREFIX = RESERVED_PREFIX + "tmp-"
_LOCK_DIR = RESERVED_PREFIX + "locks"
_LOCK_STRIPES = 256
_ETAG_XATTR = "user.strata.etag.b3"
_READ_BLOCK = 1 << 20


def validate_key(key: str) -> str:
    """Return ``key`` if it is a well-formed store key, else raise ValueError.

    Keys are relative ``/``-separated paths of non-empty segments. Every backend
    applies the same rule so a key that works on one works on all, and so no key can
    escape a local store's root or collide with its bookkeeping files.
    """
    if not isinstance(key, str) or not key:
        raise ValueError(f"invalid store key {key!r}: must be a non-empty string")
    if key.startswith("/"):
        raise ValueError(f"invalid store key {key!r}: must be relative (no leading '/')")
    if "\x00" in key:
        raise ValueError(f"invalid store key {key!r}: must not contain NUL")
    for segment in key.split("/"):
        if segment == "":
            raise ValueError(
                f"invalid store key {key!r}: empty path segment ('//' or trailing '/')"
            )
        if segment in (".", ".."):
            raise ValueError(f"invalid store key {key!r}: '.' and '..' segments are not allowed")
        if segment.startswith(RESERVED_PREFIX):
            raise ValueError(
                f"invalid store key {key!r}: segments starting with {RESERVED_PREFIX!r} "
                "are reserved"
            )
    return key


def _etag(data: bytes | bytearray | memoryview) -> str:
    """The etag of ``data``: 128 bits of blake3 as hex (see the module docstring)."""
    return blake3.blake3(data).hexdigest(length=16)


def _content_etag(key: str) -> str | None:
    """The etag of a content-addressed object, from its key (see "Etags"), else None."""
    if key.startswith(LAZY_PREFIXES):
        return key.rsplit("/", 1)[-1][:32]
    return None


def _etag_file(fd: int) -> str:
    digest = blake3.blake3()
    while block := os.read(fd, _READ_BLOCK):
        digest.update(block)
    return digest.hexdigest(length=16)


#: content-addressed objects: made durable in bulk, before the next other put
LAZY_PREFIXES = ("chunks/", "trees/")


def _syncfs(path: Path) -> None:
    """Flush every dirty page and inode of the filesystem holding ``path``."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _libc is None or not hasattr(_libc, "syncfs"):
            os.sync()
        elif _libc.syncfs(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), str(path))
    finally:
        os.close(fd)


try:
    _libc: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - every Linux libc has it
    _libc = None


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return -1


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStore(Store):
    """Objects as files under ``root``; see the module docstring for the guarantees."""

    def __init__(self, root: Path | str) -> None:
        root = Path(root)
        if not root.is_absolute():
            raise ValueError(f"local store root must be an absolute path, got {str(root)!r}")
        self.root = root
        self.url = root.as_uri()
        self._unsynced = 0  # lazy puts since the last syncfs
        self._sync_lock = threading.Lock()
        try:
            (root / _LOCK_DIR).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot use {root} as a store directory: {exc}") from exc

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    # --- reading ---------------------------------------------------------------

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFound(key, self.url) from None
        except OSError as exc:
            raise self._error("get", key, exc) from exc

    def get_with_etag(self, key: str) -> tuple[bytes, str]:
        data = self.get(key)
        return data, _content_etag(key) or _etag(data)

    def head(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            info = self._info(key, path)
        except OSError as exc:
            raise self._error("head", key, exc) from exc
        if info is None:
            raise ObjectNotFound(key, self.url)
        return info

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        # Start at the deepest directory the prefix names, then filter by the rest.
        dir_part, _, _ = prefix.rpartition("/")
        if dir_part:
            try:
                validate_key(dir_part)
            except ValueError:
                return  # no valid key can start with this prefix
        start = self.root / dir_part if dir_part else self.root
        base = dir_part + "/" if dir_part else ""
        try:
            yield from self._walk(start, base, prefix)
        except OSError as exc:
            raise self._error("list", prefix, exc) from exc

    def _walk(self, directory: Path, base: str, prefix: str) -> Iterator[ObjectInfo]:
        """Yield objects under ``directory`` in key order.

        Sorting a directory's entries by name alone is not key order: ``a-b`` sorts
        before ``a/…`` as a key but after the directory ``a`` by name. Sorting
        directories by ``name + "/"`` makes the walk yield keys in string order.
        """
        try:
            with os.scandir(directory) as it:
                entries = [e for e in it if not e.name.startswith(RESERVED_PREFIX)]
        except (FileNotFoundError, NotADirectoryError):
            return  # removed while we walked, or the prefix names a file
        order: list[tuple[str, os.DirEntry[str], bool]] = []
        for entry in entries:
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
                if not is_dir and not entry.is_file(follow_symlinks=False):
                    continue  # sockets, symlinks, …: not ours
            except FileNotFoundError:
                continue
            key = base + entry.name
            sort_key = key + "/" if is_dir else key
            # Prune subtrees that cannot hold a key with this prefix.
            if not (sort_key.startswith(prefix) or prefix.startswith(sort_key)):
                continue
            order.append((sort_key, entry, is_dir))
        order.sort(key=lambda item: item[0])
        for sort_key, entry, is_dir in order:
            if is_dir:
                yield from self._walk(Path(entry.path), sort_key, prefix)
            elif sort_key.startswith(prefix):
                info = self._info(sort_key, Path(entry.path))
                if info is not None:
                    yield info

    def _info(self, key: str, path: Path) -> ObjectInfo | None:
        """ObjectInfo of the file at ``path``, or None if there is no object there."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return None
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None
            etag = _content_etag(key)
            if etag is None:
                try:
                    etag = os.getxattr(fd, _ETAG_XATTR).decode("ascii")
                except OSError:
                    etag = _etag_file(fd)
        finally:
            os.close(fd)
        return ObjectInfo(key, st.st_size, st.st_mtime, etag)

    # --- writing ---------------------------------------------------------------

    def put(
        self, key: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None
    ) -> str:
        if if_absent and if_match is not None:
            raise ValueError("put: pass at most one of if_absent and if_match")
        path = self._path(key)
        etag = _content_etag(key) or _etag(data)
        lazy = if_absent and key.startswith(LAZY_PREFIXES)
        try:
            if not lazy:
                self.sync()  # whatever this object may name is durable first
            tmp = self._write_temp(key, path, data, etag, durable=not lazy)
            try:
                if if_absent:
                    try:
                        self._link_new(key, tmp, path)
                    except PreconditionFailed:
                        if not lazy or _size_of(path) != 0:
                            raise
                        # A torn object a power cut left before its sync (see
                        # "Durability"): same key, same content, so replace it.
                        os.rename(tmp, path)
                else:
                    with self._locked(key):
                        if if_match is not None:
                            self._check_etag(key, path, if_match)
                        os.rename(tmp, path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            if lazy:
                with self._sync_lock:
                    self._unsynced += 1
            else:
                _fsync_dir(path.parent)
        except IsADirectoryError as exc:
            raise StoreError(
                f"cannot put {key!r} in {self.url}: a directory of other objects has that "
                "name (a local store cannot hold both 'a' and 'a/b')"
            ) from exc
        except OSError as exc:
            raise self._error("put", key, exc) from exc
        return etag

    def sync(self) -> None:
        """Make every content-addressed object put so far durable (one ``syncfs``)."""
        with self._sync_lock:
            pending, self._unsynced = self._unsynced, 0
            if not pending:
                return
            try:
                _syncfs(self.root)
            except OSError as exc:
                self._unsynced += pending  # not durable: the next put tries again
                raise self._error("sync", "", exc) from exc

    def close(self) -> None:
        self.sync()

    def _write_temp(
        self, key: str, path: Path, data: bytes, etag: str, *, durable: bool = True
    ) -> Path:
        """Write ``data`` to a temp file next to ``path`` (fsynced if ``durable``)."""
        tmp = path.parent / f"{_TMP_PREFIX}{secrets.token_hex(8)}"
        # A concurrent delete may remove an empty parent between our makedirs and our
        # open (it prunes empty directories); that can only happen before the temp
        # file exists in it, so recreating the directory and trying again is enough.
        for _ in range(10):
            self._makedirs(key, path.parent)
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
                break
            except FileNotFoundError:
                continue
        else:
            raise StoreError(f"cannot put {key!r} in {self.url}: its directory keeps vanishing")
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            with contextlib.suppress(OSError):  # an optional cache; see module docstring
                os.setxattr(fd, _ETAG_XATTR, etag.encode("ascii"))
            if durable:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        os.close(fd)
        return tmp

    def _makedirs(self, key: str, directory: Path) -> None:
        """Create ``directory`` and missing parents, fsyncing each new entry's parent."""
        missing: list[Path] = []
        current = directory
        while current != self.root and not current.is_dir():
            missing.append(current)
            current = current.parent
        for new in reversed(missing):
            try:
                new.mkdir()
            except FileExistsError:
                if not new.is_dir():
                    raise StoreError(
                        f"cannot put {key!r} in {self.url}: an object named "
                        f"{new.relative_to(self.root).as_posix()!r} is in the way "
                        "(a local store cannot hold both 'a' and 'a/b')"
                    ) from None
                continue
            _fsync_dir(new.parent)

    def _link_new(self, key: str, tmp: Path, path: Path) -> None:
        try:
            os.link(tmp, path)
        except FileExistsError:
            if path.is_dir():
                raise IsADirectoryError(errno.EISDIR, "is a directory", str(path)) from None
            raise PreconditionFailed(key, "object already exists") from None

    def _check_etag(self, key: str, path: Path, expected: str) -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            raise PreconditionFailed(key, "object does not exist") from None
        try:
            current = _content_etag(key) or _etag_file(fd)
        finally:
            os.close(fd)
        if current != expected:
            raise PreconditionFailed(key, "object changed since it was read")

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            with self._locked(key):
                try:
                    os.unlink(path)
                except (FileNotFoundError, NotADirectoryError):
                    return
                except IsADirectoryError:
                    return  # a directory of other objects, not an object
            _fsync_dir(path.parent)
            self._prune_empty_dirs(path.parent)
        except OSError as exc:
            raise self._error("delete", key, exc) from exc

    def _prune_empty_dirs(self, directory: Path) -> None:
        """Remove now-empty parents so deleted prefixes leave no litter behind.

        ``rmdir`` only succeeds on an empty directory, atomically, so this never
        removes another writer's object; a writer racing it recreates the directory.
        """
        while directory != self.root:
            try:
                directory.rmdir()
            except OSError:
                return  # not empty (ENOTEMPTY/EEXIST), or already gone
            directory = directory.parent

    # --- helpers -----------------------------------------------------------------

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        """Hold the exclusive lock stripe of ``key`` (see the module docstring)."""
        stripe = hashlib.sha256(key.encode()).digest()[0] % _LOCK_STRIPES
        lock_path = self.root / _LOCK_DIR / f"{stripe:02x}"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the last descriptor releases the lock

    def _error(self, op: str, key: str, exc: OSError) -> StoreError:
        reason = exc.strerror or str(exc)
        return StoreError(f"{op} {key!r} in {self.url} failed: {reason} (errno {exc.errno})")
