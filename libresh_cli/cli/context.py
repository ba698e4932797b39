"""The application object every command receives: terminal, output format, global flags."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from libresh_cli.settings import Paths

if TYPE_CHECKING:  # rich is imported on first output, so `libresh --help` does not pay for it
    from rich.console import Console


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


@dataclass
class AppContext:
    output: OutputFormat = OutputFormat.table
    verbose: int = 0
    yes: bool = False
    dry_run: bool = False
    color: bool = True
    debug: bool = False
    kubeconfig: Path | None = None
    kube_context: str | None = None
    catalogs: list[Path] = field(default_factory=list)
    paths: Paths = field(default_factory=Paths.from_env)

    @cached_property
    def out(self) -> Console:
        """Data goes to stdout."""
        from libresh_cli.cli.terminal import console

        return console(no_color=not self.color, soft_wrap=True, width=_width_for(sys.stdout))

    @cached_property
    def err(self) -> Console:
        """Messages, progress and prompts go to stderr."""
        from libresh_cli.cli.terminal import console

        return console(stderr=True, no_color=not self.color, width=_width_for(sys.stderr))

    @property
    def interactive(self) -> bool:
        """A person is there to answer: both stdin and stderr are terminals."""
        return sys.stdin.isatty() and sys.stderr.isatty()

    def configure_logging(self) -> None:
        import logging

        level = {0: logging.WARNING, 1: logging.INFO}.get(self.verbose, logging.DEBUG)
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")

    def reporter(self) -> TerminalReporter:
        return TerminalReporter(self.err, quiet=self.output is not OutputFormat.table)


# Off a terminal (a pipe, a file, cron's mail) nothing is cut or wrapped: `libresh list | grep`
# sees whole URLs. Rich would otherwise lay everything out for 80 columns.
UNBOUNDED_WIDTH = 10_000


def _width_for(stream: Any) -> int | None:
    """None (the terminal's own width) on a terminal, no limit elsewhere."""
    try:
        return None if stream.isatty() else UNBOUNDED_WIDTH
    except (AttributeError, ValueError):
        return UNBOUNDED_WIDTH


def color_wanted(no_color_flag: bool) -> bool:
    return not no_color_flag and "NO_COLOR" not in os.environ


class TerminalReporter:
    """Shows service progress on stderr: a spinner for the current step on a terminal,
    plain lines otherwise; `quiet` keeps stderr to warnings when data goes out as json/yaml."""

    def __init__(self, console: Console, *, quiet: bool = False) -> None:
        self.console = console
        self.quiet = quiet
        self._status: object | None = None
        self._since = time.monotonic()  # of the work under way, shown beside its steps

    def step(self, message: str) -> None:
        if self._status is not None:
            from libresh_cli.cli.terminal import spinner_line

            self._status.update(spinner_line(message, self._since))  # type: ignore[attr-defined]
        elif not self.quiet and not self.console.is_terminal:
            from libresh_cli.cli.terminal import took

            self.console.print(f"… {message}{took(self._since)}")

    def done(self, message: str) -> None:
        if not self.quiet:
            from libresh_cli.cli.terminal import marked

            self.console.print(marked("✓", "green", message))

    def warn(self, message: str) -> None:
        from libresh_cli.cli.terminal import marked

        self.console.print(marked("!", "yellow", message))

    @contextmanager
    def spinning(self, message: str) -> Iterator[TerminalReporter]:
        """While inside, `step` updates a spinner line (only on a terminal)."""
        if not self.console.is_terminal or self.quiet:
            yield self
            return
        from libresh_cli.cli.terminal import spinner_line

        self._since = time.monotonic()
        with self.console.status(spinner_line(message, self._since)) as status:  # type: ignore[arg-type]
            self._status = status
            try:
                yield self
            finally:
                self._status = None
