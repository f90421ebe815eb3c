"""``strata mount|commit|finalize|umount``: a volume as a local directory."""

from __future__ import annotations

import os
from pathlib import Path

import click

from strata.cli.context import CliContext, pass_ctx
from strata.fs import launcher
from strata.fs.control import commit_mount
from strata.fs.options import InvalidMountOptions, MountOptions
from strata.units import parse_duration, parse_size

_CACHE_HELP = (
    "Seconds the kernel may cache {} (default 60; 3600 read-only: a version never changes)."
)


@click.command()
@click.argument("source")
@click.argument("mountpoint", type=click.Path(file_okay=False, path_type=Path))
@click.option("--read-only", is_flag=True, help="Mount read-only (always so for NAME@VERSION).")
@click.option("--max-uploads", type=int, default=50, show_default=True)
@click.option("--upload-delay", metavar="DUR", help="Wait before uploading a block.")
@click.option("--attr-cache", type=float, metavar="S", help=_CACHE_HELP.format("attributes"))
@click.option("--entry-cache", type=float, metavar="S", help=_CACHE_HELP.format("names"))
@click.option(
    "--dir-entry-cache", type=float, metavar="S", help=_CACHE_HELP.format("directory names")
)
@click.option("--cache-dir", type=click.Path(file_okay=False), help="Local cache directory.")
@click.option(
    "--cache-size",
    metavar="SIZE",
    default="10Gi",
    show_default=True,
    help="Bound of the chunk cache, and of local copies of uploaded blocks.",
)
@click.option("--foreground", is_flag=True, help="Serve in this process until unmounted.")
@pass_ctx
def mount(
    ctx: CliContext,
    source: str,
    mountpoint: Path,
    read_only: bool,
    max_uploads: int,
    upload_delay: str | None,
    attr_cache: float | None,
    entry_cache: float | None,
    dir_entry_cache: float | None,
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
    launcher.start(ctx.store_url, source, options)
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
    launcher.stop(mountpoint)
    click.echo(ref)


@click.command()
@click.argument("mountpoint", type=click.Path(file_okay=False, path_type=Path))
def umount(mountpoint: Path) -> None:
    """Flush and unmount (no new version)."""
    launcher.stop(mountpoint)
    click.echo(f"unmounted {mountpoint}")
