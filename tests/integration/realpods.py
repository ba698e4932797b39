"""Helpers for tests on the lab's real node: find an instance's pods, run a pod of our own
beside them (with an instance's connection Secret mounted) and read what it printed, find
where a volume lives on this machine."""

from __future__ import annotations

import base64
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from libresh_cli.backup.jobs import RUNNER_IMAGE
from libresh_cli.lab import imagebuild, nodeaddons
from tests.integration.conftest import Lab
from tests.integration.test_apps import LIBRESH

POSTGRES_IMAGE = RUNNER_IMAGE  # as services/postgres-embedded.yaml
REDIS_IMAGE = imagebuild.load_recipe("redis").reference
DEBIAN_IMAGE = imagebuild.load_recipe("debian").reference


def instance_pod(lab: Lab, namespace: str, component: str, timeout: float = 60.0) -> Any:
    """The running, Ready pod of an instance's component (app.kubernetes.io/component)."""
    selector = f"app.kubernetes.io/component={component}"
    deadline = time.monotonic() + timeout
    pods: list[Any] = []
    with lab.kube() as kube:
        while time.monotonic() < deadline:
            pods = kube.list("v1", "Pod", namespace, label_selector=selector)
            for pod in pods:
                statuses = pod.get("status", {}).get("containerStatuses") or []
                if statuses and all(s.get("ready") for s in statuses):
                    return pod
            time.sleep(0.5)
    pytest.fail(f"no Ready {component} pod in {namespace} within {timeout:.0f} s: {pods}")


def pod_log(lab: Lab, namespace: str, pod: str) -> str:
    """What the container printed, as the kubelet kept it (GET pods/log)."""
    from kubernetes import client as k8s

    api = k8s.CoreV1Api(lab.official_client())
    return str(api.read_namespaced_pod_log(pod, namespace))


def secret_values(lab: Lab, namespace: str, name: str) -> dict[str, str]:
    with lab.kube() as kube:
        secret = kube.get("v1", "Secret", name, namespace)
    assert secret is not None, f"no Secret {namespace}/{name}"
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def cluster_dns(lab: Lab) -> bool:
    """Whether Service names resolve in pods: the lab runs CoreDNS beside the real node (its
    kubelet's clusterDNS), from libresh_cli/lab/nodeaddons.py on."""
    return any(record.component == nodeaddons.COREDNS for record in lab.state.processes)


def run_pod(
    lab: Lab,
    namespace: str,
    name: str,
    image: str,
    script: str,
    *,
    secret: str = "libresh-postgres",  # noqa: S107 (a Secret's name)
    target: str = "postgres",
    env: dict[str, str] | None = None,
    timeout: float = 120.0,
) -> tuple[int, str]:
    """Run `sh -c SCRIPT` in a pod of `image` in the instance's namespace, with `secret`'s
    files at /conn; its exit code and log. Without cluster DNS, PGHOST holds the address of
    the `target` component's pod (the Secret's host is a Service name). `env`: more of the
    container's environment (where a test's own password goes: never on a command line)."""
    variables = [{"name": k, "value": v} for k, v in (env or {}).items()]
    if not cluster_dns(lab):
        address = instance_pod(lab, namespace, target)["status"]["podIP"]
        variables.append({"name": "PGHOST", "value": address})
    pod_name = f"{name}-{uuid.uuid4().hex[:5]}"
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod_name, "namespace": namespace},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "main",
                    "image": image,
                    "imagePullPolicy": "Never",  # only what was built here
                    "command": ["sh", "-c", script],
                    "env": variables,
                    "volumeMounts": [{"name": "conn", "mountPath": "/conn", "readOnly": True}],
                }
            ],
            "volumes": [{"name": "conn", "secret": {"secretName": secret}}],
        },
    }
    with lab.kube() as kube:
        kube.apply(manifest)
        try:
            code = _exit_code(kube, namespace, pod_name, timeout)
            return code, pod_log(lab, namespace, pod_name)
        finally:
            kube.delete("v1", "Pod", pod_name, namespace)


def _exit_code(kube: Any, namespace: str, pod_name: str, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    pod = None
    while time.monotonic() < deadline:
        pod = kube.get("v1", "Pod", pod_name, namespace)
        statuses = (pod or {}).get("status", {}).get("containerStatuses") or []
        if statuses and "terminated" in statuses[0].get("state", {}):
            return int(statuses[0]["state"]["terminated"]["exitCode"])
        time.sleep(0.5)
    pytest.fail(f"pod {namespace}/{pod_name} did not finish within {timeout:.0f} s: {pod}")


def volume_host_path(lab: Lab, namespace: str, claim: str) -> Path:
    """Where a bound claim's volume is on this machine (the real node is this machine): the
    PersistentVolume's hostPath or local path."""
    with lab.kube() as kube:
        pvc = kube.get("v1", "PersistentVolumeClaim", claim, namespace)
        assert pvc is not None and pvc["spec"].get("volumeName"), pvc
        pv = kube.get("v1", "PersistentVolume", pvc["spec"]["volumeName"])
    assert pv is not None
    source = pv["spec"].get("hostPath") or pv["spec"].get("local")
    assert source, f"volume {pv['metadata']['name']} is not on the node's disk: {pv['spec']}"
    return Path(source["path"])


def drop_instances(lab: Lab, *names: str) -> None:
    """Delete the instances' namespaces without waiting: the real node is shared by the
    session's real-node modules (conftest.py real_lab), and a module's instances are not kept
    running (memory, CPU) through the modules after it."""
    with lab.kube() as kube:
        for name in names:
            kube.delete("v1", "Namespace", name)


def run_libresh(lab: Lab, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """The `libresh` command on the lab, with the built-in catalog, as a script runs it."""
    return subprocess.run(
        [LIBRESH, "--kubeconfig", str(lab.kubeconfig), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**lab.cli_env(), "COLUMNS": "200"},
    )


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr
