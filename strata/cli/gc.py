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
        ctx.json({**dataclasses.asdict(report), "objects_freed": report.objects_freed})
        return
    verb = "would free" if dry_run else "freed"
    ctx.table(
        f"gc ({'dry run, ' if dry_run else ''}grace {grace}, {report.seconds:.1f}s)",
        ["", "TREES", "CHUNKS", "BYTES"],
        [
            [verb, report.trees_freed, report.chunks_freed, format_size(report.bytes_freed)],
            ["live", report.trees_live, report.chunks_live, ""],
            ["kept (younger than grace)", report.kept_young, "", ""],
        ],
    )
    if report.versions_expired:
        click.echo(f"versions expired by retention: {', '.join(report.versions_expired)}")
