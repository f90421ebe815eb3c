"""Helpers for the Volume/VolumeVersion tests: the objects, the store and a writer.

The writer here does what a writable mount does for the operator's purposes (claim the
volume, answer seal requests from the store by committing, keep the claim): a thread
polling :func:`strata.meta.seal.pending_seals`, without FUSE.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.exceptions import ApiException

from strata.chunks.layout import CHUNKS, TREES
from strata.meta.entry import BlockRef, Content, Entry, Kind
from strata.meta.repo import Repository
from strata.meta.seal import answer_seal, pending_seals
from strata.meta.version import Stats, Version

GROUP, VERSION = "strata.dev", "v1alpha1"


class Objects:
    """The test's own view of Volumes and VolumeVersions."""

    def __init__(self, custom: Any) -> None:
        self.custom = custom

    def create(self, ns: str, plural: str, kind: str, name: str, spec: dict[str, Any]) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": kind,
            "metadata": {"name": name},
            "spec": spec,
        }
        self.custom.create_namespaced_custom_object(GROUP, VERSION, ns, plural, body)

    def volume(self, ns: str, name: str, **spec: Any) -> None:
        self.create(ns, "volumes", "Volume", name, spec)

    def version(self, ns: str, name: str, volume: str, message: str = "") -> None:
        spec = {"volume": volume, **({"message": message} if message else {})}
        self.create(ns, "volumeversions", "VolumeVersion", name, spec)

    def get(self, ns: str, plural: str, name: str) -> dict[str, Any] | None:
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, ns, plural, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def status(self, ns: str, plural: str, name: str) -> dict[str, Any]:
        return (self.get(ns, plural, name) or {}).get("status") or {}

    def ready_volume(self, ns: str, name: str) -> dict[str, Any] | None:
        status = self.status(ns, "volumes", name)
        return status if status.get("phase") == "Ready" else None

    def versions(self, ns: str, volume: str | None = None) -> list[dict[str, Any]]:
        items = self.custom.list_namespaced_custom_object(GROUP, VERSION, ns, "volumeversions")[
            "items"
        ]
        return [v for v in items if volume is None or v["spec"]["volume"] == volume]

    def delete(self, ns: str, plural: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, plural, name)


def commit(repo: Repository, volume: str, files: dict[str, bytes], message: str = "") -> Version:
    """One whole writer session through the engine: claim, write a root, commit, release."""
    claim = repo.acquire_writer(volume, "test-writer", 60)
    try:
        return repo.commit(claim, root_of(repo, files), message, stats_of(files))
    finally:
        repo.release_writer(claim)


def root_of(repo: Repository, files: dict[str, bytes]) -> str:
    entries = []
    for name, data in sorted(files.items()):
        blocks = (BlockRef(repo.content.put_chunk(data), len(data)),) if data else ()
        entries.append(Entry(name, Kind.FILE, 0o644, size=len(data), content=Content(blocks)))
    return repo.tree_writer.write_dir(entries)


def stats_of(files: dict[str, bytes]) -> Stats:
    return Stats(bytes=sum(map(len, files.values())), files=len(files), dirs=1)


def object_count(repo: Repository) -> int:
    """Chunks and trees in the store: a fork must not add any."""
    return sum(1 for prefix in (CHUNKS, TREES) for _ in repo.store.list(prefix))


@dataclass
class LiveWriter:
    """Holds a volume's writer claim and answers seal requests like a mount does."""

    repo: Repository
    volume: str
    holder: str = "pod-writer"
    poll: float = 0.2
    sealed: list[Version] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> LiveWriter:
        self.claim = self.repo.acquire_writer(self.volume, self.holder, 60)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=10)
        self.repo.release_writer(self.claim)

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(self.poll):
            for request in pending_seals(self.repo.store, self.volume):
                n += 1
                files = {f"checkpoint-{n}.txt": f"data {n}".encode()}
                version = self.repo.commit(
                    self.claim, root_of(self.repo, files), request.message, stats_of(files)
                )
                self.sealed.append(version)
                answer_seal(self.repo.store, request, version.ref)
