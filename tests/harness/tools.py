"""Locate the Go-built tools in the cache that ``tools/build.sh`` fills."""

from __future__ import annotations

import os
from pathlib import Path


class ToolMissing(RuntimeError):
    """A tool binary is not in the cache: the build step did not run or failed."""


def tools_dir() -> Path:
    """Same rule as tools/build.sh: $STRATA_TOOLS_DIR or ~/.cache/strata/tools."""
    if env := os.environ.get("STRATA_TOOLS_DIR"):
        return Path(env)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "strata" / "tools"


def tool_path(name: str) -> Path:
    """Path of a built tool binary, or ToolMissing saying how to build it."""
    path = tools_dir() / "bin" / name
    if not (path.exists() and os.access(path, os.X_OK)):
        raise ToolMissing(
            f"tool {name!r} is not built (looked for {path}); run `make tools` "
            f"(tools/build.sh) — its output says why a build failed"
        )
    return path
