"""The whole command tree, walked: the same options everywhere, help that imports little."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
import yaml
from typer._click.core import Command, Context

from libresh_cli.cli.main import Commands, app
from libresh_cli.settings import Paths


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


# Every command is one of these; a new one fails test_every_command_is_classified until it
# is put here, and then must have the options of its kind.
CHANGES = {
    ("install",), ("upgrade",), ("uninstall",), ("restore",),
    ("bootstrap", "ssh"), ("bootstrap", "local"),
    ("infra", "install"), ("infra", "upgrade"),
    ("cluster", "create"), ("cluster", "scale"), ("cluster", "destroy"), ("cluster", "upgrade"),
    ("backup", "now"), ("backup", "schedule"), ("backup", "storage", "set"),
    ("services", "set"),
    ("identity", "connect"), ("identity", "enable"), ("identity", "rotate-secret"),
    ("users", "add"), ("users", "remove"), ("users", "passwd"),
    ("groups", "add"), ("groups", "remove"), ("groups", "add-member"), ("groups", "remove-member"),
    ("mail", "set"), ("mail", "unset"),
    ("lab", "up"), ("lab", "down"), ("lab", "build"),
}  # fmt: skip
PRINTS_DATA = {
    ("list",), ("status",), ("diff",), ("doctor",),
    ("backup", "list"), ("backups", "list"), ("backup", "storage", "show"),
    ("backup", "key", "export"),
    ("secret", "get"), ("secret", "list"),
    ("catalog", "list"), ("catalog", "search"), ("catalog", "show"), ("catalog", "validate"),
    ("mail", "show"), ("mail", "test"),
    ("services", "show"), ("infra", "status"), ("cluster", "status"),
    ("identity", "status"), ("users", "list"), ("users", "show"), ("groups", "list"),
    ("lab", "status"), ("lab", "kubeconfig"),
}  # fmt: skip


def _option(command: Command, name: str) -> typer.core.TyperOption | None:
    for param in command.params:
        if isinstance(param, typer.core.TyperOption) and name in param.opts:
            return param
    return None


def test_every_command_is_classified() -> None:
    unclassified = set(COMMANDS) - CHANGES - PRINTS_DATA
    assert unclassified == set(), "say whether these change something or print data"
    assert set() == CHANGES & PRINTS_DATA


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_every_command_takes_the_output_option(path: tuple[str, ...]) -> None:
    output = _option(COMMANDS[path], "--output")
    assert output is not None and "-o" in output.opts
    choices = {str(value.value) for value in output.type_descriptor.annotation}
    assert {"table", "json", "yaml"} <= choices


@pytest.mark.parametrize("path", sorted(CHANGES & set(COMMANDS)), ids=" ".join)
def test_every_command_that_changes_something_takes_yes_and_dry_run(
    path: tuple[str, ...],
) -> None:
    import inspect

    command = COMMANDS[path]
    for name in ("--yes", "--dry-run"):
        option = _option(command, name)
        assert option is not None, f"libresh {' '.join(path)} has no {name}"
        assert option.is_flag, f"{name} of libresh {' '.join(path)} takes a value"
    assert _option(command, "-y") is not None
    # A flag taken and ignored is worse than none: the command passes it on to the context,
    # and its module reads the context's (which the global --dry-run sets too).
    callback = command.callback
    assert callback is not None
    body = inspect.getsource(callback).split(") -> None:", 1)[1]
    assert "app_context(ctx, output, dry_run, yes)" in body
    assert "app.dry_run" in inspect.getsource(inspect.getmodule(callback))  # type: ignore[arg-type]


@pytest.mark.parametrize("data_format", ["json", "yaml"])
@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_a_usage_error_is_one_document_in_the_format_asked_for(
    path: tuple[str, ...], data_format: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """What a cron wrapper reads on stdout when the command line is wrong, whatever the
    command."""
    from libresh_cli.cli.main import _run

    assert _run([*path, "-o", data_format, "--no-such-option"]) == 2
    out = capsys.readouterr().out
    document = json.loads(out) if data_format == "json" else yaml.safe_load(out)
    assert document["exit_code"] == 2 and "--no-such-option" in document["error"]


# -- dry runs and data of the commands that need no cluster -----------------------------------


def test_lab_down_dry_run_names_the_lab_and_leaves_it(
    xdg: Paths, capsys: pytest.CaptureFixture[str]
) -> None:
    from libresh_cli.cli.main import _run
    from libresh_cli.lab.state import lab_dir

    lab_dir(xdg, "ci").mkdir(parents=True)
    assert _run(["lab", "down", "--name", "ci", "--dry-run", "-o", "json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["would"] == ["stop lab 'ci' and remove its state"]
    assert "nothing was changed" in captured.err
    assert lab_dir(xdg, "ci").exists()
    # the global flag is the same flag
    assert _run(["--dry-run", "lab", "down", "--all"]) == 0
    assert capsys.readouterr().out == "Would stop lab 'ci' and remove its state\n"
    assert lab_dir(xdg, "ci").exists()


def test_lab_build_dry_run_says_what_it_would_build(
    xdg: Paths, capsys: pytest.CaptureFixture[str]
) -> None:
    from libresh_cli.cli.main import _run

    assert _run(["lab", "build", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Would build the control plane (Kubernetes v") and str(xdg.cache) in out
    assert not (xdg.cache / "lab").exists()


def test_lab_kubeconfig_as_json(xdg: Paths, capsys: pytest.CaptureFixture[str]) -> None:
    from libresh_cli.cli.main import _run

    assert _run(["lab", "kubeconfig", "-o", "json"]) == 4  # no lab: the failure, as JSON
    assert json.loads(capsys.readouterr().out)["exit_code"] == 4


def test_catalog_validate_as_json_lists_each_app(capsys: pytest.CaptureFixture[str]) -> None:
    from libresh_cli.cli.main import _run

    apps = Path(__file__).resolve().parents[2] / "apps"
    assert _run(["catalog", "validate", str(apps / "vaultwarden"), "-o", "yaml"]) == 0
    document = yaml.safe_load(capsys.readouterr().out)
    assert document == [{"path": str(apps / "vaultwarden"), "app": "vaultwarden", "valid": True}]


def test_destroying_a_cluster_without_asking_needs_its_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--yes is a flag as everywhere; the name beside it keeps `destroy` from deleting the
    cluster of a file given by mistake (and `--yes NAME`, as before, still reads so)."""
    from libresh_cli.cli.main import _run

    key = tmp_path / "id.pub"
    key.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey coop\n")
    document = {
        "name": "coop", "provider": "hetzner", "locations": ["fsn1"], "image": "debian-12",
        "ssh_key": str(key), "servers": {"type": "cx23", "count": 1},
        "allowed_networks": {"ssh": ["203.0.113.7/32"], "api": ["203.0.113.7/32"]},
        "k3s_version": "v1.34.4+k3s1",
    }  # fmt: skip
    file = tmp_path / "cluster.yaml"
    file.write_text(yaml.safe_dump(document))
    assert _run(["cluster", "destroy", "-f", str(file), "--yes"]) == 2
    assert "libresh cluster destroy coop -f FILE --yes" in capsys.readouterr().err
    assert _run(["cluster", "destroy", "-f", str(file), "--yes", "coap"]) == 2
    assert "'coap' is not the name of the cluster" in capsys.readouterr().err
