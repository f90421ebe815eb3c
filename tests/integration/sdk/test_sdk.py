"""The async SDK on real FUSE mounts and a local directory store."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from strata import ReadOnlyVolume, Volume
from strata.fs.mountpoint import mount_fstype

pytestmark = pytest.mark.fuse


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("STRATA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("STRATA_LOG_DIR", str(tmp_path / "logs"))
    return f"file://{tmp_path / 'store'}"


def _mounted(path: Path) -> bool:
    return (mount_fstype(path) or "").startswith("fuse")


def test_task_author_flow(store: str, tmp_path: Path) -> None:
    async def flow() -> None:
        vol = Volume.new("scratch", store=store)
        work = Path(await vol.mount(mount_path=str(tmp_path / "work")))
        try:
            (work / "model.txt").write_text("weights v1")
            v1 = await vol.commit(message="epoch 1")
            assert isinstance(v1, ReadOnlyVolume)
            assert _mounted(work), "commit must leave the mount live"
            (work / "model.txt").write_text("weights v2")
            v2 = await vol.finalize(message="epoch 2")
        finally:
            await vol.unmount()
        assert not _mounted(work)
        assert v1.version != v2.version

        # Handles travel between tasks as JSON.
        again = Volume.from_dict(json.loads(json.dumps(v1.to_dict())))
        assert isinstance(again, ReadOnlyVolume) and again.ref == v1.ref

        ro_path = Path(await again.mount(mount_path=str(tmp_path / "ro")))
        try:
            assert (ro_path / "model.txt").read_text() == "weights v1"
            with pytest.raises(OSError) as err:
                (ro_path / "new").write_text("x")
            assert err.value.errno == 30  # EROFS
        finally:
            await again.unmount()

        fork = await v1.fork(name="experiment")
        fork_path = Path(await fork.mount(mount_path=str(tmp_path / "fork")))
        try:
            assert (fork_path / "model.txt").read_text() == "weights v1"
            (fork_path / "model.txt").write_text("weights v1 tuned")
            tuned = await fork.finalize(message="tuned")
        finally:
            await fork.unmount()
        log = await Volume("experiment", store).log()
        assert [entry["ref"] for entry in log] == [tuned.ref, v1.ref]
        # The source volume is untouched by the fork's writes.
        assert [entry["ref"] for entry in await vol.log()] == [v2.ref, v1.ref]

    asyncio.run(flow())


def test_commit_from_a_handle_without_the_mount_goes_through_the_store(
    store: str, tmp_path: Path
) -> None:
    """A seal request reaches the live writer with no socket or credentials."""

    async def flow() -> None:
        writer = Volume.new("shared", store=store)
        work = Path(await writer.mount(mount_path=str(tmp_path / "w")))
        try:
            (work / "data").write_text("from the writer")
            elsewhere = Volume("shared", store)  # e.g. another task, not mounted here
            sealed = await elsewhere.commit(message="sealed remotely")
            assert _mounted(work)
            ro = Path(await sealed.mount(mount_path=str(tmp_path / "ro")))
            try:
                assert (ro / "data").read_text() == "from the writer"
            finally:
                await sealed.unmount()
        finally:
            await writer.unmount()

    asyncio.run(flow())
