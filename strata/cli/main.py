"""The ``strata`` command: a thin layer over the engine's Python API.

Errors the engine raises on purpose (bad names, unknown volumes, unreachable stores)
print as one line on stderr with a non-zero exit status; never a traceback. Set
``STRATA_DEBUG=1`` to see tracebacks of unexpected failures.
"""

from __future__ import annotations

import os
import sys

import click

from strata.cli.context import CliContext
from strata.cli.gc import gc
from strata.cli.mount import commit, finalize, mount, umount
from strata.cli.volume import volume
from strata.config import default_store_url
from strata.errors import StrataError

EXIT_ERROR = 1


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--store",
    "store_url",
    metavar="URL",
    default=default_store_url,
    show_default="$STRATA_STORE or a directory under the user's data dir",
    help="Store URL: file:///abs/path or s3://bucket/prefix?endpoint=…&region=…",
)
@click.version_option(package_name="strata")
@click.pass_context
def cli(ctx: click.Context, store_url: str) -> None:
    """Versioned, forkable volumes backed by an object store."""
    ctx.obj = CliContext(store_url)


cli.add_command(volume)
cli.add_command(gc)
for _command in (mount, commit, finalize, umount):
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="strata", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("strata: aborted", err=True)
        return EXIT_ERROR
    except click.BadParameter as exc:
        # A bad value is one line, like every other error; usage goes with --help.
        click.echo(f"strata: error: {exc.format_message()}", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except StrataError as exc:
        click.echo(f"strata: error: {exc}", err=True)
        return EXIT_ERROR
    except (ValueError, OSError) as exc:
        if os.environ.get("STRATA_DEBUG"):
            raise
        click.echo(f"strata: error: {exc}", err=True)
        return EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
