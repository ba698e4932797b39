"""The whole command tree, walked: the same options everywhere, help that imports little."""

from __future__ import annotations

import pytest
import typer
from typer._click.core import Command, Context

from libresh_cli.cli.main import Commands, app


def _root() -> Command:
    return typer.main.get_command(app)


def _walk(command: Command, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], Command]:
    """Every leaf command, by its words after `libresh`."""
    list_commands = getattr(command, "list_commands", None)
    if list_commands is None:
        return {path: command}
    ctx = Context(command)
    found: dict[tuple[str, ...], Command] = {}
    for name in list_commands(ctx):
        sub = command.get_command(ctx, name)  # type: ignore[attr-defined]
        found.update(_walk(sub, (*path, name)))
    return found


COMMANDS = _walk(_root())


@pytest.mark.parametrize("name", list(Commands.lazy))
def test_the_root_help_of_a_command_not_loaded_is_its_own(name: str) -> None:
    """`libresh --help` shows the table's line for each command; it is the command's own."""
    loaded = Commands.lazy[name].load(name)
    assert loaded.get_short_help_str(10_000) == Commands.lazy[name].help


def test_root_help_loads_no_command_module(capsys: pytest.CaptureFixture[str]) -> None:
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from libresh_cli.cli.main import _run\n"
        "code = _run(['--help'])\n"
        "print(code, sorted(m for m in sys.modules if m.startswith('libresh_cli.cli.')))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    last = result.stdout.strip().splitlines()[-1]
    for module in ("apps", "backup", "bootstrap", "catalog", "cluster", "infra", "lab"):
        assert f"libresh_cli.cli.{module}'" not in last
    assert last.startswith("0 ")
