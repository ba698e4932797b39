"""Every catalog app installed on one private lab cluster (kwok nodes; started and stopped by
this script), one instance each, with the `libresh install` command as people run it.

Prints one row per app:
- install: the command's wall time on the client (render, plan, apply, and the wait until
  the instance is healthy: on kwok nodes pods are ready as soon as they are scheduled, so
  the wait is libresh's own polling, not the app's start);
- memory requested: what `catalog list -o json` states (the newest version rendered with its
  embedded services) and what the cluster holds after the install (the containers' requests
  of the instance's Deployments and StatefulSets, times their replicas; init containers and
  Jobs left out, as catalog list does);
then the sums, and the uninstall's wall time (in reverse order: an app another one uses is
uninstalled after it).

Apps that use others come after them (Collabora before Nextcloud, Synapse before Element), so
each finds the only instance it can use.

    .venv/bin/python benchmarks/catalog_install.py [--apps nextcloud,collabora] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from libresh_cli.apps.catalog_search import quantity_bytes  # noqa: E402
from libresh_cli.kube.client import KubeClient  # noqa: E402
from libresh_cli.kube.connection import KubeTarget  # noqa: E402
from libresh_cli.lab.cluster import LabSpec, lab_down, lab_up  # noqa: E402
from libresh_cli.lab.state import kubeconfig_path  # noqa: E402
from libresh_cli.progress import SilentReporter  # noqa: E402
from libresh_cli.settings import Paths  # noqa: E402

LIBRESH = str(Path(sys.executable).parent / "libresh")
LAB = "bench-catalog"
DOMAIN = "bench.example.org"
MIB = 1024 * 1024
# The order of install: an app before those that use it (app.yaml `uses`; Element is set to
# a homeserver by its settings). Apps of the catalog not named here come last, by name.
ORDER = ["collabora", "nextcloud", "synapse", "element", "keycloak"]
# Settings an app needs besides its domain (parameters without a default).
SETTINGS = {
    "synapse": ["--set", f"server_name={DOMAIN}"],
    "element": [
        "--set", f"homeserver_url=https://synapse.{DOMAIN}", "--set", f"server_name={DOMAIN}"
    ],
}  # fmt: skip


@dataclass
class Row:
    app: str
    install_s: float
    stated_bytes: int
    cluster_bytes: int
    ok: bool
    error: str = ""


def run_libresh(env: dict[str, str], kubeconfig: Path, *args: str) -> tuple[float, Any]:
    start = time.perf_counter()
    result = subprocess.run(
        [LIBRESH, "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    return time.perf_counter() - start, result


def stated_memory(env: dict[str, str], kubeconfig: Path) -> dict[str, int]:
    """`catalog list -o json`: each app's memory request, in bytes."""
    _, result = run_libresh(env, kubeconfig, "catalog", "list", "-o", "json")
    if result.returncode != 0:
        raise SystemExit(f"catalog list failed: {result.stderr}")
    return {row["name"]: int(row["memory_request_bytes"] or 0) for row in json.loads(result.stdout)}


def install_order(apps: list[str]) -> list[str]:
    first = [app for app in ORDER if app in apps]
    return first + sorted(app for app in apps if app not in first)


def cluster_memory(kube: KubeClient, namespace: str) -> int:
    """The memory the instance's running containers request, read back from the cluster."""
    total = 0
    for kind in ("Deployment", "StatefulSet"):
        for workload in kube.list("apps/v1", kind, namespace):
            replicas = int((workload.get("spec") or {}).get("replicas", 1) or 0)
            pod = workload["spec"]["template"]["spec"]
            for container in pod.get("containers", []):
                requests = (container.get("resources") or {}).get("requests") or {}
                total += replicas * quantity_bytes(requests.get("memory", 0))
    return total


def install_all(
    env: dict[str, str], kubeconfig: Path, kube: KubeClient, stated: dict[str, int]
) -> list[Row]:
    rows = []
    for app in install_order(list(stated)):
        args = ["install", app, "--name", app, "--domain", f"{app}.{DOMAIN}"]
        seconds, result = run_libresh(env, kubeconfig, *args, *SETTINGS.get(app, []), "--yes")
        ok = result.returncode == 0
        last = (result.stderr.strip().splitlines() or [""])[-1]
        rows.append(
            Row(app, seconds, stated[app], cluster_memory(kube, app), ok, "" if ok else last)
        )
        print(f"  {app:<12} {seconds:6.1f} s  {'ok' if ok else 'FAILED: ' + last}", flush=True)
    return rows


def uninstall_all(env: dict[str, str], kubeconfig: Path, rows: list[Row]) -> float:
    start = time.perf_counter()
    for row in reversed([r for r in rows if r.ok]):
        _, result = run_libresh(env, kubeconfig, "uninstall", row.app, "--yes")
        if result.returncode != 0:
            print(f"  uninstall {row.app} failed: {result.stderr.strip()}")
    return time.perf_counter() - start


def print_table(rows: list[Row]) -> None:
    print()
    print(f"{'app':<12} {'install (s)':>11} {'stated (MiB)':>13} {'on cluster (MiB)':>17}  result")
    for r in rows:
        result = "ok" if r.ok else f"failed: {r.error}"
        print(
            f"{r.app:<12} {r.install_s:>11.1f} {r.stated_bytes / MIB:>13.0f} "
            f"{r.cluster_bytes / MIB:>17.0f}  {result}"
        )
    print(
        f"{'total':<12} {sum(r.install_s for r in rows):>11.1f} "
        f"{sum(r.stated_bytes for r in rows) / MIB:>13.0f} "
        f"{sum(r.cluster_bytes for r in rows) / MIB:>17.0f}  "
        f"{sum(r.ok for r in rows)}/{len(rows)} installed"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", help="comma-separated apps (default: the whole catalog)")
    parser.add_argument("--keep", action="store_true", help="no uninstall before lab down")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as state:
        env = {**os.environ, "XDG_STATE_HOME": state, "NO_COLOR": "1", "COLUMNS": "200"}
        paths = Paths.from_env(env)
        start = time.perf_counter()
        lab_up(paths, LabSpec(name=LAB, nodes=1), SilentReporter())
        print(f"lab up (kwok, 1 node)  {time.perf_counter() - start:6.1f} s", flush=True)
        try:
            kubeconfig = kubeconfig_path(paths, LAB)
            stated = stated_memory(env, kubeconfig)
            if args.apps:
                wanted = args.apps.split(",")
                unknown = sorted(set(wanted) - set(stated))
                if unknown:
                    raise SystemExit(f"--apps: not in the catalog: {', '.join(unknown)}")
                stated = {app: stated[app] for app in wanted}
            with KubeClient.connect(KubeTarget(kubeconfig)) as kube:
                rows = install_all(env, kubeconfig, kube, stated)
            print_table(rows)
            if not args.keep:
                print(f"\nuninstall, all apps    {uninstall_all(env, kubeconfig, rows):6.1f} s")
        finally:
            lab_down(paths, LAB, SilentReporter())


if __name__ == "__main__":
    main()
