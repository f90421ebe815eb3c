"""``strata volume create|list|log|fork|delete|diff``."""

from __future__ import annotations

import datetime

import click

from strata.cli.context import CliContext, json_option, pass_ctx
from strata.meta.head import Retention
from strata.meta.version import Version
from strata.units import format_size, parse_duration


def _time(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def version_dict(v: Version) -> dict[str, object]:
    return {
        "ref": v.ref,
        "id": v.id,
        "volume": v.volume,
        "parent": v.parent,
        "message": v.message,
        "created": v.created,
        "bytes": v.stats.bytes,
        "files": v.stats.files,
        "writer": v.writer,
    }


def _retention(keep_last: int | None, max_age: str | None) -> Retention | None:
    if keep_last is None and max_age is None:
        return None
    if keep_last is not None and keep_last < 1:
        raise click.BadParameter("must be at least 1", param_hint="--keep-last")
    try:
        age = parse_duration(max_age) if max_age is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--max-age") from None
    return Retention(keep_last=keep_last, max_age=age)


@click.group()
def volume() -> None:
    """Create, list, fork and inspect volumes."""


@volume.command()
@click.argument("name")
@click.option("--keep-last", type=int, help="Retention: keep the newest N versions.")
@click.option("--max-age", metavar="DUR", help="Retention: drop versions older than DUR (30d).")
@click.option("--high-throughput", is_flag=True, help="Faster metadata path for many files.")
@json_option
@pass_ctx
def create(
    ctx: CliContext,
    name: str,
    keep_last: int | None,
    max_age: str | None,
    high_throughput: bool,
    as_json: bool,
) -> None:
    """Create an empty volume NAME."""
    info = ctx.repo.create_volume(
        name, retention=_retention(keep_last, max_age), high_throughput=high_throughput
    )
    if as_json:
        ctx.json({"volume": info.name, "created": info.created})
    else:
        click.echo(f"created volume {info.name}")


@volume.command("list")
@json_option
@pass_ctx
def list_(ctx: CliContext, as_json: bool) -> None:
    """List volumes with their head version, size and writer."""
    now = ctx.repo.clock()
    rows = []
    for name in ctx.repo.list_volumes():
        info = ctx.repo.volume(name)
        writer = info.writer.holder if info.writer and info.writer.live(now) else None
        rows.append(
            {
                "volume": name,
                "head": info.head.ref if info.head else None,
                "versions": info.version_count,
                "bytes": info.head.stats.bytes if info.head else 0,
                "files": info.head.stats.files if info.head else 0,
                "writer": writer,
                "forked_from": info.forked_from,
            }
        )
    if as_json:
        ctx.json(rows)
        return
    ctx.table(
        None,
        ["VOLUME", "HEAD", "VERSIONS", "SIZE", "FILES", "WRITER", "FORKED FROM"],
        [
            [
                r["volume"],
                r["head"] or "-",
                r["versions"],
                format_size(r["bytes"]),
                r["files"],
                r["writer"] or "-",
                r["forked_from"] or "-",
            ]
            for r in rows
        ],
    )


@volume.command()
@click.argument("name")
@click.option("-n", "--limit", type=int, help="Show at most N versions.")
@json_option
@pass_ctx
def log(ctx: CliContext, name: str, limit: int | None, as_json: bool) -> None:
    """Version history of NAME, newest first (following forks)."""
    versions = ctx.repo.log(name, limit=limit)
    if as_json:
        ctx.json([version_dict(v) for v in versions])
        return
    if not versions:
        click.echo(f"volume {name} has no versions yet")
        return
    ctx.table(
        f"history of {name}",
        ["VERSION", "CREATED", "MESSAGE", "SIZE", "FILES", "PARENT"],
        [
            [
                v.ref,
                _time(v.created),
                v.message,
                format_size(v.stats.bytes),
                v.stats.files,
                v.parent or "-",
            ]
            for v in versions
        ],
    )


@volume.command()
@click.argument("source")
@click.argument("new")
@json_option
@pass_ctx
def fork(ctx: CliContext, source: str, new: str, as_json: bool) -> None:
    """Fork SOURCE (NAME or NAME@VERSION) into a new volume NEW, copying no data."""
    head = ctx.repo.fork(source, new)
    if as_json:
        ctx.json({"volume": new, "source": source, "head": head.version})
    else:
        click.echo(f"forked {source} -> {new} (head {head.version or 'empty'})")


@volume.command()
@click.argument("name")
@click.option("--force", is_flag=True, help="Delete even while a writer holds the volume.")
@pass_ctx
def delete(ctx: CliContext, name: str, force: bool) -> None:
    """Delete volume NAME (its data is freed by the next `strata gc`)."""
    ctx.repo.delete_volume(name, force=force)
    click.echo(f"deleted volume {name}")


@volume.command()
@click.argument("a")
@click.argument("b")
@json_option
@pass_ctx
def diff(ctx: CliContext, a: str, b: str, as_json: bool) -> None:
    """Paths added, removed and modified from A to B (NAME or NAME@VERSION)."""
    d = ctx.repo.diff(a, b)
    if as_json:
        ctx.json({"added": d.added, "removed": d.removed, "modified": d.modified})
        return
    if not d:
        click.echo(f"no differences between {a} and {b}")
        return
    for mark, paths in (("+", d.added), ("-", d.removed), ("M", d.modified)):
        for path in paths:
            click.echo(f"{mark} {path}")
    click.echo(f"{len(d.added)} added, {len(d.removed)} removed, {len(d.modified)} modified")
