"""What the bootstrap service needs from a host, wherever it is: run a script, send a file."""

from __future__ import annotations

import os
import subprocess
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum
from typing import BinaryIO, Protocol

from libresh_cli.errors import OperationFailedError, PrerequisiteError


class Privilege(StrEnum):
    """How commands that need root run: the login is root, or `sudo -n` works, or neither."""

    ROOT = "root"
    SUDO = "sudo"
    NONE = "none"


@dataclass(frozen=True)
class CommandResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def stderr_tail(self, lines: int = 8) -> str:
        return "\n".join(self.stderr.strip().splitlines()[-lines:])


class Host(Protocol):
    """A machine commands run on. Scripts are sent on stdin (`sh -s`), so nothing they hold
    appears on a command line."""

    label: str
    privilege: Privilege
    round_trips: int

    def run(
        self,
        script: str,
        *,
        privileged: bool = False,
        timeout: float | None = None,
    ) -> CommandResult: ...

    def send(
        self, data: BinaryIO, command: str, *, privileged: bool = True, timeout: float | None = None
    ) -> CommandResult:
        """Stream `data` to the stdin of `command` (a fixed command without secrets)."""
        ...

    def close(self) -> None: ...


class ShellHost(ABC):
    """A Host whose commands are words for `sh`, run by `_execute` (locally, or over SSH)."""

    label: str

    def __init__(self) -> None:
        self.privilege = Privilege.NONE  # known after the preflight
        self.round_trips = 0

    def _as_root(self, privileged: bool) -> list[str]:
        return ["sudo", "-n"] if privileged and self.privilege is Privilege.SUDO else []

    def run(
        self, script: str, *, privileged: bool = False, timeout: float | None = None
    ) -> CommandResult:
        return self._execute([*self._as_root(privileged), "sh", "-s"], script.encode(), timeout)

    def send(
        self, data: BinaryIO, command: str, *, privileged: bool = True, timeout: float | None = None
    ) -> CommandResult:
        return self._execute([*self._as_root(privileged), "sh", "-c", command], data, timeout)

    @abstractmethod
    def _execute(
        self, words: list[str], data: bytes | BinaryIO, timeout: float | None
    ) -> CommandResult: ...

    @abstractmethod
    def close(self) -> None: ...


def run_process(argv: list[str], data: bytes | BinaryIO, timeout: float | None) -> CommandResult:
    """Run `argv` with `data` on its stdin (bytes, or a file streamed as it is read)."""
    try:
        completed = subprocess.run(
            argv,
            input=data if isinstance(data, bytes) else None,
            stdin=None if isinstance(data, bytes) else data,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise OperationFailedError(f"A step did not finish within {timeout:.0f} s.") from error
    except (FileNotFoundError, PermissionError) as error:
        # An empty or wrong PATH (cron, a stripped environment) leaves even `sh` unfound.
        search = os.environ.get("PATH")
        where = "PATH is empty" if search == "" else f"PATH is {search!r}" if search else ""
        raise PrerequisiteError(
            f"Cannot run {argv[0]}: {error.strerror}" + (f" ({where})." if where else "."),
            hint="Run libresh with a PATH that holds the system's commands, e.g. "
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin.",
        ) from None
    return CommandResult(
        completed.returncode,
        completed.stdout.decode(errors="replace"),
        completed.stderr.decode(errors="replace"),
    )
