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
