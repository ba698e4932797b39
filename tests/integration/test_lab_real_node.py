"""A lab with a real node: pods run in containerd + runc from an image built here, and what the
cluster says of them (exit codes, logs) is what the kubelet saw, not what kwok was told."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from libresh_cli.lab import realnode
from libresh_cli.lab.cluster import LabSpec, lab_down, lab_status, lab_up
from libresh_cli.lab.state import kubeconfig_path, lab_dir
from libresh_cli.progress import SilentReporter
from libresh_cli.settings import Paths
from tests.integration.conftest import Lab

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a real node needs root")

NAME = "real"
IMAGE = "docker.io/library/debian:bookworm-slim"  # built here: libresh_cli/lab/images/debian


@pytest.fixture(scope="module")
def real_lab(lab_paths: Paths) -> Iterator[Lab]:
    state, _ = lab_up(lab_paths, LabSpec(name=NAME, nodes=0, real_node=True), SilentReporter())
    try:
        yield Lab(lab_paths, state, kubeconfig_path(lab_paths, NAME))
    finally:
        lab_down(lab_paths, NAME, SilentReporter())


def _job(name: str, host_dir: Path) -> dict[str, object]:
    script = "echo written by a real container > /out/proof; echo hello from $(hostname); exit 3"
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "nodeSelector": {realnode.REAL_NODE_LABEL: "true"},
                    "containers": [
                        {
                            "name": "main",
                            "image": IMAGE,
                            "imagePullPolicy": "Never",  # no registry: only what was built here
                            "command": ["sh", "-c", script],
                            "volumeMounts": [{"name": "out", "mountPath": "/out"}],
                        }
                    ],
                    "volumes": [
                        {"name": "out", "hostPath": {"path": str(host_dir), "type": "Directory"}}
                    ],
                }
            },
        },
    }


def _terminated_pod(lab: Lab, job: str, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    with lab.kube() as kube:
        while time.monotonic() < deadline:
            for pod in kube.list("v1", "Pod", "default", label_selector=f"job-name={job}"):
                statuses = pod.get("status", {}).get("containerStatuses") or []
                if statuses and "terminated" in statuses[0].get("state", {}):
                    return pod
            time.sleep(0.5)
        pods = kube.list("v1", "Pod", "default", label_selector=f"job-name={job}")
    pytest.fail(f"Job {job}'s pod did not terminate within {timeout:.0f} s: {pods}")


def test_node_is_real_and_ready(real_lab: Lab) -> None:
    with real_lab.kube() as kube:
        node = kube.get("v1", "Node", realnode.NODE_NAME)
    assert node is not None
    info = node["status"]["nodeInfo"]
    assert info["containerRuntimeVersion"].startswith("containerd://")
    assert info["kubeletVersion"] == "v1.34.4"
    assert "kwok.x-k8s.io/node" not in node["metadata"].get("annotations", {})
    status = lab_status(real_lab.paths, NAME)
    assert status.health == "running"
    assert status.real_node == realnode.NODE_NAME
    assert {"containerd", "kubelet"} <= set(status.processes)


def test_job_exit_code_and_logs_come_from_the_container(real_lab: Lab, tmp_path: Path) -> None:
    name = f"exit3-{uuid.uuid4().hex[:6]}"
    with real_lab.kube() as kube:
        kube.apply(_job(name, tmp_path))
    pod = _terminated_pod(real_lab, name)
    status = pod["status"]["containerStatuses"][0]
    terminated = status["state"]["terminated"]
    assert terminated["exitCode"] == 3
    assert terminated["reason"] == "Error"
    assert status["containerID"].startswith("containerd://")
    # The container really ran here: it wrote through its hostPath volume.
    assert (tmp_path / "proof").read_text() == "written by a real container\n"
    # GET pods/log: the API server asks the kubelet, which reads what containerd kept.
    client = real_lab.official_client()
    from kubernetes import client as k8s

    name_of_pod = pod["metadata"]["name"]
    log = k8s.CoreV1Api(client).read_namespaced_pod_log(name_of_pod, "default")
    assert log == f"hello from {name_of_pod}\n"
    with real_lab.kube() as kube:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            job = kube.get("batch/v1", "Job", name, "default")
            conditions = {c["type"]: c["status"] for c in job["status"].get("conditions", [])}
            if conditions.get("Failed") == "True":
                break
            time.sleep(0.5)
        assert conditions.get("Failed") == "True", job["status"]


def test_down_leaves_no_mounts_bridge_cgroup_or_processes(real_lab: Lab) -> None:
    record = real_lab.state.real_node
    assert record is not None
    node = realnode.NodeLayout.from_record(record)
    directory = lab_dir(real_lab.paths, NAME)
    assert realnode.mounts_under(directory), "a running node has mounts under the lab"
    assert lab_down(real_lab.paths, NAME, SilentReporter())
    assert realnode.mounts_under(directory) == []
    assert not directory.exists()
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    assert node.bridge not in links.stdout
    assert not any(d.exists() for d in realnode.cgroup_dirs(node))
    shims = subprocess.run(["pgrep", "-af", "containerd-shim"], capture_output=True, text=True)
    assert str(node.containerd_socket) not in shims.stdout
