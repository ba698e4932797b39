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


def data_format_requested(argv: list[str]) -> str | None:
    """ "json" or "yaml" when the command line asks for it (-o json, --output yaml,
    --output=json, -ojson), wherever the option stands; None for tables."""
    for index, arg in enumerate(argv):
        if arg in ("-o", "--output") and argv[index + 1 : index + 2] in (["json"], ["yaml"]):
            return argv[index + 1]
        for prefix in ("--output=", "-o"):
            if arg in (f"{prefix}json", f"{prefix}yaml"):
                return arg.removeprefix(prefix)
    return None


def print_failure_document(
    data_format: str, message: str, exit_code: int, hint: str | None = None
) -> None:
    """One document on stdout, in the format asked for, so a script reading -o json (or
    yaml) output can parse a failure too (the message also goes to stderr, for people)."""
    document = {"error": message, "exit_code": exit_code, "hint": hint}
    if data_format == "yaml":
        import yaml

        sys.stdout.write(yaml.safe_dump(document, sort_keys=False))
    else:
        import json

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
