"""Bootstrap figures, against a real sshd test host (network namespaces, needs root) given
the k3s installer stand-in (tests/standin/k3s_standin.py):

1. client-side overhead of a first bootstrap: wall time of `libresh bootstrap ssh` minus the
   time spent waiting on the host (installer, kubeconfig, node Ready) — what libresh itself
   costs. Target: under 2 s.
2. SSH connections (logins counted in sshd's log) and round trips (commands run on the host)
   per bootstrap. Target: one connection.
3. the same for re-runs on the finished host (nothing to do), median of --runs.

    sudo .venv/bin/python benchmarks/bootstrap.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration import sshhosts  # noqa: E402
from tests.integration.sshhosts import TestHost  # noqa: E402

LIBRESH = str(Path(sys.executable).parent / "libresh")
OVERHEAD_TARGET = 2.0
HOST_INDEX = 60


def bootstrap(host: TestHost, *extra: str) -> tuple[float, dict[str, object], int]:
    """Wall seconds, the JSON report, and the logins it took."""
    logins = host.accepted_logins()
    argv = [LIBRESH, "-o", "json", "bootstrap", "ssh", f"root@{host.address}",
            "--install-script", str(host.standin_installer()), *extra]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(argv, env=host.cli_env(), capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"bootstrap failed ({done.returncode}):\n{done.stderr}")
    return wall, json.loads(done.stdout), host.accepted_logins() - logins


def line(label: str, wall: float, report: dict[str, object], logins: int) -> float:
    seconds = report["seconds"]
    assert isinstance(seconds, dict)
    overhead = wall - float(seconds["host"])
    print(
        f"{label:<22} wall {wall:6.2f} s  on the host {float(seconds['host']):6.2f} s  "
        f"client overhead {overhead:5.2f} s  connections {logins}  "
        f"round trips {report['round_trips']}"
    )
    return overhead


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="re-runs to take the median of")
    args = parser.parse_args()
    problem = sshhosts.available()
    if problem:
        raise SystemExit(f"Cannot make a test host: {problem}")
    with tempfile.TemporaryDirectory() as scratch:
        host = TestHost(HOST_INDEX, Path(scratch) / "host", Path(scratch) / "client")
        host.create()
        try:
            wall, report, logins = bootstrap(host, "--accept-new-host-key")
            first = line("first bootstrap", wall, report, logins)
            reruns = [bootstrap(host) for _ in range(args.runs)]
            medians = sorted(reruns, key=lambda r: r[0])[len(reruns) // 2]
            again = line(f"re-run (median of {args.runs})", *medians)
            connections = {logins} | {r[2] for r in reruns}
        finally:
            host.destroy()
    worst = max(first, again)
    verdict = "met" if worst < OVERHEAD_TARGET and connections == {1} else "NOT met"
    print(
        f"target: client overhead < {OVERHEAD_TARGET:.0f} s and one connection per bootstrap: "
        f"{verdict} (worst overhead {worst:.2f} s, connections {sorted(connections)}; "
        f"re-run walls {statistics.median(r[0] for r in reruns):.2f} s median)"
    )


if __name__ == "__main__":
    main()
