"""App figures on a private lab cluster (started and stopped by this script):

1. client-side time of installing Nextcloud (render, plan with the server's dry run, apply;
   waits for health excluded) beside `kubectl apply --server-side -f` of the same rendered
   objects. Target: ratio <= 1.0.
2. `libresh list` with 50 instances: median time and API calls. Target: < 0.5 s, and the same
   number of calls as with one instance.

    .venv/bin/python benchmarks/apps.py [--runs 5] [--instances 50]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from libresh_cli.apps.catalog import Catalog  # noqa: E402
from libresh_cli.apps.inventory import list_instances  # noqa: E402
from libresh_cli.apps.lifecycle import plan_install  # noqa: E402
from libresh_cli.apps.params import GivenValues  # noqa: E402
from libresh_cli.apps.record import InstanceRecord, refs_of, save_record  # noqa: E402
from libresh_cli.kube.client import KubeClient  # noqa: E402
from libresh_cli.kube.connection import KubeTarget  # noqa: E402
from libresh_cli.lab.cluster import LabSpec, lab_down, lab_up  # noqa: E402
from libresh_cli.lab.state import kubeconfig_path  # noqa: E402
from libresh_cli.progress import SilentReporter  # noqa: E402
from libresh_cli.settings import Paths  # noqa: E402

DEMO_CATALOG = ROOT / "tests" / "fixtures" / "catalog"


def given(domain: str) -> GivenValues:
    values = GivenValues()
    values.add("domain", domain, "--domain")
    return values


def install_without_waiting(
    kube: KubeClient, catalog: Catalog, app: str, name: str, version: str | None = None
) -> list[dict[str, object]]:
    """What `libresh install` does on the client before it waits for health."""
    prepared = plan_install(kube, catalog, app, name, given(f"{name}.example.org"), version, None)
    kube.apply_all(prepared.objects)
    instance = prepared.instance
    save_record(
        kube,
        InstanceRecord(
            name=name,
            app=app,
            version=instance.version.version,
            params=dict(instance.params),
            secret_keys=sorted(instance.secret_values),
            inventory=refs_of(prepared.objects),
            status="installed",
        ),
    )
    return prepared.objects


def install_figures(kube: KubeClient, catalog: Catalog, kubeconfig: Path, runs: int) -> None:
    libresh_times, kubectl_times, calls = [], [], []
    kubectl = shutil.which("kubectl")
    for run in range(runs):
        before = kube.request_count
        start = time.perf_counter()
        objects = install_without_waiting(kube, catalog, "nextcloud", f"nc-{run}")
        libresh_times.append(time.perf_counter() - start)
        calls.append(kube.request_count - before)
        if kubectl:
            kubectl_times.append(_kubectl_apply(kubectl, kubeconfig, objects, f"kc-{run}"))
    median = statistics.median(libresh_times)
    print(
        f"install nextcloud, client side (render+plan+apply)  {median * 1000:7.1f} ms "
        f"({statistics.median(calls):.0f} API requests, {len(objects)} objects)"
    )
    if not kubectl:
        print("kubectl apply --server-side                         (kubectl not found)")
        return
    reference = statistics.median(kubectl_times)
    ratio = median / reference
    print(f"kubectl apply --server-side, same objects          {reference * 1000:7.1f} ms")
    print(
        f"ratio libresh / kubectl                            {ratio:7.2f}   target <= 1.0  "
        f"{'MET' if ratio <= 1.0 else 'MISSED'}"
    )


def _kubectl_apply(
    kubectl: str, kubeconfig: Path, objects: list[dict[str, object]], namespace: str
) -> float:
    moved = []
    for manifest in objects:
        copy = yaml.safe_load(yaml.safe_dump(manifest))
        if copy["kind"] == "Namespace":
            copy["metadata"]["name"] = namespace
        else:
            copy["metadata"]["namespace"] = namespace
        moved.append(copy)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        yaml.safe_dump_all(moved, handle)
    start = time.perf_counter()
    subprocess.run(
        [
            kubectl,
            "--kubeconfig",
            str(kubeconfig),
            "apply",
            "--server-side",
            "--field-manager",
            "bench",
            "-f",
            handle.name,
        ],
        check=True,
        capture_output=True,
    )
    elapsed = time.perf_counter() - start
    Path(handle.name).unlink()
    return elapsed


def list_figures(kube: KubeClient, catalog: Catalog, count: int, runs: int) -> None:
    install_without_waiting(kube, catalog, "demo", "list-0", "3.0.0")
    one = _list_calls(kube, catalog)
    for index in range(1, count):
        install_without_waiting(kube, catalog, "demo", f"list-{index}", "3.0.0")
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        found = list_instances(kube, catalog)
        times.append(time.perf_counter() - start)
    many = _list_calls(kube, catalog)
    median = statistics.median(times)
    print(
        f"libresh list with {len(found)} instances                  {median * 1000:7.1f} ms  "
        f"target < 500 ms  {'MET' if median < 0.5 else 'MISSED'}"
    )
    print(
        f"API calls for list: 1 instance {one}, {len(found)} instances {many}"
        f"            {'constant' if one == many else 'NOT CONSTANT'}"
    )


def _list_calls(kube: KubeClient, catalog: Catalog) -> int:
    before = kube.request_count
    list_instances(kube, catalog)
    return kube.request_count - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--instances", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as state:
        paths = Paths.from_env({**os.environ, "XDG_STATE_HOME": state})
        lab_up(paths, LabSpec(name="bench-apps", nodes=1), SilentReporter())
        try:
            kubeconfig = kubeconfig_path(paths, "bench-apps")
            catalog = Catalog.from_sources([DEMO_CATALOG])
            with KubeClient.connect(KubeTarget(kubeconfig)) as kube:
                install_figures(kube, catalog, kubeconfig, args.runs)
                list_figures(kube, catalog, args.instances, args.runs)
        finally:
            lab_down(paths, "bench-apps", SilentReporter())


if __name__ == "__main__":
    main()
