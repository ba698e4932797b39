"""`libresh cluster upgrade`: k3s moved to another version by system-upgrade-controller, one
node at a time — servers first, then agents (drained) — through two `Plan` objects.

The plan is checked against every node's version first: no downgrade (k3s' datastore cannot
go back) and no skipped minor version (Kubernetes supports one at a time)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from libresh_cli.cluster.k3s import check_version_change, parse_version
from libresh_cli.errors import PrerequisiteError
from libresh_cli.kube.client import KubeClient
from libresh_cli.kube.diff import normalize

PLAN_API = "upgrade.cattle.io/v1"
PLAN_CRD = "plans.upgrade.cattle.io"
NAMESPACE = "system-upgrade"
SERVICE_ACCOUNT = "system-upgrade"
UPGRADE_IMAGE = "rancher/k3s-upgrade"
CONTROL_PLANE = "node-role.kubernetes.io/control-plane"
LABELS = {"app.kubernetes.io/managed-by": "libresh"}


@dataclass
class UpgradePlan:
    version: str
    nodes: dict[str, str]  # node → its k3s version now
    plans: list[dict[str, Any]] = field(default_factory=list)
    changed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "nodes": [{"node": n, "from": v, "to": self.version} for n, v in self.nodes.items()],
            "plans": [p["metadata"]["name"] for p in self.plans],
            "changed": self.changed,
        }


def node_versions(kube: KubeClient) -> dict[str, str]:
    """k3s nodes and the version their kubelet reports (others, e.g. simulated, are left out)."""
    versions = {}
    for node in kube.list("v1", "Node"):
        version = ((node.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", "")
        if "+k3s" in version:
            versions[node["metadata"]["name"]] = version
    return versions


def check_target(versions: dict[str, str], target: str) -> None:
    parse_version(target)
    for node, version in sorted(versions.items()):
        check_version_change(version, target, where=f"node {node}")


def plan_manifests(version: str) -> list[dict[str, Any]]:
    """The two Plans of the k3s documentation's shape: servers one at a time (cordoned), then
    agents one at a time, drained, once every server runs the version."""
    common = {"concurrency": 1, "serviceAccountName": SERVICE_ACCOUNT, "version": version}
    server = {
        "apiVersion": PLAN_API,
        "kind": "Plan",
        "metadata": {"name": "k3s-server", "namespace": NAMESPACE, "labels": LABELS},
        "spec": {
            **common,
            "cordon": True,
            "nodeSelector": {
                "matchExpressions": [{"key": CONTROL_PLANE, "operator": "In", "values": ["true"]}]
            },
            "tolerations": [{"operator": "Exists"}],
            "upgrade": {"image": UPGRADE_IMAGE},
        },
    }
    agent = {
        "apiVersion": PLAN_API,
        "kind": "Plan",
        "metadata": {"name": "k3s-agent", "namespace": NAMESPACE, "labels": LABELS},
        "spec": {
            **common,
            "nodeSelector": {
                "matchExpressions": [{"key": CONTROL_PLANE, "operator": "DoesNotExist"}]
            },
            # Waits until the server Plan is done everywhere.
            "prepare": {"image": UPGRADE_IMAGE, "args": ["prepare", "k3s-server"]},
            "drain": {"force": True, "skipWaitForDeleteTimeout": 60},
            "upgrade": {"image": UPGRADE_IMAGE},
        },
    }
    return [server, agent]


def plan_upgrade(kube: KubeClient, version: str) -> UpgradePlan:
    if kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", PLAN_CRD) is None:
        raise PrerequisiteError(
            "system-upgrade-controller is not installed (no upgrade.cattle.io Plans here).",
            hint="Install the infrastructure first: libresh infra install.",
        )
    versions = node_versions(kube)
    if not versions:
        raise PrerequisiteError(
            "No node of this cluster runs k3s (no kubelet version with +k3s).",
            hint="libresh cluster upgrade upgrades k3s clusters only.",
        )
    check_target(versions, version)
    result = UpgradePlan(version, versions, plan_manifests(version))
    for manifest in result.plans:
        live = kube.get(PLAN_API, "Plan", manifest["metadata"]["name"], NAMESPACE)
        if live is None or normalize(kube.apply(manifest, dry_run=True)) != normalize(live):
            result.changed = True
    return result


def apply_upgrade(kube: KubeClient, plan: UpgradePlan) -> None:
    kube.apply_all(plan.plans)
