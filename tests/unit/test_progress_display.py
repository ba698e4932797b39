"""Long work says where it is: the time it has taken, and a Go build's packages."""

from __future__ import annotations

import io
import sys
import time

import pytest

from libresh_cli.cli.context import TerminalReporter
from libresh_cli.cli.terminal import console, spinner_line, took
from libresh_cli.errors import OperationFailedError
from libresh_cli.lab.binaries import BuildProgress, _run
from libresh_cli.progress import RecordingReporter


def test_the_time_taken_is_shown_from_two_seconds() -> None:
    now = time.monotonic()
    assert took(now) == ""
    assert took(now - 12.4) == " (12s)"
    assert took(now - 375) == " (6m 15s)"


def test_the_spinner_line_counts_the_time_at_each_drawing_and_reads_no_markup() -> None:
    out = console(file=io.StringIO(), width=200)
    out.print(spinner_line("[red]Building[/red]", time.monotonic() - 65))
    assert out.file.getvalue() == "[red]Building[/red] (1m 05s)\n"  # type: ignore[attr-defined]


def test_off_a_terminal_each_step_is_a_line_with_the_time_taken() -> None:
    stream = io.StringIO()
    reporter = TerminalReporter(console(file=stream, width=200))
    reporter._since -= 130
    reporter.step("Compiling lab-controlplane: 10 of 100 packages")
    assert stream.getvalue() == "… Compiling lab-controlplane: 10 of 100 packages (2m 10s)\n"


def test_a_go_build_reports_each_tenth_of_its_packages() -> None:
    reporter = RecordingReporter()
    progress = BuildProgress(reporter, total=50)
    for index in range(60):  # more than counted: the count never claims to be done
        progress.line(f"k8s.io/kubernetes/pkg/thing{index}")
        progress.line("# k8s.io/kubernetes/cmd: a warning")  # not a package
    steps = [message for kind, message in reporter.events if kind == "step"]
    assert len(steps) == 9
    assert steps[0] == "Compiling lab-controlplane: 5 of 50 packages"
    assert steps[-1] == "Compiling lab-controlplane: 45 of 50 packages"


def test_a_streamed_command_gives_each_line_and_keeps_the_last_for_its_error() -> None:
    seen: list[str] = []
    script = "import sys\nfor i in range(20): print(f'pkg/{i}', file=sys.stderr)\nsys.exit(3)"
    with pytest.raises(OperationFailedError) as raised:
        _run([sys.executable, "-c", script], what="build it", on_line=seen.append)
    assert seen == [f"pkg/{i}" for i in range(20)]
    assert "exited 3" in raised.value.message
    assert raised.value.hint == "\n".join(f"pkg/{i}" for i in range(5, 20))
