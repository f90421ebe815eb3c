"""Strata: versioned, forkable volumes backed by an object store.

``from strata import Volume`` is the SDK entry point. Layers (imports only look down):
``store`` -> ``chunks`` -> ``meta`` -> ``fs`` -> ``sdk`` / ``cli``. See
docs/architecture.md.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["ReadOnlyVolume", "Volume"]


def __getattr__(name: str) -> Any:
    # Lazy, so `import strata.store` (the operator, the CSI driver) stays light.
    if name in __all__:
        from strata import sdk

        return getattr(sdk, name)
    raise AttributeError(f"module 'strata' has no attribute {name!r}")
