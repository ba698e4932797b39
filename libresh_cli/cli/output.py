"""Rendering results: the same data as a table for people, or json/yaml for scripts."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from libresh_cli.cli.context import AppContext, OutputFormat
from libresh_cli.cli.terminal import plain

if TYPE_CHECKING:  # rich.table is imported when a table is drawn, not for `libresh --help`
    from rich.table import Table


class _Emitted:
    """Whether this run already printed its data on stdout: a failure after it (e.g. `status`
    of an unhealthy instance, exit 1) must not add a second document."""

    data = False


EMITTED = _Emitted()


def emit(app: AppContext, data: Any, as_table: Callable[[Any], Table | str]) -> None:
    """Print `data` on stdout in the chosen format; `as_table` builds the human view."""
    EMITTED.data = True
    if app.output is OutputFormat.json:
        app.out.print_json(json.dumps(data, default=str))
    elif app.output is OutputFormat.yaml:
        import yaml  # only scripts asking for yaml pay for the import

        app.out.print(yaml.safe_dump(data, sort_keys=False).rstrip(), markup=False)
    else:
        app.out.print(as_table(data))


def key_value_table(rows: Mapping[str, Any], title: str | None = None) -> Table:
    from rich.table import Table

    table = Table(show_header=False, box=None, title=title, title_justify="left")
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")  # paths and URLs are copied from here: never cut them
    for key, value in rows.items():
        table.add_row(key.replace("_", " "), "" if value is None else plain(value))
    return table


def rows_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if cell is None else plain(cell) for cell in row))
    return table
