"""The task author's API, async, in the shape hosted platforms made familiar::

    from strata import Volume

    vol = Volume.new("scratch")                  # writable handle (creates the volume)
    await vol.mount(mount_path="/workspace")     # a local directory, backed by the store
    ro = await vol.commit(message="step 1")      # sealed version; the mount stays live
    ro = await vol.finalize(message="done")      # sealed version; unmounted
    await ro.mount()                             # read-only, always
    fork = await ro.fork(name="experiment")      # writable, copy-on-write, O(1)

Handles are small values: ``handle.to_dict()`` / ``Volume.from_dict(d)`` pass them
between tasks (JSON-safe). Blocking work runs in a thread, so an event loop is never
stalled by a mount or a commit.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from strata.config import default_store_url
from strata.fs import launcher
from strata.fs.control import commit_mount
from strata.fs.mountpoint import mount_fstype
from strata.fs.options import DEFAULT_MOUNT_PATH, MountOptions
from strata.meta.names import check_volume_name, format_ref, parse_ref
from strata.meta.repo import Repository
from strata.store import open_store

__all__ = ["ReadOnlyVolume", "Volume"]


def _repo(store: str) -> Repository:
    return Repository.open(open_store(store))


@dataclass
class _Handle:
    name: str
    store: str
    mount_path: str | None = field(default=None, compare=False)

    @property
    def mounted(self) -> bool:
        return self.mount_path is not None and (mount_fstype(self.mount_path) or "").startswith(
            "fuse"
        )

    async def unmount(self) -> None:
        """Flush and unmount (no new version)."""
        if self.mount_path is not None:
            await asyncio.to_thread(launcher.stop, self.mount_path)
            self.mount_path = None

    async def _mount(self, source: str, options: MountOptions) -> str:
        await asyncio.to_thread(launcher.start, self.store, source, options)
        self.mount_path = options.mount_path
        return options.mount_path


@dataclass
class Volume(_Handle):
    """A writable handle on a volume's head."""

    @classmethod
    def new(cls, name: str, *, store: str | None = None, exist_ok: bool = True) -> Volume:
        """A handle on volume ``name``, creating it (empty) if it does not exist."""
        from strata.errors import VolumeExists

        check_volume_name(name)
        url = store or default_store_url()
        try:
            _repo(url).create_volume(name)
        except VolumeExists:
            if not exist_ok:
                raise
        return cls(name, url)

    async def mount(
        self,
        mount_path: str = DEFAULT_MOUNT_PATH,
        max_uploads: int = 50,
        upload_delay: float | None = None,
        attr_cache: float = 60.0,
        entry_cache: float = 60.0,
        dir_entry_cache: float = 60.0,
        **options: Any,
    ) -> str:
        """Mount the writable head at ``mount_path``; returns the path."""
        opts = MountOptions(
            mount_path=str(mount_path),
            max_uploads=max_uploads,
            upload_delay=upload_delay,
            attr_cache=attr_cache,
            entry_cache=entry_cache,
            dir_entry_cache=dir_entry_cache,
            **options,
        )
        return await self._mount(self.name, opts)

    async def commit(self, message: str = "") -> ReadOnlyVolume:
        """Seal the live mount's state as a new version; the mount stays live.

        Not mounted here: the request goes through the store to whichever live writer
        holds the volume (another pod, another machine) — see strata.meta.seal.
        """
        if self.mounted:
            ref = await asyncio.to_thread(commit_mount, self.mount_path, message)
        else:
            ref = await asyncio.to_thread(self._seal_remote, message)
        name, version = parse_ref(ref)
        return ReadOnlyVolume(name, self.store, version=version or "")

    def _seal_remote(self, message: str, timeout: float = 120.0) -> str:
        from strata.meta.seal import request_seal, wait_seal

        repo = _repo(self.store)
        req = request_seal(repo.store, self.name, message, requested_by="sdk")
        return wait_seal(repo.store, req, timeout)

    async def finalize(self, message: str = "") -> ReadOnlyVolume:
        """Commit, flush and unmount; returns the sealed version."""
        ro = await self.commit(message)
        await self.unmount()
        return ro

    async def log(self) -> list[dict[str, Any]]:
        versions = await asyncio.to_thread(lambda: _repo(self.store).log(self.name))
        return [{"ref": v.ref, "message": v.message, "created": v.created} for v in versions]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "volume", "name": self.name, "store": self.store}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Volume | ReadOnlyVolume:
        if data.get("kind") == "version":
            return ReadOnlyVolume(data["name"], data["store"], version=data["version"])
        return Volume(data["name"], data["store"])


@dataclass
class ReadOnlyVolume(_Handle):
    """A sealed, immutable version: mount it read-only or fork it."""

    version: str = ""

    @property
    def ref(self) -> str:
        return format_ref(self.name, self.version)

    async def mount(self, mount_path: str = DEFAULT_MOUNT_PATH, **options: Any) -> str:
        """Mount this version read-only (always) at ``mount_path``."""
        options.pop("read_only", None)
        opts = MountOptions(mount_path=str(mount_path), read_only=True, **options)
        return await self._mount(self.ref, opts)

    async def fork(self, name: str) -> Volume:
        """A new writable volume whose head is this version: O(1), no data copied."""
        await asyncio.to_thread(lambda: _repo(self.store).fork(self.ref, name))
        return Volume(name, self.store)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "version", "name": self.name, "version": self.version, "store": self.store}
