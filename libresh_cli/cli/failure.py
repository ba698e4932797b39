"""The one place where errors become output and exit codes.

Expected errors (LibreshError) print their message and hint. Anything else is a bug: we print
a short line and where the full traceback was written, never the traceback itself unless
`--debug` (or LIBRESH_DEBUG=1) asks for it. Tracebacks are written without local variables,
so values such as passwords held in locals cannot end up in the file.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path

from libresh_cli.errors import ExitCode, LibreshError
from libresh_cli.settings import Paths, write_private_file


def json_requested(argv: list[str]) -> bool:
    """Whether the command line asks for JSON output (-o json, --output json, --output=json,
    -ojson), wherever the option stands."""
    for index, arg in enumerate(argv):
        if arg in ("-o", "--output") and argv[index + 1 : index + 2] == ["json"]:
            return True
        if arg in ("--output=json", "-ojson"):
            return True
    return False


def print_json_failure(message: str, exit_code: int, hint: str | None = None) -> None:
    """One JSON document on stdout, so a script reading -o json output can parse a failure
    too (the message also goes to stderr, for people)."""
    import json

    document = {"error": message, "exit_code": exit_code, "hint": hint}
    sys.stdout.write(json.dumps(document) + "\n")


def debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("LIBRESH_DEBUG", "") not in ("", "0")


def print_error(message: str, hint: str | None = None) -> None:
    from libresh_cli.cli.terminal import console, marked

    err = console(stderr=True)
    err.print(marked("Error:", "bold red", message), soft_wrap=True)
    if hint:
        err.print(hint, style="dim", soft_wrap=True)


def report_libresh_error(error: LibreshError) -> int:
    print_error(error.message, error.hint)
    return int(error.exit_code)


def write_crash_report(error: BaseException, paths: Paths | None = None) -> Path | None:
    """Write the traceback (no locals) to a 0600 file under the state directory."""
    paths = paths or Paths.from_env()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = paths.state / "crash" / f"libresh-{stamp}-{os.getpid()}.log"
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    try:
        write_private_file(target, f"libresh {' '.join(sys.argv[1:2])}\n{text}")
    except OSError:
        return None
    return target


def report_unexpected_error(error: BaseException) -> int:
    where = write_crash_report(error)
    detail = f"the full traceback is in {where}" if where else "no crash report could be written"
    print_error(
        f"libresh stopped on an unexpected {type(error).__name__}; this is a bug in libresh.",
        f"{detail}.\nRun again with --debug to see it here, and please report it.",
    )
    return int(ExitCode.INTERNAL)
