"""Defaults every entry point shares: where the store and the local caches live.

Environment first (``STRATA_STORE``, ``STRATA_CACHE_DIR``), then the user's platform
directories, so the CLI, the SDK and the daemons agree without passing paths around.
"""

from __future__ import annotations

import os
from pathlib import Path


def default_store_url() -> str:
    """``$STRATA_STORE``, else a directory store under the user's data dir."""
    if url := os.environ.get("STRATA_STORE"):
        return url
    import platformdirs

    return f"file://{Path(platformdirs.user_data_dir('strata')) / 'store'}"


def cache_root() -> Path:
    """``$STRATA_CACHE_DIR``, else the user's cache dir (working states, chunk cache)."""
    if base := os.environ.get("STRATA_CACHE_DIR"):
        return Path(base)
    import platformdirs

    return Path(platformdirs.user_cache_dir("strata"))
