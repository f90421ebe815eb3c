"""Strata: versioned, forkable volumes backed by an object store.

Layers (imports only look down): ``store`` -> ``chunks`` -> ``meta`` -> ``fs`` ->
``sdk`` / ``cli``. See docs/architecture.md.
"""

__version__ = "0.1.0"
