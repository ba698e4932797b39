"""How services report progress without knowing about terminals.

Services take a `Reporter` and call it; the CLI layer passes one that draws spinners and
lines with rich, tests pass `RecordingReporter` and read what was said.
"""

from __future__ import annotations

from typing import Protocol


class Reporter(Protocol):
    def step(self, message: str) -> None:
        """A unit of work starts (shown as the current activity)."""

    def done(self, message: str) -> None:
        """A unit of work finished and is worth a line of its own."""

    def warn(self, message: str) -> None:
        """Something the user should know about, that does not stop the work."""


class SilentReporter:
    def step(self, message: str) -> None:
        pass

    def done(self, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        pass


class RecordingReporter:
    """Keeps every report as (kind, message), for tests and for `-o json` summaries."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def step(self, message: str) -> None:
        self.events.append(("step", message))

    def done(self, message: str) -> None:
        self.events.append(("done", message))

    def warn(self, message: str) -> None:
        self.events.append(("warn", message))
