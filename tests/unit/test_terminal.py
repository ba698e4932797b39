"""Data reaches the terminal as it is: never read as Rich markup, never with control
characters (issue 14, finding 9)."""

from __future__ import annotations

from pathlib import Path

import pytest

from libresh_cli.cli.failure import print_error
from libresh_cli.cli.main import _run
from libresh_cli.cli.output import rows_table
from libresh_cli.cli.terminal import console, plain


def test_markup_and_escape_sequences_in_an_error_are_printed_as_text(
    capsys: pytest.CaptureFixture[str],
) -> None:
    print_error("file [/x] and [red]kept[/red] \x1b[2J\x07end", "hint [bold]as is[/bold]\x1b]0;t")
    err = capsys.readouterr().err
    assert "file [/x] and [red]kept[/red] [2Jend" in err  # ESC and BEL gone, brackets kept
    assert "hint [bold]as is[/bold]]0;t" in err
    assert "\x1b" not in err and "\x07" not in err


def test_a_path_with_markup_gives_a_clear_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "[/x]"
    folder.mkdir(parents=True)  # "[" holding "x]": the path reads [/x]
    assert _run(["catalog", "validate", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "[/x]" in err and "has no app.yaml" in err and "Traceback" not in err


def test_tables_and_messages_print_data_literally(capsys: pytest.CaptureFixture[str]) -> None:
    out = console(force_terminal=False, width=200)
    out.print(rows_table(["NAME"], [["[red]hidden?[/red]\x1b[31m"]]))
    out.print("[/oops] \x1b[1mbold")
    printed = capsys.readouterr().out
    assert "[red]hidden?[/red][31m" in printed and "[/oops] [1mbold" in printed
    assert "\x1b" not in printed
    assert plain("tab\tand\nnewline\x9bcsi") == "tab\tand\nnewlinecsi"
