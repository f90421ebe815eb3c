"""Property test of the whole engine against a model: every sealed version reads back
exactly, forever -- across commits, forks, deleted volumes, GC and reopened mounts.

A hypothesis state machine drives random write / truncate / mkdir / unlink / rmdir /
rename / commit / fork / reopen / delete-volume / gc sequences against working states
on one in-memory store, and a plain model: per volume a ``{path: bytes | None}`` dict
(None: a directory), and per sealed version the dict it had when sealed. GC runs with
no grace window and a clock that makes every object old, so anything not reachable
from a live version is really swept; every version still live must read back, and the
working states must keep working (and committing) afterwards.
"""

from __future__ import annotations

import errno
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)

from strata.meta.entry import Kind
from strata.meta.gc import collect_garbage
from strata.meta.repo import Repository, WriterClaim
from strata.meta.working import FsError, WorkingState
from strata.store.counting import ImmutableGuardStore
from strata.store.memory import MemoryStore

B = 4 * 1024 * 1024
ROOT = 1
Model = dict[str, bytes | None]

NAMES = st.sampled_from(["a", "b", "c", "dir", "x"])
OFFSETS = st.sampled_from([0, 1, 100, B - 3, B, B + 5, 2 * B + 1])
DATA = st.one_of(st.binary(min_size=1, max_size=64), st.just(b"\x5a" * 5000))
SIZES = st.sampled_from([0, 1, 50, B - 1, B, B + 2, 2 * B + 9])


@dataclass
class Vol:
    name: str
    claim: WriterClaim
    ws: WorkingState
    model: Model
    cache: Path


def read_version(repo: Repository, root: str) -> Model:
    out: Model = {}
    for path, e in repo.trees.walk(root):
        if e.kind == Kind.DIR:
            out[path] = None
        else:
            data = b"".join(
                repo.content.get_chunk(b.hash) if b.hash else bytes(b.size)
                for b in repo.trees.iter_blocks(e.content)
            )
            assert len(data) == e.size
            out[path] = data
    return out


def read_ws(ws: WorkingState, ino: int = ROOT, prefix: str = "") -> Model:
    out: Model = {}
    for d in ws.readdir(ino):
        path = prefix + d.name
        if d.attr.kind == Kind.DIR:
            out[path] = None
            out.update(read_ws(ws, d.attr.ino, path + "/"))
        else:
            out[path] = ws.read(d.attr.ino, 0, d.attr.size + 1)
    return out


def lookup(ws: WorkingState, path: str) -> int:
    ino = ROOT
    for part in (p for p in path.split("/") if p):
        ino = ws.lookup(ino, part).ino
    return ino


def split(path: str) -> tuple[str, str]:
    parent, _, name = path.rpartition("/")
    return parent, name


def join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


class EngineMachine(RuleBasedStateMachine):
    volumes = Bundle("volumes")

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="strata-prop-"))
        self.memory = MemoryStore()
        # Every object looks an hour old, so GC with grace=0 sweeps all garbage.
        self.repo = Repository.open(
            ImmutableGuardStore(self.memory), clock=lambda: time.time() + 3600
        )
        self.vols: dict[str, Vol] = {}
        self.versions: dict[str, Model] = {}
        self.counter = 0

    def teardown(self) -> None:
        for vol in self.vols.values():
            vol.ws.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # --- helpers -----------------------------------------------------------------------

    def _new_volume(self, model: Model, source: str | None = None) -> Vol:
        name = f"v{self.counter}"
        self.counter += 1
        if source is None:
            self.repo.create_volume(name)
        else:
            self.repo.fork(source, name)
        claim = self.repo.acquire_writer(name, "prop", 1e9)
        cache = self.tmp / name
        ws = WorkingState.open(self.repo, claim, cache, background_seal=False)
        vol = Vol(name, claim, ws, dict(model), cache)
        self.vols[name] = vol
        return vol

    def _files(self, vol: Vol) -> list[str]:
        return sorted(p for p, v in vol.model.items() if v is not None)

    def _dirs(self, vol: Vol) -> list[str]:
        return ["", *sorted(p for p, v in vol.model.items() if v is None)]

    def _expect(self, code: int | None, fn: object, *args: object, **kw: object) -> None:
        if code is None:
            fn(*args, **kw)  # type: ignore[operator]
            return
        try:
            fn(*args, **kw)  # type: ignore[operator]
        except FsError as exc:
            assert exc.errno == code, (errno.errorcode[exc.errno], errno.errorcode[code])
        else:
            raise AssertionError(f"expected {errno.errorcode[code]}")

    def _check_versions(self) -> None:
        live = {v.ref: v for name in self.repo.list_volumes() for v in self.repo.log(name)}
        for ref, v in live.items():
            assert ref in self.versions, f"unknown version {ref}"
            assert read_version(self.repo, v.root) == self.versions[ref], ref

    # --- rules ---------------------------------------------------------------------------

    @initialize(target=volumes)
    def first_volume(self) -> str:
        return self._new_volume({}).name

    @rule(vol=volumes, data=st.data(), off=OFFSETS, payload=DATA, name=NAMES)
    def write(self, vol: str, data: st.DataObject, off: int, payload: bytes, name: str) -> None:
        v = self.vols[vol]
        files = self._files(v)
        if files and data.draw(st.booleans(), label="existing file"):
            path = data.draw(st.sampled_from(files), label="file")
            ino = lookup(v.ws, path)
        else:
            parent = data.draw(st.sampled_from(self._dirs(v)), label="parent")
            path = join(parent, name)
            if path in v.model:
                return
            ino = v.ws.create(lookup(v.ws, parent), name, 0o644).ino
            v.model[path] = b""
        v.ws.write(ino, off, payload)
        old = v.model[path] or b""
        buf = bytearray(old) + bytes(max(0, off - len(old)))
        buf[off : off + len(payload)] = payload
        v.model[path] = bytes(buf)

    @rule(vol=volumes, data=st.data(), size=SIZES)
    def truncate(self, vol: str, data: st.DataObject, size: int) -> None:
        v = self.vols[vol]
        files = self._files(v)
        if not files:
            return
        path = data.draw(st.sampled_from(files), label="file")
        v.ws.truncate(lookup(v.ws, path), size)
        old = v.model[path] or b""
        v.model[path] = old[:size] + bytes(max(0, size - len(old)))

    @rule(vol=volumes, data=st.data(), name=NAMES)
    def mkdir(self, vol: str, data: st.DataObject, name: str) -> None:
        v = self.vols[vol]
        parent = data.draw(st.sampled_from(self._dirs(v)), label="parent")
        path = join(parent, name)
        code = errno.EEXIST if path in v.model else None
        self._expect(code, v.ws.mkdir, lookup(v.ws, parent), name, 0o755)
        if code is None:
            v.model[path] = None

    @rule(vol=volumes, data=st.data())
    def unlink_or_rmdir(self, vol: str, data: st.DataObject) -> None:
        v = self.vols[vol]
        if not v.model:
            return
        path = data.draw(st.sampled_from(sorted(v.model)), label="path")
        parent, name = split(path)
        pino = lookup(v.ws, parent)
        if v.model[path] is not None:
            v.ws.unlink(pino, name)
            del v.model[path]
            return
        if any(p.startswith(path + "/") for p in v.model):
            self._expect(errno.ENOTEMPTY, v.ws.rmdir, pino, name)
        else:
            v.ws.rmdir(pino, name)
            del v.model[path]

    @rule(vol=volumes, data=st.data(), name=NAMES)
    def rename(self, vol: str, data: st.DataObject, name: str) -> None:
        v = self.vols[vol]
        if not v.model:
            return
        src = data.draw(st.sampled_from(sorted(v.model)), label="src")
        dparent = data.draw(st.sampled_from(self._dirs(v)), label="dst parent")
        dst = join(dparent, name)
        sp, sn = split(src)
        args = (lookup(v.ws, sp), sn, lookup(v.ws, dparent), name)
        src_dir = v.model[src] is None
        code: int | None = None
        if dst == src:
            code = None
        elif src_dir and (dst + "/").startswith(src + "/"):
            code = errno.EINVAL
        elif dst in v.model:
            dst_dir = v.model[dst] is None
            if src_dir and not dst_dir:
                code = errno.ENOTDIR
            elif not src_dir and dst_dir:
                code = errno.EISDIR
            elif dst_dir and any(p.startswith(dst + "/") for p in v.model):
                code = errno.ENOTEMPTY
        self._expect(code, v.ws.rename, *args)
        if code is None and dst != src:
            moved = {p: d for p, d in v.model.items() if p == src or p.startswith(src + "/")}
            v.model = {p: d for p, d in v.model.items() if p not in moved and p != dst}
            for p, d in moved.items():
                v.model[dst + p[len(src) :]] = d

    @rule(vol=volumes)
    def commit(self, vol: str) -> None:
        v = self.vols[vol]
        version = v.ws.commit(f"commit {len(self.versions)}")
        self.versions[version.ref] = dict(v.model)
        assert read_version(self.repo, version.root) == v.model

    @rule(vol=volumes, crash=st.booleans())
    def reopen(self, vol: str, crash: bool) -> None:
        v = self.vols[vol]
        if crash:
            v.ws._finalizer()  # drop it as a killed process would: no flush, no sync
        else:
            v.ws.close()
        v.ws = WorkingState.open(self.repo, v.claim, v.cache, background_seal=False)

    @precondition(lambda self: any(self.repo.volume(n).head for n in self.vols))
    @rule(target=volumes, data=st.data())
    def fork(self, data: st.DataObject) -> str:
        sources = sorted(n for n in self.vols if self.repo.volume(n).head)
        source = data.draw(st.sampled_from(sources), label="source")
        head = self.repo.version(source)
        return self._new_volume(self.versions[head.ref], source=source).name

    @precondition(lambda self: len(self.vols) > 1)
    @rule(vol=consumes(volumes))
    def delete_volume(self, vol: str) -> None:
        v = self.vols.pop(vol)
        v.ws.close()
        self.repo.release_writer(v.claim)
        self.repo.delete_volume(vol)
        shutil.rmtree(v.cache, ignore_errors=True)
        self._check_versions()

    @rule()
    def gc(self) -> None:
        collect_garbage(self.repo, grace=0)
        self._check_versions()

    @invariant()
    def working_states_match_their_models(self) -> None:
        for v in self.vols.values():
            assert read_ws(v.ws) == v.model, v.name


EngineMachine.TestCase.settings = settings(
    max_examples=20,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestEngine = EngineMachine.TestCase


def test_every_version_reads_back_after_the_run() -> None:
    """One fixed scenario end to end, so a regression shows even with hypothesis off."""
    m = EngineMachine()
    try:
        name = m.first_volume()
        v = m.vols[name]
        v.ws.mkdir(ROOT, "d", 0o755)
        v.model["d"] = None
        v.ws.write(v.ws.create(lookup(v.ws, "d"), "f", 0o644).ino, B - 2, b"across")
        v.model["d/f"] = bytes(B - 2) + b"across"
        m.commit(name)
        m.gc()
        m.reopen(name, crash=True)
        m.working_states_match_their_models()
        m._check_versions()
    finally:
        m.teardown()
