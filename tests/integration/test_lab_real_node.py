"""A lab with a real node: pods run in containerd + runc from an image built here, and what the
cluster says of them (exit codes, logs) is what the kubelet saw, not what kwok was told. Its
Services work (kube-proxy), its names resolve (CoreDNS), its claims bind to directories
(local-path-provisioner), and `kubectl logs` and `exec` reach its containers."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from libresh_cli.lab import nodeaddons, realnode
from libresh_cli.lab.binaries import find_addons
from libresh_cli.lab.cluster import LabSpec, lab_down, lab_status
from libresh_cli.lab.processes import is_alive
from libresh_cli.lab.state import lab_dir
from libresh_cli.progress import SilentReporter
from tests.integration.conftest import REAL_LAB_NAME, Lab, up_when_the_machine_is_free

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a real node needs root")

NAME = REAL_LAB_NAME
IMAGE = "docker.io/library/debian:bookworm-slim"  # built here: libresh_cli/lab/images/debian


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
    assert set(realnode.NODE_COMPONENTS) <= set(status.processes)
    assert all(status.processes.values())


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


# --- Services, DNS, volumes, logs and exec -----------------------------------------------------

# A TCP server in perl-base (which every Debian image has): answers each connection with a line.
SERVER = (
    "perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(LocalPort => 8080, Listen => 5, "
    'ReuseAddr => 1) or die; while ($c = $s->accept) { print $c "hello from $ENV{HOSTNAME}\\n"; '
    "close $c }'"
)


def _pod(name: str, script: str, **spec: Any) -> dict[str, Any]:
    container = {
        "name": "main",
        "image": IMAGE,
        "imagePullPolicy": "Never",
        "command": ["bash", "-c", script],
        **spec.pop("container", {}),
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": {realnode.REAL_NODE_LABEL: "true"},
            "terminationGracePeriodSeconds": 0,
            "containers": [container],
            **spec,
        },
    }


def _service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]},
    }


def _wait_pod(lab: Lab, name: str, done: str, timeout: float = 90.0) -> Any:
    """The pod once `done`: "running" (its container is ready) or "terminated"."""
    deadline = time.monotonic() + timeout
    with lab.kube() as kube:
        while time.monotonic() < deadline:
            pod = kube.get("v1", "Pod", name, "default")
            statuses = (pod or {}).get("status", {}).get("containerStatuses") or []
            if statuses and done in statuses[0].get("state", {}):
                return pod
            time.sleep(0.3)
    pytest.fail(f"Pod {name} is not {done} after {timeout:.0f} s: {pod}")


def _log(lab: Lab, name: str) -> str:
    from kubernetes import client as k8s

    text: str = k8s.CoreV1Api(lab.official_client()).read_namespaced_pod_log(name, "default")
    return text


def _run_pod(lab: Lab, name: str, script: str, **spec: Any) -> tuple[int, str]:
    """Run `script` in a pod on the real node: its exit code and its log."""
    with lab.kube() as kube:
        kube.apply(_pod(name, script, **spec))
    pod = _wait_pod(lab, name, "terminated")
    code = pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"]
    return code, _log(lab, name)


@pytest.fixture(scope="module")
def web(real_lab: Lab) -> Iterator[str]:
    """A pod serving on 8080 behind a Service on 80; yields the Service's ClusterIP."""
    name = "web"
    with real_lab.kube() as kube:
        kube.apply(_pod(name, SERVER, container={"ports": [{"containerPort": 8080}]}))
        kube.apply(_service(name))
        cluster_ip = kube.get("v1", "Service", name, "default")["spec"]["clusterIP"]
    _wait_pod(real_lab, name, "running")
    try:
        yield str(cluster_ip)
    finally:
        with real_lab.kube() as kube:  # gone already if the lab was taken down and up again
            kube.delete("v1", "Service", name, "default")
            kube.delete("v1", "Pod", name, "default")


def _probe_volume(lab: Lab) -> dict[str, Any]:
    """The lab's `whoami` (a static binary) mounted into a pod from this machine."""
    addons = find_addons(lab.paths)
    assert addons is not None
    return {
        "volumes": [{"name": "probe", "hostPath": {"path": str(addons.addons), "type": "File"}}],
        "container": {"volumeMounts": [{"name": "probe", "mountPath": "/probe/lab-addons"}]},
    }


def test_pod_reaches_a_service_and_the_api_server(real_lab: Lab, web: str) -> None:
    script = (
        f"exec 3<>/dev/tcp/{web}/80 && cat <&3 && "
        "echo api $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT && /probe/lab-addons whoami"
    )
    code, log = _run_pod(real_lab, "client", script, **_probe_volume(real_lab))
    # The Service's address led to the other pod; its token, through the `kubernetes`
    # Service, to the API server, which knew whose it is.
    assert code == 0, log
    assert log.splitlines() == [
        "hello from web",
        "api 10.96.0.1:443",
        "system:serviceaccount:default:default",
    ]


def test_pod_resolves_services_by_name(real_lab: Lab, web: str) -> None:
    script = (
        "getent hosts kubernetes.default.svc.cluster.local && getent hosts web.default.svc && "
        "exec 3<>/dev/tcp/web/80 && cat <&3"
    )
    code, log = _run_pod(real_lab, "resolver", script)
    assert code == 0, log
    lines = [line.split() for line in log.splitlines()]
    assert lines == [
        ["10.96.0.1", "kubernetes.default.svc.cluster.local"],
        [web, "web.default.svc.cluster.local"],
        ["hello", "from", "web"],  # the search path: "web" alone, from namespace default
    ]


def test_exec_and_logs_reach_the_container(real_lab: Lab, web: str) -> None:
    from kubernetes import client as k8s
    from kubernetes.stream import stream

    api = k8s.CoreV1Api(real_lab.official_client())
    output = stream(
        api.connect_get_namespaced_pod_exec,
        "web",
        "default",
        command=["sh", "-c", "echo in $(hostname) as $(id -un)"],
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
    )
    assert output == "in web as root\n"
    assert _log(real_lab, "web") == ""  # the server writes nothing: an empty log, not an error


def _claim(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "storageClassName": nodeaddons.LOCAL_PATH_CLASS,
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "16Mi"}},
        },
    }


def _with_claim(claim: str) -> dict[str, Any]:
    return {
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
        "container": {"volumeMounts": [{"name": "data", "mountPath": "/data"}]},
    }


def test_local_path_claim_binds_keeps_data_and_goes_away(real_lab: Lab) -> None:
    claim = "data"
    with real_lab.kube() as kube:
        kube.apply(_claim(claim))
        time.sleep(1)
        # WaitForFirstConsumer: nothing is made before a pod uses the claim.
        assert (
            kube.get("v1", "PersistentVolumeClaim", claim, "default")["status"].get("phase")
            == "Pending"
        )
    code, log = _run_pod(real_lab, "writer", "echo kept > /data/proof", **_with_claim(claim))
    assert code == 0, log
    with real_lab.kube() as kube:
        pvc = kube.get("v1", "PersistentVolumeClaim", claim, "default")
        assert pvc["status"]["phase"] == "Bound"
        pv = kube.get("v1", "PersistentVolume", pvc["spec"]["volumeName"])
        kube.delete_and_wait("v1", "Pod", "writer", "default")
    # A directory of the real node, under the lab's directory, as k3s' `local` volumes.
    record = real_lab.state.real_node
    assert record is not None
    directory = Path(pv["spec"]["local"]["path"])
    assert directory.parent == realnode.NodeLayout.from_record(record).volumes
    assert (directory / "proof").read_text() == "kept\n"
    # Another pod, after the first was deleted, finds what it wrote.
    code, log = _run_pod(real_lab, "reader", "cat /data/proof", **_with_claim(claim))
    assert (code, log) == (0, "kept\n")
    with real_lab.kube() as kube:
        kube.delete_and_wait("v1", "Pod", "reader", "default")
        kube.delete("v1", "PersistentVolumeClaim", claim, "default")
    # Reclaim Delete: the provisioner's helper pod removes the directory, then the PV goes.
    deadline = time.monotonic() + 60
    while directory.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not directory.exists()


def _running_pods(lab: Lab, name: str, replicas: int, timeout: float = 90.0) -> None:
    """A Deployment of `replicas` pods that sleep, until all run."""
    template = _job(name, Path("/tmp"))["spec"]["template"]
    template["metadata"] = {"labels": {"app": name}}
    container = template["spec"]["containers"][0]
    container.update(command=["sleep", "infinity"], volumeMounts=[])
    template["spec"].update(restartPolicy="Always", volumes=[])
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}},
    }
    deployment["spec"]["template"] = template
    deadline = time.monotonic() + timeout
    with lab.kube() as kube:
        kube.apply(deployment)
        while time.monotonic() < deadline:
            pods = kube.list("v1", "Pod", "default", label_selector=f"app={name}")
            running = [p for p in pods if p.get("status", {}).get("phase") == "Running"]
            if len(running) == replicas:
                return
            time.sleep(0.5)
    pytest.fail(f"{replicas} pods of {name} did not run within {timeout:.0f} s: {pods}")


def test_up_after_a_killed_lab_then_down_leaves_nothing(real_lab: Lab) -> None:
    directory = lab_dir(real_lab.paths, NAME)
    assert realnode.mounts_under(directory), "a running node has mounts under the lab"
    assert nodeaddons.kube_chains(), "kube-proxy and the kubelet wrote their chains"
    # Killed at once, as a crash would: the containers, mounts, bridge and chains stay.
    for process in real_lab.state.processes:
        os.kill(process.pid, signal.SIGKILL)
    spec = LabSpec(name=NAME, nodes=0, real_node=True)
    again = up_when_the_machine_is_free(real_lab.paths, spec)
    assert lab_status(real_lab.paths, NAME).health == "running"
    record = again.real_node
    assert record is not None
    node = realnode.NodeLayout.from_record(record)
    # Containers running as it stops, as in a lab with apps: their cgroups go while `lab down`
    # walks the node's (it once stopped half-way on one that had vanished).
    _running_pods(real_lab, "sleeper", 4)
    assert lab_down(real_lab.paths, NAME, SilentReporter())
    assert realnode.mounts_under(directory) == []
    assert not directory.exists()
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    assert node.bridge not in links.stdout
    assert not any(d.exists() for d in realnode.cgroup_dirs(node))
    shims = subprocess.run(["pgrep", "-af", "containerd-shim"], capture_output=True, text=True)
    assert str(node.containerd_socket) not in shims.stdout
    assert nodeaddons.kube_chains() == []
    left = [p.component for p in [*real_lab.state.processes, *again.processes] if is_alive(p)]
    assert left == []
    # The lab is the session's (conftest.py real_lab): up again for the modules after this one.
    real_lab.state = up_when_the_machine_is_free(real_lab.paths, spec)
