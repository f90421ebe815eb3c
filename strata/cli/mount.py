"""``strata mount|commit|finalize|umount``: a volume as a local directory."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import click

from strata.cli.context import CliContext, pass_ctx
from strata.fs.control import ControlError, commit_mount, mount_info
from strata.fs.mountpoint import MountError, unmount, wait_mounted
from strata.fs.options import InvalidMountOptions, MountOptions
from strata.units import parse_duration, parse_size

READY_TIMEOUT = 60.0


def _log_path(ctx: CliContext, mountpoint: Path) -> Path:
    import hashlib

    import platformdirs

    digest = hashlib.sha256(str(mountpoint).encode()).hexdigest()[:12]
    directory = Path(os.environ.get("STRATA_LOG_DIR") or platformdirs.user_log_dir("strata"))
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"mount-{digest}.log"


def _tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


def _daemon_error(log: Path) -> str:
    """The daemon's last error message (its logs are JSON lines) for a one-line report."""
    import json

    for line in reversed(_tail(log, 40).splitlines()):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("level") in ("error", "critical"):
            return str(record.get("msg"))
    return _tail(log, 3) or "no output"


@click.command()
@click.argument("source")
@click.argument("mountpoint", type=click.Path(file_okay=False, path_type=Path))
@click.option("--read-only", is_flag=True, help="Mount read-only (always so for NAME@VERSION).")
@click.option("--max-uploads", type=int, default=50, show_default=True)
@click.option("--upload-delay", metavar="DUR", help="Wait before uploading a block.")
@click.option("--attr-cache", type=float, default=60.0, show_default=True, metavar="S")
@click.option("--entry-cache", type=float, default=60.0, show_default=True, metavar="S")
@click.option("--dir-entry-cache", type=float, default=60.0, show_default=True, metavar="S")
@click.option("--cache-dir", type=click.Path(file_okay=False), help="Local cache directory.")
@click.option("--cache-size", metavar="SIZE", default="10Gi", show_default=True)
@click.option("--foreground", is_flag=True, help="Serve in this process until unmounted.")
@pass_ctx
def mount(
    ctx: CliContext,
    source: str,
    mountpoint: Path,
    read_only: bool,
    max_uploads: int,
    upload_delay: str | None,
    attr_cache: float,
    entry_cache: float,
    dir_entry_cache: float,
    cache_dir: str | None,
    cache_size: str,
    foreground: bool,
) -> None:
    """Mount SOURCE (NAME: the writable head; NAME@VERSION: read-only) at MOUNTPOINT."""
    mountpoint = mountpoint.absolute()
    try:
        options = MountOptions(
            mount_path=str(mountpoint),
            read_only=read_only or "@" in source,
            max_uploads=max_uploads,
            upload_delay=parse_duration(upload_delay) if upload_delay else None,
            attr_cache=attr_cache,
            entry_cache=entry_cache,
            dir_entry_cache=dir_entry_cache,
            cache_dir=cache_dir,
            cache_size=parse_size(cache_size),
        )
    except (ValueError, InvalidMountOptions) as exc:
        raise click.UsageError(str(exc)) from None
    if foreground:
        from strata.fs.daemon import serve
        from strata.logs import setup_logging

        setup_logging(os.environ.get("STRATA_LOG_LEVEL", "INFO"))
        serve(ctx.store_url, source, options)
        return
    log = _log_path(ctx, mountpoint)
    argv = [
        sys.executable,
        "-m",
        "strata.cli.main",
        "--store",
        ctx.store_url,
        "mount",
        source,
        str(mountpoint),
        "--foreground",
        "--max-uploads",
        str(max_uploads),
        "--attr-cache",
        str(attr_cache),
        "--entry-cache",
        str(entry_cache),
        "--dir-entry-cache",
        str(dir_entry_cache),
        "--cache-size",
        cache_size,
    ]
    if read_only:
        argv.append("--read-only")
    if upload_delay:
        argv += ["--upload-delay", upload_delay]
    if cache_dir:
        argv += ["--cache-dir", cache_dir]
    with open(log, "ab") as out:
        child = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )
    try:
        wait_mounted(mountpoint, READY_TIMEOUT, alive=lambda: child.poll() is None)
    except MountError:
        if child.poll() is None:
            child.kill()
        raise MountError(f"mount of {source} failed: {_daemon_error(log)} (log: {log})") from None
    click.echo(f"mounted {source} at {mountpoint}")


@click.command()
@click.argument("mountpoint", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-m", "--message", default="", help="Version message.")
def commit(mountpoint: Path, message: str) -> None:
    """Checkpoint a live writable mount into a new version, without unmounting."""
    click.echo(commit_mount(mountpoint, message))


@click.command()
@click.argument("mountpoint", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-m", "--message", default="", help="Version message.")
def finalize(mountpoint: Path, message: str) -> None:
    """Commit, flush and unmount; prints the version."""
    ref = commit_mount(mountpoint, message)
    _unmount_and_wait(mountpoint)
    click.echo(ref)


@click.command()
@click.argument("mountpoint", type=click.Path(file_okay=False, path_type=Path))
def umount(mountpoint: Path) -> None:
    """Flush and unmount (no new version)."""
    _unmount_and_wait(mountpoint)
    click.echo(f"unmounted {mountpoint}")


def _unmount_and_wait(mountpoint: Path, timeout: float = 300.0) -> None:
    try:
        pid = int(mount_info(mountpoint)["pid"])  # type: ignore[arg-type]
    except ControlError:
        pid = None
    unmount(mountpoint)
    if pid is None:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.05)
    raise MountError(f"the daemon of {mountpoint} (pid {pid}) did not exit in {timeout:.0f}s")


def _alive(pid: int) -> bool:
    """Running, and not a zombie (the daemon's parent may never reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False
