"""install.sh for a person: its own venv under XDG_DATA_HOME, a link in ~/.local/bin, re-runnable.
Runs the real script (real venv, real pip) in a throw-away HOME."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from libresh_cli import __version__

ROOT = Path(__file__).resolve().parents[2]


def install(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "install.sh"), *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


def person(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "LIBRESH_INSTALLER": "venv",
        # the real pip cache, so the test does not download every wheel again
        "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip")),
    }


def test_install_makes_a_venv_links_the_command_and_can_run_again(tmp_path: Path) -> None:
    env = person(tmp_path)
    link = Path(env["HOME"]) / ".local" / "bin" / "libresh"
    for _ in range(2):  # the second run updates in place
        result = install(env)
        assert result.returncode == 0, result.stderr
        assert f"libresh {__version__} is installed as {link}" in result.stdout
    assert link.is_symlink()
    assert (
        link.resolve()
        == (Path(env["XDG_DATA_HOME"]) / "libresh" / "venv" / "bin" / "libresh").resolve()
    )
    assert "is not on your PATH" in result.stdout  # ~/.local/bin of this HOME is not
    version = subprocess.run([str(link), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout == f"libresh {__version__}\n"


def test_install_refuses_an_old_python_and_says_what_to_do(tmp_path: Path) -> None:
    old = tmp_path / "python3.9"
    old.write_text('#!/bin/sh\ncase "$1" in -V) echo "Python 3.9.2";; *) exit 1;; esac\n')
    old.chmod(0o755)
    result = install({**person(tmp_path), "PYTHON": str(old)})
    assert result.returncode == 1
    assert "libresh needs Python 3.11 or newer; Python 3.9.2 was found" in result.stderr
    assert "PYTHON=python3.11 ./install.sh" in result.stderr


def test_install_without_python_names_the_package(tmp_path: Path) -> None:
    result = install({**person(tmp_path), "PYTHON": "no-such-python"})
    assert result.returncode == 1
    assert "sudo apt install python3 python3-venv" in result.stderr


def test_install_rejects_unknown_options(tmp_path: Path) -> None:
    result = install(person(tmp_path), "--global")
    assert result.returncode == 2
    assert "unknown option '--global'" in result.stderr
