"""What every command needs: the store URL, the repository, and output helpers."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from strata.meta.repo import Repository
from strata.store import open_store


@dataclass
class CliContext:
    store_url: str
    _repo: Repository | None = field(default=None, repr=False)
    # Piped output is not squeezed into 80 columns: tables stay one row per line.
    console: Console = field(
        default_factory=lambda: Console(width=None if sys.stdout.isatty() else 200)
    )

    @property
    def repo(self) -> Repository:
        """The repository, opened on first use (so ``--help`` never touches a store)."""
        if self._repo is None:
            self._repo = Repository.open(open_store(self.store_url))
        return self._repo

    def table(self, title: str | None, columns: list[str], rows: list[list[Any]]) -> None:
        table = Table(title=title, title_justify="left")
        for column in columns:
            table.add_column(column, no_wrap=column != "MESSAGE")
        for row in rows:
            table.add_row(*("" if v is None else str(v) for v in row))
        self.console.print(table)

    @staticmethod
    def json(value: Any) -> None:
        json.dump(value, sys.stdout, indent=2, sort_keys=True, default=str)
        sys.stdout.write("\n")


pass_ctx = click.make_pass_decorator(CliContext)

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of a table."
)
