"""The test suite's time: the whole of it, each module's share and the slowest tests.

Runs README's test command (`.venv/bin/pytest`, with any arguments given after `--`) with a
JUnit report, or reads one that a run already wrote (`--junit FILE`), and prints:
- the wall time of the run (when this script ran it) against CI's target (30 minutes on
  2 cores: the real-node issue's; CI's limit is 90);
- the time of each module (setup, call and teardown of its tests, as JUnit counts them), the
  largest first;
- the slowest tests.

    .venv/bin/python benchmarks/suite.py [--top 25] [-- PYTEST-ARGS...]
    .venv/bin/python benchmarks/suite.py --junit report.xml
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_MINUTES = 30.0


def test_times(report: Path) -> dict[str, float]:
    """Seconds of each test case in a JUnit report, by `module::test`."""
    times: dict[str, float] = {}
    # The report is pytest's own, written by this machine's run: not untrusted input.
    for case in ElementTree.parse(report).getroot().iter("testcase"):  # noqa: S314
        module = case.get("classname", "").split(".")
        # classname is the dotted module path, then the class when the test is in one.
        name = "/".join(part for part in module if part) + "::" + case.get("name", "")
        times[name] = times.get(name, 0.0) + float(case.get("time", "0") or 0)
    return times


def module_of(test: str) -> str:
    path = test.split("::", 1)[0].split("/")
    # tests/integration/test_x(/Class): the module is the first part starting with test_.
    for index, part in enumerate(path):
        if part.startswith("test_"):
            return "/".join(path[: index + 1])
    return "/".join(path)


def print_report(times: dict[str, float], top: int) -> None:
    modules: dict[str, float] = defaultdict(float)
    for test, seconds in times.items():
        modules[module_of(test)] += seconds
    total = sum(times.values())
    print(f"tests: {len(times)}, their time: {total / 60:.1f} min")
    print(f"\nmodules (top {top}):")
    for module, seconds in sorted(modules.items(), key=lambda item: -item[1])[:top]:
        print(f"  {seconds:8.1f} s  {100 * seconds / total:5.1f} %  {module}")
    print(f"\ntests (top {top}):")
    for test, seconds in sorted(times.items(), key=lambda item: -item[1])[:top]:
        print(f"  {seconds:8.1f} s  {test}")


def run_suite(arguments: list[str], report: Path) -> tuple[int, float]:
    command = [str(REPO / ".venv" / "bin" / "pytest"), f"--junitxml={report}", *arguments]
    started = time.monotonic()
    code = subprocess.run(command, cwd=REPO, check=False).returncode
    return code, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--junit", type=Path, help="read this report instead of running")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("pytest_args", nargs="*", help="after --: passed to pytest")
    args = parser.parse_args()
    if args.junit is not None:
        print_report(test_times(args.junit), args.top)
        return
    with tempfile.TemporaryDirectory() as work:
        report = Path(work) / "junit.xml"
        code, seconds = run_suite(args.pytest_args, report)
        print_report(test_times(report), args.top)
    verdict = "ok" if seconds < TARGET_MINUTES * 60 else "OVER"
    print(f"\nsuite wall time: {seconds / 60:.1f} min (target < {TARGET_MINUTES:.0f}: {verdict})")
    sys.exit(code)


if __name__ == "__main__":
    main()
