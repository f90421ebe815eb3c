"""Helpers shared by the working-state tests (no tests here).

``Env`` owns one volume, its writer claim and every WorkingState a test opens, and
closes them at teardown; ``tree_contents`` / ``ws_contents`` flatten a sealed version
or a live working state into ``{path: (kind, payload, mode)}`` so a test can compare
them exactly.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from strata.meta.entry import Kind
from strata.meta.repo import Repository, WriterClaim
from strata.meta.working import FsError, WorkingState

ROOT = 1
MiB = 1024 * 1024
B = 4 * MiB

Tree = dict[str, tuple[str, Any, int]]


class Env:
    """A volume with a claim and the working states opened on it."""

    def __init__(self, repo: Repository, tmp_path: Path, volume: str = "vol") -> None:
        self.repo = repo
        self.tmp_path = tmp_path
        self.volume = volume
        repo.create_volume(volume)
        self.claim: WriterClaim = repo.acquire_writer(volume, "writer-1", 3600)
        self.opened: list[WorkingState] = []
        self._n = 0

    def cache(self, name: str = "cache") -> Path:
        return self.tmp_path / name

    def open(self, cache: str = "cache", **kw: Any) -> WorkingState:
        kw.setdefault("background_seal", False)
        claim = kw.pop("claim", self.claim)
        ws = WorkingState.open(self.repo, claim, self.cache(cache), **kw)
        self.opened.append(ws)
        return ws

    def close_all(self) -> None:
        for ws in self.opened:
            ws.close()


def raises_errno(code: int, fn: Callable[..., Any], *args: Any, **kw: Any) -> FsError:
    with pytest.raises(FsError) as info:
        fn(*args, **kw)
    assert info.value.errno == code, (errno.errorcode[info.value.errno], str(info.value))
    return info.value


def tree_contents(repo: Repository, root: str) -> Tree:
    """Everything below sealed tree ``root``: files with their bytes read back."""
    out: Tree = {}
    for path, e in repo.trees.walk(root):
        if e.kind == Kind.FILE:
            data = bytearray()
            blocks = list(repo.trees.iter_blocks(e.content))
            for i, b in enumerate(blocks):
                chunk = repo.content.get_chunk(b.hash) if b.hash else bytes(b.size)
                assert len(chunk) == b.size
                if i < len(blocks) - 1:
                    assert b.size == B, f"{path}: middle block {i} of {b.size} bytes"
                data += chunk
            assert len(data) == e.size, f"{path}: {len(data)} bytes, entry says {e.size}"
            out[path] = ("f", bytes(data), e.mode)
        elif e.kind == Kind.DIR:
            out[path] = ("d", None, e.mode)
        else:
            out[path] = ("l", e.target, e.mode)
    return out


def ws_contents(ws: WorkingState, ino: int = ROOT, prefix: str = "") -> Tree:
    """The same flattening, through the working state's own operations."""
    out: Tree = {}
    for d in ws.readdir(ino):
        path = prefix + d.name
        a = d.attr
        if a.kind == Kind.FILE:
            out[path] = ("f", ws.read(a.ino, 0, a.size + 1), a.mode)
        elif a.kind == Kind.DIR:
            out[path] = ("d", None, a.mode)
            out.update(ws_contents(ws, a.ino, path + "/"))
        else:
            out[path] = ("l", ws.readlink(a.ino), a.mode)
    return out


def write_file(ws: WorkingState, parent: int, name: str, data: bytes, mode: int = 0o644) -> int:
    ino = ws.create(parent, name, mode).ino
    ws.write(ino, 0, data)
    return ino


def resolve(ws: WorkingState, path: str) -> int:
    ino = ROOT
    for part in (p for p in path.split("/") if p):
        ino = ws.lookup(ino, part).ino
    return ino
