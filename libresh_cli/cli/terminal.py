"""What reaches the terminal: data (names, paths, messages from the API or a catalog) is
printed as it is, never read as Rich markup, and without control characters, so a file named
`[/x]` cannot crash the error printer, `[red]…` cannot hide text and an escape sequence in a
record cannot drive the terminal (issue 14, finding 9). Rich is imported only when something
is printed: `libresh --help` does not pay for it."""

from __future__ import annotations

import re
import time
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

# C0 controls but tab and newline, DEL, and C1 controls (ESC and CSI among them).
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def plain(text: object) -> str:
    return CONTROL.sub("", str(text))


def console(**options: Any) -> Console:
    """A Console that prints strings literally (no markup) and without control characters."""
    return _safe_console_class()(markup=False, highlight=False, **options)


@cache
def _safe_console_class() -> type[Console]:
    from rich.console import Console

    class SafeConsole(Console):
        def print(self, *objects: Any, **options: Any) -> None:
            options.pop("markup", None)  # never markup: data is printed as it is
            super().print(*(plain(o) if isinstance(o, str) else o for o in objects), **options)

    return SafeConsole


def marked(mark: str, style: str, message: object) -> Text:
    """`✓ message` with the mark in colour and the message as it is."""
    from rich.text import Text

    return Text.assemble((mark, style), " ", plain(message))


def took(started: float) -> str:
    """' (1m 05s)': the time since `started`, for a step that takes long; '' under 2 s."""
    seconds = int(time.monotonic() - started)
    if seconds < 2:
        return ""
    return f" ({seconds // 60}m {seconds % 60:02d}s)" if seconds >= 60 else f" ({seconds}s)"


def spinner_line(message: object, started: float) -> object:
    """A spinner's text with the time taken since `started`: rich draws it again at each
    refresh, so the time moves while a long step (a cold build, a node joining) runs. A Text,
    never read as markup."""
    from rich.text import Text

    class Elapsed:
        def __rich__(self) -> Text:
            return Text(plain(message) + took(started))

    return Elapsed()
