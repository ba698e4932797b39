"""The command-line skeleton: help, version, usage errors, and the mapping of errors to exits."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from libresh_cli import __version__
from libresh_cli.cli.main import _run
from libresh_cli.errors import ConflictError, ExitCode
from libresh_cli.lab import cluster
from libresh_cli.settings import Paths


def test_help_lists_commands_global_options_and_examples(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _run(["--help"]) == 0
    out = capsys.readouterr().out
    for expected in (
        "lab",
        "--kubeconfig",
        "--context",
        "--output",
        "--verbose",
        "--yes",
        "--dry-run",
        "--no-color",
        "--version",
        "Examples:",
        "Exit codes",
    ):
        assert expected in out


@pytest.mark.parametrize(
    "command",
    [
        ["lab"],
        ["lab", "up"],
        ["lab", "down"],
        ["lab", "status"],
        ["lab", "kubeconfig"],
        ["lab", "build"],
    ],
)
def test_every_command_has_help_with_an_example(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run([*command, "--help"]) == 0
    assert "Example" in capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["--version"]) == 0
    assert capsys.readouterr().out == f"libresh {__version__}\n"


def test_unknown_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["lab", "up", "--bogus"]) == ExitCode.BAD_INPUT
    err = capsys.readouterr().err
    assert "No such option" in err and "Usage:" in err


def test_bad_option_value_names_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["-o", "xml", "lab", "status"]) == ExitCode.BAD_INPUT
    assert "'--output'" in capsys.readouterr().err


def test_invalid_lab_name_is_bad_input_with_a_hint(
    xdg: Paths, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(["lab", "up", "--name", "Not_Valid"]) == ExitCode.BAD_INPUT
    err = capsys.readouterr().err
    assert "--name 'Not_Valid' is not a valid lab name" in err
    assert "lowercase" in err


def test_nodes_out_of_range_is_bad_input(xdg: Paths, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["lab", "up", "--nodes", "0"]) == ExitCode.BAD_INPUT
    assert "--nodes 0 is out of range" in capsys.readouterr().err


def test_libresh_error_prints_message_and_hint_with_its_exit_code(
    xdg: Paths, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def taken(*_: object, **__: object) -> None:
        raise ConflictError("Port 1 is taken.", hint="Pick another.")

    monkeypatch.setattr(cluster, "lab_up", taken)
    assert _run(["lab", "up"]) == ExitCode.CONFLICT
    err = capsys.readouterr().err
    assert "Error: Port 1 is taken." in err and "Pick another." in err
    assert "Traceback" not in err


def _explode(*_: object, **__: object) -> None:
    password = "hunter2-not-for-logs"  # a local that must not reach the crash report
    raise RuntimeError(f"boom {len(password)}")


def test_unexpected_error_writes_a_private_crash_report_without_locals(
    xdg: Paths, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cluster, "lab_status", _explode)
    assert _run(["lab", "status"]) == ExitCode.INTERNAL
    err = capsys.readouterr().err
    assert "unexpected RuntimeError" in err and "--debug" in err
    assert "Traceback" not in err
    reports = list((xdg.state / "crash").glob("libresh-*.log"))
    assert len(reports) == 1
    assert str(reports[0]) in err.replace("\n", "")
    assert stat.S_IMODE(reports[0].stat().st_mode) == 0o600
    text = reports[0].read_text()
    assert "Traceback" in text and "RuntimeError: boom 20" in text
    assert "hunter2" not in text


def test_debug_shows_the_traceback(xdg: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster, "lab_status", _explode)
    with pytest.raises(RuntimeError, match="boom"):
        _run(["--debug", "lab", "status"])


def test_interrupt_exits_130(
    xdg: Paths, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cluster, "lab_status", interrupted)
    assert _run(["lab", "status"]) == ExitCode.INTERRUPTED
    assert "Interrupted" in capsys.readouterr().err


def test_missing_lab_is_not_found_with_the_fix(
    xdg: Paths, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(["lab", "status"]) == ExitCode.NOT_FOUND
    assert _run(["lab", "kubeconfig", "--name", "nope"]) == ExitCode.NOT_FOUND
    err = capsys.readouterr().err
    assert "No lab named 'default' is running" in err and "libresh lab up" in err


def test_lab_down_without_a_lab_says_nothing_to_do(
    xdg: Paths, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(["lab", "down"]) == 0
    assert "nothing to do" in capsys.readouterr().err


def test_status_all_as_json_with_no_labs(xdg: Paths, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["lab", "status", "--all", "-o", "json"]) == 0
    assert capsys.readouterr().out.strip() == "[]"


def test_lab_up_without_go_or_cached_binaries_says_how_to_get_them(
    xdg: Paths, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert _run(["lab", "up"]) == ExitCode.PREREQUISITE_MISSING
    err = capsys.readouterr().err
    assert "No lab binaries are cached and Go is not installed" in err
    assert "libresh lab build" in err and "LIBRESH_LAB_BIN_DIR" in err
    assert not (xdg.state / "lab" / "default").exists()  # nothing was started or written


def test_lab_up_dry_run_shows_the_plan_and_starts_nothing(
    xdg: Paths, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(["-o", "json", "lab", "up", "--nodes", "2", "--dry-run"]) == 0
    captured = capsys.readouterr()
    plan = json.loads(captured.out)
    assert plan["nodes"] == ["lab-node-1", "lab-node-2"]
    assert plan["binaries"].startswith("to build with Go into ")
    assert plan["processes"][:2] == ["etcd", "kube-apiserver"]
    assert "nothing was started" in captured.err
    assert not (xdg.state / "lab").exists()


def test_a_lab_without_a_readable_record_is_reported_broken(
    xdg: Paths, capsys: pytest.CaptureFixture[str]
) -> None:
    (xdg.state / "lab" / "half").mkdir(parents=True)  # what a crash mid-`lab up` leaves
    assert _run(["lab", "status", "--name", "half"]) == ExitCode.FAILURE
    err = capsys.readouterr().err
    assert "The lab 'half' is broken" in err and "libresh lab up --name half" in err
    assert _run(["lab", "down", "--name", "half"]) == 0
    assert not (xdg.state / "lab" / "half").exists()


def test_a_values_file_with_a_secret_readable_by_others_is_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before any cluster is reached (issue 20, point 13)."""
    values = tmp_path / "values.yaml"
    values.write_text("api_key: s3cret-value\n")
    values.chmod(0o644)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    catalog = Path(__file__).resolve().parents[1] / "fixtures" / "catalog"
    argv = ["--catalog", str(catalog), "install", "demo", "--domain", "a.example.org"]
    _run([*argv, "-f", str(values), "--yes"])
    err = capsys.readouterr().err
    assert f"{values} holds api_key and other users can read it (mode 0644)" in err
    assert "s3cret-value" not in err
    values.chmod(0o600)
    _run([*argv, "-f", str(values), "--yes"])
    assert "other users can read it" not in capsys.readouterr().err


def test_an_instance_name_given_as_the_app_says_how_to_name_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _run(["install", "passwords", "--domain", "pw.example.org", "--yes"]) == 4
    err = capsys.readouterr().err
    assert "No app named 'passwords'" in err
    assert "libresh install APP --name passwords" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["backup", "list", "nextcloud"],
        ["backups", "list", "nextcloud"],
        ["restore", "nextcloud", "--backup", "20261122T031500Z-3fa2", "--dry-run"],
        ["restore", "nextcloud", "--snapshot", "20261122T031500Z-3fa2", "--dry-run"],
    ],
)
def test_the_natural_spellings_of_backup_commands_are_understood(
    argv: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Parsed as meant, they go on to look for the cluster (issue 20, point 6): no usage error,
    no instance named "list"."""
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    assert _run(argv) == ExitCode.NOT_FOUND
    err = capsys.readouterr().err
    assert "No kubeconfig to use" in err
    assert "Usage:" not in err


def test_backup_list_without_a_name_asks_for_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["backup", "list"]) == ExitCode.BAD_INPUT
    err = capsys.readouterr().err
    assert "Usage: libresh backup list" in err
    assert "Missing argument" in err


def test_backup_help_names_the_list_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["backup", "--help"]) == 0
    out = capsys.readouterr().out
    assert "list" in out and "libresh backup list nextcloud" in out
