"""Every error libresh expects to meet, each with a message for people and an exit code.

Services raise these; the CLI layer is the one place that turns them into output
(`libresh_cli.cli.failure`). Messages say what is wrong, where, and how to fix it; they
never carry secrets, so they may be printed and logged as they are.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The documented exit codes (README, "Exit codes")."""

    OK = 0
    FAILURE = 1
    BAD_INPUT = 2
    UNREACHABLE = 3
    NOT_FOUND = 4
    CONFLICT = 5
    PREREQUISITE_MISSING = 6
    INTERNAL = 70
    INTERRUPTED = 130


class LibreshError(Exception):
    """Root of libresh's errors: a message, an optional hint on how to fix it, an exit code."""

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if self.hint is None else f"{self.message}\n{self.hint}"


class BadInputError(LibreshError):
    """An option, argument, file or field has a value libresh cannot use."""

    exit_code = ExitCode.BAD_INPUT


class UnreachableError(LibreshError):
    """A cluster, host or service did not answer."""

    exit_code = ExitCode.UNREACHABLE


class NotFoundError(LibreshError):
    """The thing named does not exist."""

    exit_code = ExitCode.NOT_FOUND


class ConflictError(LibreshError):
    """The thing asked for collides with something already there (a name, a port, a run)."""

    exit_code = ExitCode.CONFLICT


class PrerequisiteError(LibreshError):
    """A tool, file or setting libresh needs is missing (on this machine or the cluster)."""

    exit_code = ExitCode.PREREQUISITE_MISSING


class OperationFailedError(LibreshError):
    """Work was attempted and did not succeed (a process died, a wait timed out)."""

    exit_code = ExitCode.FAILURE


class InterruptedRunError(LibreshError):
    """Ctrl-C or SIGTERM stopped work that leaves something to say: what state it is in and
    how to go on."""

    exit_code = ExitCode.INTERRUPTED
