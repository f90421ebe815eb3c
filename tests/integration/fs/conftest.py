"""Fixtures for tests on real FUSE mounts, driven through the ``strata`` CLI.

* ``store_url`` — the store, parametrized: ``local`` (``file://`` in tmp_path) and ``s3``
  (a fresh bucket on the real versitygw server). The core suite runs on both.
* ``strata``    — a :class:`Strata`: runs CLI commands with a per-test ``STRATA_STORE``,
  ``STRATA_CACHE_DIR`` and ``STRATA_LOG_DIR``, creates volumes, and mounts
  (:meth:`Strata.mount`, a subprocess ``strata mount`` that returns once mounted).
* ``mounted``   — a writable mount of a fresh, empty volume (what most tests want).
* ``local_strata`` — like ``strata`` but on the local store only (heavy or
  store-independent tests).

Teardown of every mount, whatever happened: a mount the test did not unmount or kill
must still be alive (an exception escaping an llfuse handler unmounts silently, so this
check ends every test); then ``fusermount -u``, ``fusermount -uz`` if busy, wait for the
daemon to exit, SIGKILL it if it does not. A daemon log that records an unexpected
handler exception fails the test too. When a test fails, the daemon logs of that test
are attached to the report.

Run: ``.venv/bin/pytest tests/integration/fs`` (root, /dev/fuse; the ``s3`` half needs the
versitygw tool the harness builds). ``-m "fuse and not slow"`` for the quick part,
``-k local`` for the local store only; the randomized test's soak knobs are in
``test_shadow.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from strata.fs.control import mount_info
from strata.fs.mountpoint import is_dead_mount, mount_fstype
from tests.integration.fs.helpers import wait_for

STORES = ["local", pytest.param("s3", marks=pytest.mark.s3)]

#: log records that mean a handler failed unexpectedly (answered EIO) or the daemon crashed
_BAD_LOG_MARKERS = ("unexpected error in", "Traceback (most recent call last)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "allow_daemon_errors: the test provokes daemon errors on purpose"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under this directory needs real FUSE mounts."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.fuse)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """Attach the daemon logs of a failed test to its report (they say why)."""
    outcome = yield
    report = outcome.get_result()
    strata: Strata | None = getattr(item, "_strata_env", None)
    if report.failed and strata is not None:
        report.sections.append((f"strata daemon logs ({strata.log_dir})", strata.log_text()))


def _alive(pid: int) -> bool:
    """Running and not a zombie (the daemon's parent, ``strata mount``, never reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _fusermount(path: Path, *, lazy: bool = False) -> bool:
    """``fusermount -u`` (``-z``: lazy); True when it unmounted something."""
    argv = ["fusermount", "-u", *(["-z"] if lazy else []), str(path)]
    return subprocess.run(argv, capture_output=True).returncode == 0


def is_fuse_mounted(path: Path) -> bool:
    return (mount_fstype(path) or "").startswith("fuse")


class CliError(AssertionError):
    def __init__(self, args: list[str], proc: subprocess.CompletedProcess[str]) -> None:
        super().__init__(
            f"strata {' '.join(args)} exited {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
        )
        self.proc = proc


@dataclass
class Mount:
    """One mount made through the CLI, and the daemon serving it."""

    strata: Strata
    source: str
    path: Path
    pid: int
    read_only: bool
    state: str = "live"  # live | unmounted | killed

    def info(self) -> dict[str, object]:
        return mount_info(self.path)

    def commit(self, message: str = "") -> str:
        """``strata commit MOUNTPOINT -m MESSAGE`` → ``volume@version``."""
        ref = self.strata.cli("commit", str(self.path), "-m", message).stdout.strip()
        assert "@" in ref, ref
        return ref

    def finalize(self, message: str = "") -> str:
        ref = self.strata.cli("finalize", str(self.path), "-m", message).stdout.strip()
        self._gone("unmounted")
        return ref.splitlines()[-1]

    def umount(self) -> None:
        """``strata umount``: returns after the daemon exited (everything durable)."""
        self.strata.cli("umount", str(self.path))
        self._gone("unmounted")

    def _gone(self, state: str) -> None:
        wait_for(lambda: not _alive(self.pid), 60, f"daemon {self.pid} to exit")
        assert not is_fuse_mounted(self.path), f"{self.path} is still mounted"
        self.state = state

    def kill9(self) -> None:
        """SIGKILL the daemon (a crash): the mount point is left dead (ENOTCONN)."""
        os.kill(self.pid, signal.SIGKILL)
        wait_for(lambda: not _alive(self.pid), 30, f"daemon {self.pid} to die")
        self.state = "killed"

    def assert_alive(self) -> None:
        """The mount is still served by its daemon (not silently unmounted or dead)."""
        assert _alive(self.pid), f"the daemon of {self.path} (pid {self.pid}) has exited"
        assert is_fuse_mounted(self.path), f"{self.path} is no longer a FUSE mount"
        assert not is_dead_mount(self.path), f"{self.path}: transport endpoint not connected"
        os.listdir(self.path)
        assert self.info()["pid"] == self.pid

    def cleanup(self) -> list[str]:
        """Unmount by every means; return problems found (a dead or vanished mount)."""
        problems: list[str] = []
        if self.state == "live":
            try:
                self.assert_alive()
            except (AssertionError, OSError) as exc:
                problems.append(f"mount {self.source} at {self.path} died during the test: {exc}")
        if is_fuse_mounted(self.path) and not _fusermount(self.path):
            _fusermount(self.path, lazy=True)  # busy (a test left a file open)
        deadline = time.monotonic() + 60
        while _alive(self.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(self.pid):
            problems.append(f"daemon {self.pid} did not exit after unmount; killed")
            os.kill(self.pid, signal.SIGKILL)
            wait_for(lambda: not _alive(self.pid), 30, f"daemon {self.pid} to die")
        while is_fuse_mounted(self.path) and _fusermount(self.path, lazy=True):
            pass  # stacked or dead mounts
        self.state = "unmounted"
        return problems


@dataclass
class Strata:
    """The CLI with this test's store, cache dir and log dir, plus its mounts."""

    store_url: str
    tmp: Path
    mounts: list[Mount] = field(default_factory=list)
    public: list[Path] = field(default_factory=list)
    _n: int = 0

    @property
    def cache_dir(self) -> Path:
        return self.tmp / "cache"

    @property
    def log_dir(self) -> Path:
        return self.tmp / "logs"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "STRATA_STORE": self.store_url,
            "STRATA_CACHE_DIR": str(self.cache_dir),
            "STRATA_LOG_DIR": str(self.log_dir),
        }

    def cli(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "strata.cli.main", *args]
        proc = subprocess.run(
            argv, env=self.env(), capture_output=True, text=True, timeout=timeout, cwd=self.tmp
        )
        if check and proc.returncode != 0:
            raise CliError(list(args), proc)
        return proc

    def create(self, name: str = "vol") -> str:
        self.cli("volume", "create", name)
        return name

    def mountpoint(self, stem: str = "mnt") -> Path:
        self._n += 1
        return self.tmp / f"{stem}{self._n}"

    def mount(self, source: str, path: Path | None = None, *flags: str) -> Mount:
        """``strata mount SOURCE PATH FLAGS…`` (returns once mounted)."""
        path = path or self.mountpoint()
        self.cli("mount", source, str(path), *flags)
        info = mount_info(path)
        mount = Mount(self, source, path, int(info["pid"]), not info["writable"])  # type: ignore[arg-type]
        self.mounts.append(mount)
        return mount

    def daemons(self) -> dict[int, Path]:
        """Live mount daemons of this test (pid → mount path), found by their command
        line: even one whose ``strata mount`` failed half-way is found and stopped."""
        found: dict[int, Path] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"strata.fs.daemon" not in argv or not _alive(int(entry.name)):
                continue
            with contextlib.suppress(ValueError, IndexError):
                options = json.loads(argv[argv.index(b"--options") + 1])
                path = Path(options["mount_path"])
                if self._ours(path):
                    found[int(entry.name)] = path
        return found

    def _ours(self, path: Path) -> bool:
        return any(root in path.parents for root in (self.tmp, *self.public))

    def public_dir(self) -> Path:
        """A world-traversable directory outside pytest's private (0700) tmp tree, for
        mounts other users must reach; removed, and its mounts cleaned, at teardown."""
        path = Path(tempfile.mkdtemp(prefix="strata-fs-test-"))
        path.chmod(0o755)
        self.public.append(path)
        return path

    def log_text(self, lines: int = 150) -> str:
        parts = []
        for log in sorted(self.log_dir.glob("*.log")):
            text = log.read_text(errors="replace").splitlines()
            parts.append(f"== {log.name} ({len(text)} lines) ==")
            parts.extend(text[-lines:])
        return "\n".join(parts) or "(no daemon logs)"

    def bad_log_lines(self) -> list[str]:
        out = []
        for log in sorted(self.log_dir.glob("*.log")):
            for line in log.read_text(errors="replace").splitlines():
                if any(marker in line for marker in _BAD_LOG_MARKERS):
                    with contextlib.suppress(ValueError):
                        record = json.loads(line)
                        line = f"{record.get('msg')}\n{record.get('exc', '')}"
                    out.append(f"{log.name}: {line}")
        return out

    def cleanup(self) -> list[str]:
        problems: list[str] = []
        for mount in reversed(self.mounts):
            problems += mount.cleanup()
        for pid, path in self.daemons().items():
            problems.append(f"daemon {pid} for {path} was left running (killed)")
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda pid=pid: not _alive(pid), 30, f"daemon {pid} to die")
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            target = Path(line.split()[4])
            if self._ours(target) and _fusermount(target, lazy=True):
                problems.append(f"{target} was left mounted (unmounted)")
        for path in self.public:
            shutil.rmtree(path, ignore_errors=True)
        return problems


def _strata(request: pytest.FixtureRequest, store_url: str, tmp: Path) -> Iterator[Strata]:
    if not os.path.exists("/dev/fuse"):
        pytest.skip("needs /dev/fuse")
    env = Strata(store_url, tmp)
    env.log_dir.mkdir(parents=True, exist_ok=True)
    request.node._strata_env = env  # type: ignore[attr-defined]
    try:
        yield env
    finally:
        problems = env.cleanup()
        if not request.node.get_closest_marker("allow_daemon_errors"):
            problems += [f"daemon logged: {line}" for line in env.bad_log_lines()]
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "local":
        return f"file://{tmp_path / 'store'}"
    return str(request.getfixturevalue("s3_bucket").url)


@pytest.fixture
def strata(request: pytest.FixtureRequest, store_url: str, tmp_path: Path) -> Iterator[Strata]:
    yield from _strata(request, store_url, tmp_path)


@pytest.fixture
def local_strata(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Strata]:
    yield from _strata(request, f"file://{tmp_path / 'store'}", tmp_path)


@pytest.fixture
def mounted(strata: Strata) -> Mount:
    """A writable mount of a fresh, empty volume ``vol``."""
    return strata.mount(strata.create("vol"))
