"""Mount options: the seed API's names and defaults, validated once, in one place.

The CLI flags, the SDK's ``mount()`` keywords, CSI ``volumeAttributes`` and a Volume's
``spec.mountOptions`` all become a :class:`MountOptions`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strata.errors import StrataError
from strata.units import parse_duration, parse_size

DEFAULT_MOUNT_PATH = "/workspace"
#: kernel cache timeouts (seconds) when not given: a writable head changes ...
WRITABLE_CACHE = 60.0
#: ... a sealed version never does, so the kernel may keep what it learnt far longer
VERSION_CACHE = 3600.0


class InvalidMountOptions(StrataError):
    errno = 22  # EINVAL


@dataclass(frozen=True)
class MountOptions:
    """How a volume is mounted (DESIGN.md, Filesystem)."""

    mount_path: str = DEFAULT_MOUNT_PATH
    read_only: bool = False
    max_uploads: int = 50
    upload_delay: float | None = None  # seconds; None uploads as soon as a block is full
    # kernel cache timeouts in seconds; None: WRITABLE_CACHE, or VERSION_CACHE read-only
    attr_cache: float | None = None
    entry_cache: float | None = None
    dir_entry_cache: float | None = None
    cache_dir: str | None = None  # default: under the user's cache dir, per store+volume
    cache_size: int = 10 * 1024**3
    autosave: float = 30.0  # seconds between checkpoints of uncommitted state; 0 = off
    workers: int = 8  # FUSE worker threads

    def __post_init__(self) -> None:
        if self.max_uploads < 1:
            raise InvalidMountOptions(f"max_uploads must be at least 1, not {self.max_uploads}")
        for name in ("attr_cache", "entry_cache", "dir_entry_cache", "autosave"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise InvalidMountOptions(f"{name} must not be negative")
        if self.upload_delay is not None and self.upload_delay < 0:
            raise InvalidMountOptions("upload_delay must not be negative")
        if self.cache_size < 0:
            raise InvalidMountOptions("cache_size must not be negative")
        if self.workers < 1:
            raise InvalidMountOptions("workers must be at least 1")

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> MountOptions:
        """Build from strings as they come from CSI attributes or a CR (``"30s"``, ``"1Gi"``).

        Accepts snake_case and camelCase keys; unknown keys are an error naming them.
        """
        known = {f.name: f for f in dataclasses.fields(cls)}
        camel = {_camel(name): name for name in known}
        kwargs: dict[str, Any] = {}
        for key, raw in values.items():
            name = key if key in known else camel.get(key)
            if name is None:
                raise InvalidMountOptions(
                    f"unknown mount option {key!r}; known: {', '.join(sorted(camel))}"
                )
            kwargs[name] = _convert(name, raw)
        return cls(**kwargs)

    def cache_timeouts(self) -> tuple[float, float, float]:
        """(attr, entry, dir entry) timeouts: as given, else by what is mounted.

        Read-only mounts serve a sealed version (immutable, invariant 4), so what the
        kernel cached about it can never become wrong.
        """
        default = VERSION_CACHE if self.read_only else WRITABLE_CACHE
        return tuple(  # type: ignore[return-value]
            default if value is None else value
            for value in (self.attr_cache, self.entry_cache, self.dir_entry_cache)
        )

    def with_mount_path(self, path: str | Path) -> MountOptions:
        return dataclasses.replace(self, mount_path=str(path))


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _convert(name: str, raw: Any) -> Any:
    try:
        if raw is None:
            return None
        if name == "read_only":
            if isinstance(raw, bool):
                return raw
            if str(raw).lower() not in ("true", "false"):
                raise ValueError(f"{raw!r} is not true or false")
            return str(raw).lower() == "true"
        if name in ("max_uploads", "workers"):
            return int(raw)
        if name == "cache_size":
            return parse_size(raw if isinstance(raw, int) else str(raw))
        if name in ("upload_delay", "attr_cache", "entry_cache", "dir_entry_cache", "autosave"):
            return parse_duration(raw)
        return str(raw)
    except ValueError as exc:
        raise InvalidMountOptions(f"mount option {name}: {exc}") from None
