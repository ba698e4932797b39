"""`bootstrap local`: the same scripts, run on this machine without SSH."""

from __future__ import annotations

from typing import BinaryIO

from libresh_cli.remote.base import CommandResult, ShellHost, run_process


class LocalHost(ShellHost):
    label = "this machine"

    def _execute(
        self, words: list[str], data: bytes | BinaryIO, timeout: float | None
    ) -> CommandResult:
        self.round_trips += 1
        return run_process(words, data, timeout)

    def close(self) -> None:
        """Nothing to release: no connection was opened."""
