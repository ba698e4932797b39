"""Checks of the cluster as a whole: Kubernetes version, nodes, memory, scheduling,
infrastructure, cert-manager. Each verdict is a pure function of what the API said."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from libresh_cli.doctor.checks import CLUSTER, Check, ok, problem, unchecked, warn
from libresh_cli.errors import LibreshError, PrerequisiteError
from libresh_cli.infra import service as infra
from libresh_cli.kube.client import KubeClient
from libresh_cli.kube.quantity import quantity
from libresh_cli.kube.simulated import SIMULATED, is_lab

Manifest = dict[str, Any]
GIB = Decimal(1024**3)
MIB = Decimal(1024**2)
CERTIFICATE_CRD = "certificates.cert-manager.io"
# Kubernetes minor -> (maintenance mode from, end of life): https://kubernetes.io/releases/
# (one page per minor, e.g. /releases/1.34). k3s publishes patch releases for the minors
# upstream maintains (https://github.com/k3s-io/k3s/releases), so the dates are k3s' too.
KUBERNETES_SUPPORT = {
    (1, 30): (date(2025, 4, 28), date(2025, 7, 15)),
    (1, 31): (date(2025, 8, 28), date(2025, 10, 28)),
    (1, 32): (date(2025, 12, 28), date(2026, 2, 28)),
    (1, 33): (date(2026, 4, 28), date(2026, 6, 28)),
    (1, 34): (date(2026, 8, 27), date(2026, 10, 27)),
    (1, 35): (date(2026, 12, 28), date(2027, 2, 28)),
    (1, 36): (date(2027, 4, 28), date(2027, 6, 28)),
}
VERSION = re.compile(r"v?(\d+)\.(\d+)")
MEMORY_WARN = Decimal("0.9")
CONDITIONS_BAD = {
    "MemoryPressure": "the node is short of memory: the kubelet evicts pods",
    "DiskPressure": "the node is short of disk space: the kubelet evicts pods and removes images",
    "PIDPressure": "the node is short of process ids",
}
FIX_DISK = (
    "Free disk space on the node: unused images (`k3s crictl rmi --prune`), old logs "
    "(`journalctl --vacuum-size=200M`), backups kept on the node; or grow its disk"
)
FIX_MEMORY = (
    "Uninstall or shrink an app, or add a node (`libresh cluster scale`, on Hetzner); "
    "`kubectl describe node NODE` lists the pods and their requests"
)


def kubernetes_version(git_version: str, today: date) -> Check:
    """Whether upstream still maintains the cluster's Kubernetes minor (k3s: the same)."""
    what = "k3s" if "+k3s" in git_version else "Kubernetes"
    match = VERSION.match(git_version)
    if match is None:
        return unchecked("kubernetes-version", CLUSTER, f"{git_version!r} is not a version")
    minor = (int(match[1]), int(match[2]))
    name = f"{what} {git_version} (Kubernetes {minor[0]}.{minor[1]})"
    fix = (
        "Upgrade one minor at a time: `libresh cluster upgrade --k3s-version vX.Y.Z+k3sN` "
        "(https://github.com/k3s-io/k3s/releases)"
    )
    if minor not in KUBERNETES_SUPPORT:
        if minor < min(KUBERNETES_SUPPORT):
            return problem(
                "kubernetes-version",
                CLUSTER,
                f"{name} is out of upstream maintenance (no security fixes)",
                fix,
            )
        return unchecked(
            "kubernetes-version",
            CLUSTER,
            f"this libresh does not know when upstream stops maintaining {name}",
            "Upgrade libresh for a newer table of Kubernetes releases",
        )
    maintenance, end = KUBERNETES_SUPPORT[minor]
    if today > end:
        return problem(
            "kubernetes-version",
            CLUSTER,
            f"{name} is out of upstream maintenance since {end}: no security fixes",
            fix,
        )
    if today >= maintenance:
        return warn(
            "kubernetes-version",
            CLUSTER,
            f"{name} gets only critical fixes since {maintenance}; upstream maintenance ends {end}",
            fix,
        )
    return ok("kubernetes-version", CLUSTER, f"{name}, maintained upstream until {end}")


def node_conditions(node: Manifest) -> Check:
    """Ready, and no memory, disk or PID pressure, as the node's kubelet reports them."""
    name = node["metadata"]["name"]
    subject = f"node {name}"
    annotations = node["metadata"].get("annotations") or {}
    if annotations.get(SIMULATED[0]) == SIMULATED[1]:
        return unchecked(
            "node", subject, "a simulated node (kwok): its conditions are not a kubelet's"
        )
    conditions = {c.get("type"): c for c in (node.get("status") or {}).get("conditions") or []}
    ready = conditions.get("Ready") or {}
    if ready.get("status") != "True":
        return problem(
            "node",
            subject,
            f"not Ready: {ready.get('message') or 'the kubelet does not report'}",
            f"Look at the node: `kubectl describe node {name}`; on it, `systemctl status k3s` "
            "(k3s-agent on an agent) and `journalctl -u k3s`",
        )
    for kind, meaning in CONDITIONS_BAD.items():
        if (conditions.get(kind) or {}).get("status") == "True":
            fix = FIX_DISK if kind == "DiskPressure" else FIX_MEMORY
            return problem("node", subject, f"{kind}: {meaning}", fix)
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    disk = allocatable.get("ephemeral-storage")
    disk_text = f"; {quantity(disk) / GIB:.1f} GiB of disk for pods" if disk else ""
    return ok("node", subject, f"Ready, no memory, disk or PID pressure{disk_text}")


def pod_memory_request(pod: Manifest) -> Decimal:
    """What the scheduler counts: the sum of the containers' requests, or the largest init
    container's when that is more (pod overhead aside)."""
    spec = pod.get("spec") or {}

    def request(container: Mapping[str, Any]) -> Decimal:
        requests = (container.get("resources") or {}).get("requests") or {}
        return quantity(requests.get("memory", 0))

    running = sum((request(c) for c in spec.get("containers") or []), Decimal(0))
    init = max((request(c) for c in spec.get("initContainers") or []), default=Decimal(0))
    return max(running, init)


def node_memory(node: Manifest, pods: list[Manifest]) -> Check:
    """The memory the node's pods request beside what the node can give them."""
    name = node["metadata"]["name"]
    subject = f"node {name}"
    allocatable = quantity(((node.get("status") or {}).get("allocatable") or {}).get("memory", 0))
    if allocatable <= 0:
        return unchecked("memory", subject, "the node reports no allocatable memory")
    requested = sum((pod_memory_request(p) for p in pods), Decimal(0))
    share = requested / allocatable
    detail = f"pods request {_size(requested)} of {_size(allocatable)} allocatable ({share:.0%})"
    if share > 1:
        return problem("memory", subject, f"{detail}: more than the node has", FIX_MEMORY)
    if share >= MEMORY_WARN:
        return warn(
            "memory", subject, f"{detail}: little left for a new app or an upgrade", FIX_MEMORY
        )
    return ok("memory", subject, detail)


def _size(amount: Decimal) -> str:
    return f"{amount / GIB:.1f} GiB" if amount >= GIB else f"{amount / MIB:.0f} MiB"


def unschedulable(pods: list[Manifest]) -> Check:
    """Pods the scheduler cannot place (too little memory or CPU, no node that fits)."""
    waiting = []
    for pod in pods:
        for condition in (pod.get("status") or {}).get("conditions") or []:
            if condition.get("type") == "PodScheduled" and condition.get("reason") == (
                "Unschedulable"
            ):
                meta = pod["metadata"]
                waiting.append(
                    f"{meta.get('namespace')}/{meta['name']}: {condition.get('message')}"
                )
    if not waiting:
        return ok("scheduling", CLUSTER, "every pod has a node")
    more = f" (+{len(waiting) - 3} more)" if len(waiting) > 3 else ""
    return problem(
        "scheduling",
        CLUSTER,
        f"{len(waiting)} pod(s) wait for a node: {'; '.join(waiting[:3])}{more}",
        FIX_MEMORY,
    )


def active_pods_by_node(pods: list[Manifest]) -> dict[str, list[Manifest]]:
    """Pods that hold their requests: placed on a node, not finished."""
    found: dict[str, list[Manifest]] = {}
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        if node and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
            found.setdefault(node, []).append(pod)
    return found


def node_checks(nodes: list[Manifest], pods: list[Manifest]) -> list[Check]:
    by_node = active_pods_by_node(pods)
    checks: list[Check] = []
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        checks.append(node_conditions(node))
        checks.append(node_memory(node, by_node.get(node["metadata"]["name"], [])))
    if not nodes:
        checks.append(
            problem(
                "node",
                CLUSTER,
                "the cluster has no node",
                "Add one: `libresh bootstrap ssh HOST` (or `libresh cluster create`)",
            )
        )
    checks.append(unschedulable(pods))
    return checks


def infrastructure(kube: KubeClient) -> Check:
    """`libresh infra status`: every component healthy, every ClusterIssuer ready."""
    try:
        status = infra.status(kube)
    except PrerequisiteError as error:
        if is_lab(kube):
            return unchecked(
                "infrastructure",
                CLUSTER,
                "this is a libresh lab, not k3s: no infrastructure can run here",
            )
        return problem("infrastructure", CLUSTER, error.message, error.hint or "")
    except LibreshError as error:
        return unchecked("infrastructure", CLUSTER, error.message)
    bad = [
        f"{c['name']}: {c['health']} ({c['detail']})"
        for c in status["components"]
        if c["health"] != "healthy"
    ] + [f"ClusterIssuer {i['name']}: {i['detail']}" for i in status["issuers"] if not i["ready"]]
    if bad:
        return problem(
            "infrastructure",
            CLUSTER,
            "; ".join(bad),
            "`libresh infra status` says more; `libresh infra install` again "
            "repairs what it installed",
        )
    names = ", ".join(c["name"] for c in status["components"])
    return ok(
        "infrastructure",
        CLUSTER,
        f"profile {status['profile']}: {names} healthy; ClusterIssuers ready",
    )


def cert_manager(kube: KubeClient) -> tuple[Check, bool]:
    """Whether cert-manager's Certificate kind is served (its CRD exists): without it no
    instance gets a certificate. Also returns that as a bool, for the instance checks."""
    crd = kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", CERTIFICATE_CRD)
    if crd is None:
        return problem(
            "cert-manager",
            CLUSTER,
            f"cert-manager is not installed (no {CERTIFICATE_CRD}): no instance gets a "
            "certificate, browsers refuse the sites",
            "libresh infra install --email YOU@EXAMPLE.ORG",
        ), False
    return ok("cert-manager", CLUSTER, "cert-manager's Certificate kind is served"), True
