"""Run one FUSE mount in this process until it is unmounted.

``serve`` is what ``strata mount --foreground`` runs; ``strata mount`` without it starts
``serve`` in a detached child process and returns once the mount is ready.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import llfuse

from strata.chunks.cache import ChunkCache
from strata.chunks.objects import ContentStore
from strata.fs.mountpoint import prepare
from strata.fs.ops import Operations
from strata.fs.options import MountOptions
from strata.fs.session import MountSession, chunk_cache_dir
from strata.meta.repo import Repository
from strata.store import open_store

log = logging.getLogger("strata.fs.daemon")


def fuse_options(source: str, options: MountOptions) -> list[str]:
    opts = [f"fsname=strata:{source}", "subtype=strata", "big_writes"]
    if os.geteuid() == 0:
        # Other users (a pod's non-root user) may use the mount; the kernel then
        # checks permission bits, since the filesystem itself does not.
        opts += ["allow_other", "default_permissions"]
    if options.read_only:
        opts.append("ro")
    return opts


#: kernel read-ahead for the mount (libfuse 2 cannot ask for more than the default 128 KiB)
READ_AHEAD_KB = 1024


def _raise_readahead(mountpoint: Path) -> None:
    """Let the kernel read ahead 1 MiB, i.e. keep several 128 KiB reads in flight.

    The knob is the mount's backing-device ``read_ahead_kb`` in sysfs, writable by
    root only; elsewhere the default stays (reads are correct either way). The
    kernel resets it when it handles the FUSE INIT reply, so this runs in a thread
    that first waits for an answered request (statvfs) to the new mount.
    """
    try:
        os.statvfs(mountpoint)  # answered only once the loop runs and INIT is done
        target = os.path.abspath(mountpoint)
        devices = [
            fields[2]
            for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if len(fields := line.split()) > 4 and fields[4] == target
        ]
        if not devices:
            return
        knob = Path(f"/sys/class/bdi/{devices[-1]}/read_ahead_kb")
        if int(knob.read_text()) < READ_AHEAD_KB:
            knob.write_text(str(READ_AHEAD_KB))
    except (OSError, ValueError) as exc:
        log.debug("could not raise read-ahead of %s: %s", mountpoint, exc)


def open_repository(store_url: str, options: MountOptions) -> Repository:
    """The repository a mount reads through: chunks are cached locally (``cache_size``)."""
    store = open_store(store_url, max_concurrent=max(64, options.max_uploads + 16))
    cache_dir = Path(options.cache_dir) if options.cache_dir else chunk_cache_dir(store_url)
    cache = ChunkCache(cache_dir / "chunks", options.cache_size)
    return Repository.open(store, content=ContentStore(store, cache=cache))


def serve(store_url: str, source: str, options: MountOptions) -> None:
    """Mount ``source`` at ``options.mount_path`` and serve until unmounted."""
    repo = open_repository(store_url, options)
    session = MountSession(repo, source, options, store_url)
    if not session.writable and not options.read_only:
        from dataclasses import replace

        options = replace(options, read_only=True)
        session.options = options
    mountpoint = prepare(options.mount_path)
    session.open()
    try:
        ops = Operations(session.state, options, session)
        llfuse.init(ops, str(mountpoint), fuse_options(source, options))
    except BaseException:
        session.close()
        raise
    threading.Thread(
        target=_raise_readahead, args=(mountpoint,), name="strata-readahead", daemon=True
    ).start()
    log.info("mounted %s at %s", source, mountpoint, extra={"writable": session.writable})
    session.start_timers()
    try:
        llfuse.main(workers=options.workers)
    finally:
        llfuse.close(unmount=True)
        session.close()
        log.info("unmounted %s from %s", source, mountpoint)


def main(argv: list[str] | None = None) -> None:
    """``python -m strata.fs.daemon --store URL --source REF --options JSON``."""
    import argparse
    import json

    from strata.errors import StrataError
    from strata.logs import setup_logging

    parser = argparse.ArgumentParser(prog="strata-mount-daemon")
    parser.add_argument("--store", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--options", required=True, help="MountOptions as JSON")
    args = parser.parse_args(argv)
    setup_logging(os.environ.get("STRATA_LOG_LEVEL", "INFO"))
    try:
        serve(args.store, args.source, MountOptions(**json.loads(args.options)))
    except StrataError as exc:
        log.error("%s", exc)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
