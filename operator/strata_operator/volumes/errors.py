"""Engine errors given kopf's meaning, once, like KubeErrors in the handlers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import kopf

from strata.errors import StoreError, StoreUnavailable, TemporaryStoreError

__all__ = ["STORE_RETRY", "store_errors"]

STORE_RETRY = 10.0  # seconds before kopf retries after the store failed for a moment


@contextmanager
def store_errors(what: str) -> Iterator[None]:
    """Store outages become kopf.TemporaryError (retried); other engine errors pass on
    for the caller, which knows what they mean for its object."""
    try:
        yield
    except (StoreUnavailable, TemporaryStoreError) as exc:
        raise kopf.TemporaryError(f"{what}: the store is unavailable: {exc}", STORE_RETRY) from exc
    except StoreError as exc:
        # Permission errors, a missing bucket: an admin must act, but it can come back.
        raise kopf.TemporaryError(f"{what}: store error: {exc}", STORE_RETRY * 3) from exc
