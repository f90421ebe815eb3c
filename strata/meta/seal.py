"""Seal requests: asking a live writer to commit, through the store.

A live writable mount must be reachable without Kubernetes credentials in the task pod
and without a network path to it, so the store is the rendezvous (DESIGN.md): whoever
wants a version (the CLI on another machine, the CSI node plugin, the operator for a
VolumeVersion) writes a small request object; the writer polls for requests every few
seconds, commits, and writes the answer next to the request::

    requests/<volume>/<id>        {"id", "message", "requested_by", "created"}
    requests/<volume>/<id>.done   {"id", "version": "<volume>@<vid>" | null, "error": str | null}

The requester deletes both once it has read the answer; a request nobody answers is
reported as such (:class:`SealTimeout`), never silently dropped.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from strata.chunks.layout import request_key, requests_prefix, response_key
from strata.errors import ObjectNotFound, StrataError
from strata.meta.names import check_volume_name
from strata.store.base import Store


class SealTimeout(StrataError):
    errno = 110  # ETIMEDOUT


class SealFailed(StrataError):
    """The writer answered, with an error (e.g. it was fenced)."""


@dataclass(frozen=True)
class SealRequest:
    id: str
    volume: str
    message: str
    requested_by: str
    created: float


def request_seal(store: Store, volume: str, message: str, requested_by: str) -> SealRequest:
    check_volume_name(volume)
    req = SealRequest(secrets.token_hex(8), volume, message, requested_by, time.time())
    body = {
        "id": req.id,
        "message": message,
        "requested_by": requested_by,
        "created": req.created,
    }
    store.put(request_key(volume, req.id), json.dumps(body).encode(), if_absent=True)
    return req


def wait_seal(
    store: Store,
    req: SealRequest,
    timeout: float,
    *,
    poll: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Wait for the answer; return the new version ref or raise SealFailed/SealTimeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = json.loads(store.get(response_key(req.volume, req.id)))
        except ObjectNotFound:
            if time.monotonic() >= deadline:
                cancel_seal(store, req)
                raise SealTimeout(
                    f"no live writer of volume {req.volume!r} answered the seal request "
                    f"within {timeout:.0f}s (is it mounted writable?)"
                ) from None
            sleep(poll)
            continue
        cancel_seal(store, req)
        if answer.get("error"):
            raise SealFailed(f"the writer of {req.volume!r} could not seal: {answer['error']}")
        return str(answer["version"])


def cancel_seal(store: Store, req: SealRequest) -> None:
    store.delete(request_key(req.volume, req.id))
    store.delete(response_key(req.volume, req.id))


def pending_seals(store: Store, volume: str) -> list[SealRequest]:
    """Requests for ``volume`` not yet answered, oldest first (the writer's side)."""
    keys = {info.key for info in store.list(requests_prefix(volume))}
    out = []
    for key in sorted(keys):
        if key.endswith(".done") or f"{key}.done" in keys:
            continue
        try:
            body = json.loads(store.get(key))
        except ObjectNotFound:
            continue  # cancelled meanwhile
        except ValueError:
            store.delete(key)  # unreadable: nobody can be waiting on a sane answer
            continue
        out.append(
            SealRequest(
                str(body["id"]),
                volume,
                str(body.get("message", "")),
                str(body.get("requested_by", "")),
                float(body.get("created", 0.0)),
            )
        )
    return sorted(out, key=lambda r: r.created)


def answer_seal(
    store: Store, req: SealRequest, version: str | None, error: str | None = None
) -> None:
    body = {"id": req.id, "version": version, "error": error}
    store.put(response_key(req.volume, req.id), json.dumps(body).encode())
