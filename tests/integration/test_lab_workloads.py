"""What the lab cluster must do for the rest of libresh, checked on the real API server.

Objects go in through libresh's kube adapter (server-side apply); what happened is read back
with the official kubernetes Python client, independently of the adapter.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client as k8s

from libresh_cli.apps.health import UnhealthyError, wait_healthy
from libresh_cli.apps.instance import APP_VERSION, INSTANCE
from libresh_cli.kube import readiness
from libresh_cli.kube.client import KubeClient, wait_for
from libresh_cli.lab.components import FAILING_POD_LABEL, STORAGE_CLASS
from libresh_cli.progress import SilentReporter
from tests.integration.conftest import Lab

Manifest = dict[str, Any]


def wait_ready(
    kube: KubeClient, manifest: Manifest, namespace: str, timeout: float = 60
) -> Manifest:
    def probe() -> Manifest | None:
        current = kube.get(
            manifest["apiVersion"], manifest["kind"], manifest["metadata"]["name"], namespace
        )
        if current is None:
            return None
        state = readiness.readiness(current)
        assert not state.failed, f"{manifest['kind']} failed: {state.reason}"
        return current if state.ready else None

    return wait_for(f"{manifest['kind']} ready", probe, timeout=timeout)


def pod_template(name: str, labels: dict[str, str] | None = None) -> Manifest:
    return {
        "metadata": {"labels": {"app": name, **(labels or {})}},
        "spec": {"containers": [{"name": "main", "image": f"example.org/{name}:1"}]},
    }


def deployment(name: str, replicas: int = 2, labels: dict[str, str] | None = None) -> Manifest:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": pod_template(name, labels),
        },
    }


def job(name: str, labels: dict[str, str] | None = None) -> Manifest:
    template = pod_template(name, labels)
    template["spec"]["restartPolicy"] = "Never"
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": template},
    }


def test_nodes_are_ready_and_the_version_is_pinned(lab: Lab) -> None:
    api = lab.official_client()
    nodes = k8s.CoreV1Api(api).list_node(label_selector="node.libresh.dev/lab=true").items
    assert sorted(str(n.metadata.name) for n in nodes) == ["lab-node-1", "lab-node-2"]
    for node in nodes:
        ready = [c for c in node.status.conditions if c.type == "Ready"]
        assert ready and ready[0].status == "True"
    assert k8s.VersionApi(api).get_code().git_version == "v1.34.4"


def test_server_side_apply_of_a_crd_and_a_custom_object(
    lab: Lab, kube: KubeClient, namespace: str
) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.test.libresh.dev"},
        "spec": {
            "group": "test.libresh.dev",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"size": {"type": "integer"}},
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    kube.apply(crd)
    wait_ready(kube, crd, namespace="")
    widget = {
        "apiVersion": "test.libresh.dev/v1",
        "kind": "Widget",
        "metadata": {"name": "w1", "namespace": namespace},
        "spec": {"size": 3},
    }
    kube.apply(widget)
    custom = k8s.CustomObjectsApi(lab.official_client())
    stored = custom.get_namespaced_custom_object(
        "test.libresh.dev", "v1", namespace, "widgets", "w1"
    )
    assert stored["spec"] == {"size": 3}
    managers = {(f["manager"], f["operation"]) for f in stored["metadata"]["managedFields"]}
    assert managers == {("libresh", "Apply")}
    kube.apply({**widget, "spec": {"size": 5}})  # a changed value is applied in place
    stored = custom.get_namespaced_custom_object(
        "test.libresh.dev", "v1", namespace, "widgets", "w1"
    )
    assert stored["spec"] == {"size": 5}
    kube.delete("apiextensions.k8s.io/v1", "CustomResourceDefinition", "widgets.test.libresh.dev")


def test_a_deployment_rolls_out_to_available(lab: Lab, kube: KubeClient, namespace: str) -> None:
    web = deployment("web", replicas=2)
    kube.apply(web, namespace=namespace)
    wait_ready(kube, web, namespace)
    status = (
        k8s.AppsV1Api(lab.official_client())
        .read_namespaced_deployment_status("web", namespace)
        .status
    )
    assert status.available_replicas == 2 and status.updated_replicas == 2


def test_a_statefulset_gets_its_volume_bound_and_becomes_ready(
    lab: Lab, kube: KubeClient, namespace: str
) -> None:
    database = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {
            "serviceName": "db",
            "replicas": 1,
            "selector": {"matchLabels": {"app": "db"}},
            "template": pod_template("db"),
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                }
            ],
        },
    }
    kube.apply(database, namespace=namespace)
    wait_ready(kube, database, namespace)
    claim = k8s.CoreV1Api(lab.official_client()).read_namespaced_persistent_volume_claim(
        "data-db-0", namespace
    )
    assert claim.status.phase == "Bound"
    assert claim.spec.storage_class_name == STORAGE_CLASS  # the default class was applied
    volume = k8s.CoreV1Api(lab.official_client()).read_persistent_volume(claim.spec.volume_name)
    assert volume.spec.claim_ref.name == "data-db-0"


def test_a_job_completes(lab: Lab, kube: KubeClient, namespace: str) -> None:
    kube.apply(job("once"), namespace=namespace)
    wait_ready(kube, job("once"), namespace)
    status = (
        k8s.BatchV1Api(lab.official_client()).read_namespaced_job_status("once", namespace).status
    )
    assert status.succeeded == 1


def test_a_labelled_job_fails(lab: Lab, kube: KubeClient, namespace: str) -> None:
    doomed = job("doomed", labels={FAILING_POD_LABEL: "true"})
    kube.apply(doomed, namespace=namespace)

    def failed() -> bool | None:
        current = kube.get("batch/v1", "Job", "doomed", namespace)
        return True if current and readiness.readiness(current).failed else None

    wait_for("the labelled Job to fail", failed, timeout=60)
    pods = (
        k8s.CoreV1Api(lab.official_client())
        .list_namespaced_pod(namespace, label_selector="app=doomed")
        .items
    )
    assert pods and all(p.status.phase == "Failed" for p in pods)


def test_labelled_pods_never_become_ready_while_their_siblings_do(
    lab: Lab, kube: KubeClient, namespace: str
) -> None:
    healthy = deployment("healthy", replicas=1)
    sick = deployment("sick", replicas=1, labels={FAILING_POD_LABEL: "true"})
    kube.apply_all([healthy, sick], namespace=namespace)
    wait_ready(kube, healthy, namespace)
    time.sleep(2)  # time enough for kwok to have made the sick pod ready, had it wanted to
    core = k8s.CoreV1Api(lab.official_client())
    pods = core.list_namespaced_pod(namespace, label_selector="app=sick").items
    assert len(pods) == 1
    pod = pods[0]
    assert pod.status.phase == "Running"
    assert pod.status.container_statuses[0].state.waiting.reason == "CrashLoopBackOff"
    current = kube.get("apps/v1", "Deployment", "sick", namespace)
    assert current is not None and not readiness.readiness(current).ready


def test_waiting_for_health_in_vain_says_why_the_pod_is_not_running(
    kube: KubeClient, namespace: str
) -> None:
    """The scheduler's own words end the message: what a person on a small server full of
    apps needs to read, rather than only "did not become healthy"."""
    greedy = deployment("greedy", replicas=1, labels={INSTANCE: namespace, APP_VERSION: "1.0"})
    greedy["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "requests": {"memory": "64Ti"}
    }
    kube.apply_all([greedy], namespace=namespace)
    with pytest.raises(UnhealthyError) as failed:
        wait_healthy(
            kube, namespace, [("Deployment", "greedy")], "1.0", timeout=8, reporter=SilentReporter()
        )
    message = str(failed.value)
    assert "did not become healthy within 8s: pod greedy-" in message
    assert "cannot be scheduled (0/2 nodes are available: 2 Insufficient memory" in message


def test_cronjobs_and_traefik_ingresses_are_accepted(
    lab: Lab, kube: KubeClient, namespace: str
) -> None:
    cron = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "nightly"},
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": job("x")["spec"]}},
    }
    ingress = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "web"},
        "spec": {
            "ingressClassName": "traefik",
            "rules": [
                {
                    "host": "cloud.example.org",
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "web", "port": {"number": 80}}},
                            }
                        ]
                    },
                }
            ],
        },
    }
    kube.apply_all([cron, ingress], namespace=namespace)
    api = lab.official_client()
    stored_cron = k8s.BatchV1Api(api).read_namespaced_cron_job("nightly", namespace)
    assert stored_cron.spec.schedule == "0 3 * * *"
    stored_ingress = k8s.NetworkingV1Api(api).read_namespaced_ingress("web", namespace)
    assert stored_ingress.spec.ingress_class_name == "traefik"
    assert stored_ingress.spec.rules[0].host == "cloud.example.org"
