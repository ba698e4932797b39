"""HA cluster creation figures: 3 servers + 3 agents, against the FAKE Hetzner API (zero
latency: actions finish at the first poll) and six real sshd test hosts (network namespaces,
needs root) with the k3s installer stand-in, each join taking --join-seconds (k3s' own start-up,
which libresh cannot speed up).

Server creations are spread and retried as `cluster create` does them (hetzner/cloud.py,
CREATION_SPREAD); the cluster file's api_access is the default (firewall: no load balancer).
The same creation is run twice on fresh hosts: joins concurrent (as `cluster create` does),
then forced one after another. Target: the concurrent k3s phase takes at most the first
server's time plus one join's time, plus 20%.

    sudo .venv/bin/python benchmarks/ha.py [--join-seconds 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from libresh_cli.cluster.bootstrap import InstallSource, SourceKind  # noqa: E402
from libresh_cli.cluster.hetzner.create import create  # noqa: E402
from libresh_cli.cluster.hetzner.report import CreateOptions, CreateReport  # noqa: E402
from libresh_cli.cluster.spec import load_spec  # noqa: E402
from libresh_cli.hetzner.cloud import HetznerCloud  # noqa: E402
from libresh_cli.progress import SilentReporter  # noqa: E402
from libresh_cli.settings import Paths  # noqa: E402
from tests.integration.hacluster import ha_lab  # noqa: E402

HOSTS = [81, 82, 83, 84, 85, 86]
MARGIN = 1.2


def run(concurrent: bool, join_seconds: float) -> tuple[float, CreateReport]:
    with (
        tempfile.TemporaryDirectory() as scratch,
        ha_lab(HOSTS, Path(scratch), polls_to_finish=1) as lab,
    ):
        for host in lab.hosts:
            (host.var_lib / "rancher").mkdir(exist_ok=True)
            (host.var_lib / "rancher" / "standin-join-seconds").write_text(str(join_seconds))
        os.environ["XDG_CONFIG_HOME"] = str(lab.config_home)
        spec = load_spec(lab.cluster_file("bench", servers=3, agents=3))
        cloud = HetznerCloud(lab.token, "the benchmark", lab.fake.endpoint)
        options = CreateOptions(
            source=InstallSource(SourceKind.SCRIPT, lab.hosts[0].standin_installer()),
            concurrent_joins=concurrent,
        )
        started = time.perf_counter()
        report = create(
            cloud, spec, Paths.from_env(), SilentReporter(), options, lab.hosts[0].ssh_config
        )
        return time.perf_counter() - started, report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--join-seconds", type=float, default=2.0)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (test hosts live in network namespaces)")
    figures = {}
    for label, concurrent in (("concurrent joins", True), ("sequential joins", False)):
        wall, report = run(concurrent, args.join_seconds)
        seconds = report.seconds
        figures[label] = (wall, seconds)
        print(
            f"{label:<17} create {wall:6.2f} s  cloud {seconds['cloud']:5.2f} s  "
            f"k3s {seconds['k3s']:6.2f} s  (first server {seconds['first_server']:5.2f} s, "
            f"5 joins {seconds['joins']:5.2f} s)"
        )
    concurrent_k3s = figures["concurrent joins"][1]
    sequential = figures["sequential joins"][1]
    one_join = sequential["joins"] / 5
    target = (concurrent_k3s["first_server"] + one_join) * MARGIN
    k3s_phase = concurrent_k3s["first_server"] + concurrent_k3s["joins"]
    verdict = "met" if k3s_phase <= target else "MISSED"
    print(
        f"k3s phase, concurrent: {k3s_phase:.2f} s; target first server + one join + 20% = "
        f"{target:.2f} s ({one_join:.2f} s a join, from the sequential run): {verdict}"
    )
    return 0 if verdict == "met" else 1


if __name__ == "__main__":
    sys.exit(main())
