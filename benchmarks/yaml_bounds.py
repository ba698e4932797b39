"""Bounded YAML figures: how fast and in how much memory hostile YAML is refused.

For each input (a 9x9 alias bomb, 5000-deep flow and block nesting, a 1 MiB flat list past the
node limit): the parser alone (median time, tracemalloc peak), and `libresh catalog validate`
on an app whose app.yaml is that input, in a process of its own (wall time with start-up, peak
resident memory from getrusage). Targets: refused in < 1 s and < 100 MiB.

    .venv/bin/python benchmarks/yaml_bounds.py [--runs 5]
"""

from __future__ import annotations

import argparse
import itertools
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from libresh_cli import yamlfile

BIN = Path(sys.executable).parent
SECONDS_TARGET = 1.0
MIB_TARGET = 100.0
LETTERS = "abcdefghi"


def inputs() -> dict[str, str]:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
        for previous, name in itertools.pairwise(LETTERS)
    )
    return {
        "alias bomb 9x9": bomb,
        "flow nesting 5000": "[" * 5000 + "]" * 5000,
        "block nesting 5000": "- " * 5000 + "x",
        "flat list 1 MiB": "[" + ",".join(["1"] * (yamlfile.MAX_FILE_BYTES // 2 - 2)) + "]",
    }


def in_process(text: str, runs: int) -> tuple[float, float, str]:
    """Median time over `runs` (no tracing), then the peak of one traced run."""

    def parse() -> str:
        try:
            yamlfile.load(text, source="benchmark")
        except yamlfile.YamlRefusedError as error:
            return error.reason
        return "ACCEPTED"

    times = []
    for _ in range(runs):
        started = time.perf_counter()
        parse()
        times.append(time.perf_counter() - started)
    tracemalloc.start()
    reason = parse()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return statistics.median(times), peak, reason


def whole_command(text: str, runs: int) -> tuple[float, float, int]:
    times, code = [], 0
    with tempfile.TemporaryDirectory() as folder:
        app = Path(folder) / "evil"
        app.mkdir()
        (app / "app.yaml").write_text(text)
        for _ in range(runs):
            started = time.perf_counter()
            result = subprocess.run(
                [str(BIN / "libresh"), "catalog", "validate", str(app)],
                capture_output=True,
                check=False,
            )
            times.append(time.perf_counter() - started)
            code = result.returncode
    # ru_maxrss: KiB on Linux; the largest of the children so far (each run is alike).
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return statistics.median(times), peak, code


def mark(value: float, target: float) -> str:
    return "ok" if value < target else "OVER"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"targets: refused in < {SECONDS_TARGET:.0f} s, peak < {MIB_TARGET:.0f} MiB")
    print(f"{'input':<20} {'where':<10} {'seconds':>9} {'peak MiB':>9}  result")
    for name, text in inputs().items():
        seconds, mib, reason = in_process(text, args.runs)
        print(
            f"{name:<20} {'parser':<10} {seconds:>9.4f} {mib:>9.1f}  "
            f"{reason} [time {mark(seconds, SECONDS_TARGET)}, memory {mark(mib, MIB_TARGET)}]"
        )
        seconds, mib, code = whole_command(text, args.runs)
        print(
            f"{name:<20} {'libresh':<10} {seconds:>9.4f} {mib:>9.1f}  "
            f"exit {code} [time {mark(seconds, SECONDS_TARGET)}, memory {mark(mib, MIB_TARGET)}]"
        )


if __name__ == "__main__":
    main()
