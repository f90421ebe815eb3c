"""``strata gc``: apply retention, then mark and sweep unreferenced objects."""

from __future__ import annotations

import dataclasses

import click

from strata.cli.context import CliContext, json_option, pass_ctx
from strata.units import format_size, parse_duration


@click.command()
@click.option(
    "--grace",
    default="1h",
    show_default=True,
    metavar="DUR",
    help="Never sweep objects younger than this (in-flight uploads).",
)
@click.option("--dry-run", is_flag=True, help="Report what would be freed; delete nothing.")
@json_option
@pass_ctx
def gc(ctx: CliContext, grace: str, dry_run: bool, as_json: bool) -> None:
    """Free chunks and trees no live head or version needs."""
    from strata.meta.gc import collect_garbage

    try:
        grace_s = parse_duration(grace)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--grace") from None
    report = collect_garbage(ctx.repo, grace=grace_s, dry_run=dry_run)
    if as_json:
        ctx.json(dataclasses.asdict(report))
        return
    verb = "would free" if dry_run else "freed"
    click.echo(
        f"gc {verb} {report.objects_freed} objects ({format_size(report.bytes_freed)}); "
        f"kept {report.objects_kept}; versions expired by retention: "
        f"{len(report.versions_expired)}"
    )
