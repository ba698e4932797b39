"""Start-up figures: `libresh --help`, `libresh --version` and `lab up` (cached binaries).

Prints the median wall time of each beside the floor, `python -c "import typer, rich.console"`
(what any typer + rich program pays). Targets: --help within 1.2x the floor; lab up under 20 s.

    .venv/bin/python benchmarks/startup.py [--runs 21] [--lab-runs 3] [--no-lab]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
LIBRESH = str(BIN / "libresh")
HELP_TARGET = 1.2
LAB_UP_TARGET = 20.0


def median_seconds(command: list[str], runs: int, env: dict[str, str] | None = None) -> float:
    subprocess.run(command, capture_output=True, check=True, env=env)  # warm the page cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True, env=env)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def lab_up_seconds(runs: int) -> float:
    times = []
    with tempfile.TemporaryDirectory() as state:
        env = {**os.environ, "XDG_STATE_HOME": state}
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run(
                [LIBRESH, "lab", "up", "--name", "bench"], check=True, env=env, capture_output=True
            )
            times.append(time.perf_counter() - start)
            subprocess.run(
                [LIBRESH, "lab", "down", "--name", "bench"],
                check=True,
                env=env,
                capture_output=True,
            )
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--lab-runs", type=int, default=3)
    parser.add_argument("--no-lab", action="store_true", help="skip the lab up figure")
    args = parser.parse_args()

    floor = median_seconds([sys.executable, "-c", "import typer, rich.console"], args.runs)
    help_time = median_seconds([LIBRESH, "--help"], args.runs)
    version_time = median_seconds([LIBRESH, "--version"], args.runs)
    ratio = help_time / floor
    print(f"floor (import typer, rich.console)  {floor * 1000:7.1f} ms")
    print(
        f"libresh --help                      {help_time * 1000:7.1f} ms  "
        f"{ratio:.2f}x floor  target <= {HELP_TARGET}x  {_verdict(ratio <= HELP_TARGET)}"
    )
    print(
        f"libresh --version                   {version_time * 1000:7.1f} ms  "
        f"{version_time / floor:.2f}x floor"
    )
    if not args.no_lab:
        lab = lab_up_seconds(args.lab_runs)
        print(
            f"libresh lab up (cached binaries)    {lab:7.2f} s   "
            f"target < {LAB_UP_TARGET:.0f} s  {_verdict(lab < LAB_UP_TARGET)}"
        )


def _verdict(met: bool) -> str:
    return "MET" if met else "MISSED"


if __name__ == "__main__":
    main()
