"""The hostile-input corpus's machinery: a case is a command line, the files it reads and its
environment; it runs as the real `libresh` in a process of its own, with a time limit and a
memory cap, and must be refused with the documented exit code, a message naming what is wrong
(file, field or option), and no traceback (issue 14, finding 16)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from libresh_cli.errors import ExitCode

LIBRESH = Path(sys.executable).parent / "libresh"
SECONDS = 10.0  # per case; the slowest refusals take well under a second plus start-up
MEMORY_KIB = 1024 * 1024  # 1 GiB of address space: libresh starts in ~40 MiB resident
WORKERS = 2
WALL_SECONDS = 0.0  # of the last run_all, for the summary
TMP = "{tmp}"  # replaced in argv, file contents, environment and expected text


@dataclass(frozen=True)
class Case:
    """One hostile input. `names` is text the message must hold: the file, field or option
    that is wrong (whitespace is normalised, the console wraps long lines)."""

    id: str
    argv: tuple[str, ...]
    names: str
    files: Mapping[str, str | bytes] = field(default_factory=dict)
    env: Mapping[str, str | None] = field(default_factory=dict)
    code: int = ExitCode.BAD_INPUT
    modes: Mapping[str, int] = field(default_factory=dict)  # file -> chmod
    links: Mapping[str, str] = field(default_factory=dict)  # link -> target
    fifos: tuple[str, ...] = ()  # named pipes nobody writes to
    also: tuple[str, ...] = ()  # more text the message must hold
    absent: tuple[str, ...] = ()  # text it must not hold (a password given)


@dataclass(frozen=True)
class Outcome:
    case: Case
    tmp: Path  # the case's folder
    code: int | None  # None: killed at the time limit
    output: str  # stdout and stderr, whitespace normalised
    seconds: float

    @property
    def hung(self) -> bool:
        return self.code is None

    @property
    def traceback(self) -> bool:
        return "Traceback" in self.output or self.code == ExitCode.INTERNAL

    @property
    def accepted(self) -> bool:
        return self.code == ExitCode.OK

    def missing(self) -> list[str]:
        wanted = (self.case.names, *self.case.also)
        return [w for w in wanted if _normal(_fill(w, self.tmp)) not in self.output]

    def leaked(self) -> list[str]:
        return [a for a in self.case.absent if _fill(a, self.tmp) in self.output]

    def problems(self) -> list[str]:
        found = []
        if self.hung:
            found.append(f"still running after {SECONDS:g} s")
        elif self.code != self.case.code:
            found.append(f"exit code {self.code}, expected {self.case.code}")
        if self.traceback:
            found.append("a traceback / an internal error")
        if not self.hung and self.missing():
            found.append(f"the message does not hold {self.missing()}")
        if self.leaked():
            found.append(f"the message shows {self.leaked()}")
        return found


# Every result of this session, for the summary at the end (tests/conftest.py).
RESULTS: dict[str, Outcome] = {}


def _normal(text: str) -> str:
    return " ".join(text.split())


def _fill(text: str, tmp: Path) -> str:
    return text.replace(TMP, str(tmp))


def prepare(case: Case, tmp: Path) -> None:
    """Write the case's files (and links) under tmp, with a private home and XDG folders."""
    for folder in ("home", "config", "state", "data", "cache"):
        (tmp / folder).mkdir(parents=True, exist_ok=True)
    for name, content in case.files.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(_fill(content, tmp))
    for name, target in case.links.items():
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).symlink_to(_fill(target, tmp))
    for name in case.fifos:
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(tmp / name)
    for name, mode in case.modes.items():
        (tmp / name).chmod(mode)


def environment(case: Case, tmp: Path) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp / "home"),
        "XDG_CONFIG_HOME": str(tmp / "config"),
        "XDG_STATE_HOME": str(tmp / "state"),
        "XDG_DATA_HOME": str(tmp / "data"),
        "XDG_CACHE_HOME": str(tmp / "cache"),
        "NO_COLOR": "1",
        "COLUMNS": "200",
        "LANG": "C.UTF-8",
        "TMPDIR": str(tmp),
    }
    for key, value in case.env.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = _fill(value, tmp)
    return env


def run(case: Case, tmp: Path) -> Outcome:
    """The case as a command: `ulimit -v` caps the process's address space (the shell then
    execs libresh itself), stdin is empty (no terminal: nobody answers a prompt)."""
    prepare(case, tmp)
    argv = [_fill(arg, tmp) for arg in case.argv]
    command = f'ulimit -v {MEMORY_KIB} && exec "$@"'
    started = time.monotonic()
    try:
        done = subprocess.run(
            ["/bin/sh", "-c", command, "sh", str(LIBRESH), *argv],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=SECONDS,
            env=environment(case, tmp),
            cwd=tmp,
            check=False,
        )
    except subprocess.TimeoutExpired as expired:
        late = (expired.stdout or b"") + (expired.stderr or b"")
        return Outcome(case, tmp, None, _normal(late.decode(errors="replace")), SECONDS)
    seconds = time.monotonic() - started
    output = (done.stdout + done.stderr).decode(errors="replace")
    return Outcome(case, tmp, done.returncode, _normal(output), seconds)


def run_all(cases: Iterable[Case], root: Path) -> dict[str, Outcome]:
    """Every case in a folder of its own, two at a time."""
    listed = list(cases)
    ids = [case.id for case in listed]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    assert not duplicates, f"case ids used twice: {duplicates}"
    with ThreadPoolExecutor(WORKERS) as pool:
        outcomes = list(
            pool.map(lambda n: run(listed[n], root / f"case-{n:03d}"), range(len(listed)))
        )
    for outcome in outcomes:
        RESULTS[outcome.case.id] = outcome
    return {outcome.case.id: outcome for outcome in outcomes}


def describe(outcome: Outcome) -> str:
    argv = shlex.join(outcome.case.argv)
    return f"libresh {argv}\nexit {outcome.code} in {outcome.seconds:.2f} s:\n{outcome.output}"


def summary() -> str | None:
    """One line for the end of the test run, computed from the results."""
    if not RESULTS:
        return None
    outcomes = list(RESULTS.values())
    clean = sum(1 for o in outcomes if not o.problems())
    tracebacks = sum(1 for o in outcomes if o.traceback)
    hangs = sum(1 for o in outcomes if o.hung)
    accepted = sum(1 for o in outcomes if o.accepted and o.case.code != ExitCode.OK)
    return (
        f"hostile-input corpus: {len(RESULTS)} cases, {clean} refused cleanly, "
        f"{tracebacks} tracebacks, {hangs} hangs, {accepted} wrongly accepted "
        f"({WALL_SECONDS:.0f} s)"
    )
