from __future__ import annotations

from pathlib import Path

import pytest

from libresh_cli.settings import Paths


@pytest.fixture
def xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    """Point every XDG directory into tmp_path, so tests never touch the user's files."""
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.delenv("LIBRESH_DEBUG", raising=False)
    monkeypatch.delenv("LIBRESH_LAB_BIN_DIR", raising=False)
    return Paths.from_env()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The hostile-input corpus's size and results, when it ran (tests/hostile)."""
    import sys

    harness = sys.modules.get("tests.hostile.harness")
    line = harness.summary() if harness is not None else None
    if line:
        terminalreporter.write_sep("-", line)


@pytest.hookimpl(tryfirst=True)  # before the lab's binaries are built (integration/conftest)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Tests that run real parts (the lab, PostgreSQL, restic, sshd…) get the machine ready
    first: the README's test command is the whole setup (tests/system.py)."""
    if not any("integration" in item.path.parts for item in session.items):
        return
    from tests import system

    problem = system.prepare()
    if problem:
        pytest.exit(problem, returncode=1)


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: absent without it
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    from tests.workers import make_scheduler

    return make_scheduler(config, log)
