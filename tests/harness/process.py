"""Start, wait for, and reliably stop a component process, keeping its log."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path


class ComponentError(RuntimeError):
    """A real component failed to start or died; the message names it and why."""


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (bound then released; good enough for tests)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join(text.splitlines()[-lines:])


#: every component started in this process and not yet stopped (for failure reports)
RUNNING: list[Component] = []


class Component:
    """One running process of a real component, e.g. ``Component("etcd", argv, dir)``.

    The process gets its own session (so the whole tree can be signalled), writes
    stdout+stderr to ``<workdir>/<name>.log``, and is stopped with SIGTERM then SIGKILL.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str | os.PathLike[str]],
        workdir: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        workdir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        RUNNING.append(self)

    def fail(self, reason: str) -> ComponentError:
        return ComponentError(
            f"{self.name} failed to start: {reason}\n"
            f"  command: {' '.join(self.argv)}\n"
            f"  log: {self.log_path}\n"
            f"--- last lines of the {self.name} log ---\n{log_tail(self.log_path)}"
        )

    def wait_ready(self, ready: Callable[[], bool], timeout: float, what: str = "ready") -> None:
        """Poll ``ready()`` until true; fail early if the process exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                self.stop()
                raise self.fail(f"process exited with status {code} before it was {what}")
            try:
                if ready():
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise self.fail(f"not {what} after {timeout:.0f}s")

    def stop(self, grace: float = 10.0) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=grace)
            except ProcessLookupError:
                pass
        self._log.close()
        if self in RUNNING:
            RUNNING.remove(self)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0
