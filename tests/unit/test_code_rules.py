"""Rules of the codebase, checked on every test run: layers, start-up imports, lint and types."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _run(
    command: list[str], cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)


def test_layer_contracts_hold() -> None:
    result = _run([str(BIN / "lint-imports")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


# Which part of libresh may import each outside library: the one adapter that owns it.
OWNERS = {
    "Only the CLI layer talks to the terminal (typer, rich, questionary)": "libresh_cli.cli",
    "Only the kube adapter imports the kubernetes client": "libresh_cli.kube",
    "Only the hetzner adapter imports the hcloud SDK": "libresh_cli.hetzner",
}


def _parts_of_libresh() -> set[str]:
    package = ROOT / "libresh_cli"
    modules = {p.stem for p in package.glob("*.py") if p.stem not in ("__init__", "__main__")}
    packages = {p.parent.name for p in package.glob("*/__init__.py")}
    return {f"libresh_cli.{name}" for name in modules | packages}


def test_the_contracts_cover_every_part_of_libresh() -> None:
    """A new subpackage (as backup/ once was) is in the layers and under every forbidden
    rule but its own, or this test names it."""
    import tomllib

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
        "contracts"
    ]
    parts = _parts_of_libresh()
    (layers,) = [c for c in contracts if c["type"] == "layers"]
    layered = {name.strip() for layer in layers["layers"] for name in layer.split("|")}
    assert parts - layered == set(), "not in the layers contract"
    for contract in contracts:
        if contract["type"] != "forbidden":
            continue
        owner = OWNERS[contract["name"]]
        missing = parts - set(contract["source_modules"]) - {owner}
        assert missing == set(), f"{contract['name']}: {sorted(missing)} not covered"


def test_layer_contracts_catch_violations(tmp_path: Path) -> None:
    """The same contracts, run on a copy of the package with two forbidden imports added."""
    shutil.copytree(ROOT / "libresh_cli", tmp_path / "libresh_cli")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    state = tmp_path / "libresh_cli" / "lab" / "state.py"
    state.write_text(state.read_text() + "\nimport rich  # a service talking to the terminal\n")
    output = tmp_path / "libresh_cli" / "cli" / "output.py"
    output.write_text(output.read_text() + "\nimport kubernetes  # the CLI skipping the adapter\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = _run([str(BIN / "lint-imports")], cwd=tmp_path, env=env)
    assert result.returncode == 1, result.stdout
    assert "Only the CLI layer talks to the terminal (typer, rich, questionary) BROKEN" in (
        result.stdout
    )
    assert "Only the kube adapter imports the kubernetes client BROKEN" in result.stdout


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["lab", "--help"]])
def test_help_and_version_do_not_import_the_kubernetes_client(argv: list[str]) -> None:
    probe = (
        "import sys\n"
        "from libresh_cli.cli.main import _run\n"
        f"code = _run({argv!r})\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'kubernetes', 'httpx', "
        "'yaml', 'cryptography'})\n"
        "print(code, heavy)\n"
    )
    result = _run([sys.executable, "-c", probe])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "0 []"


def test_the_probe_would_see_the_kubernetes_client() -> None:
    """The check above is not vacuous: a lab command does load the client."""
    probe = "import sys\nfrom libresh_cli.kube import client\nprint('kubernetes' in sys.modules)\n"
    assert _run([sys.executable, "-c", probe]).stdout.strip() == "True"


def test_ruff_is_clean() -> None:
    result = _run([str(BIN / "ruff"), "check", "."])
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean() -> None:
    result = _run([str(BIN / "mypy")])
    assert result.returncode == 0, result.stdout + result.stderr
