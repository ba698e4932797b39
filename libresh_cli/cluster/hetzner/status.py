"""`libresh cluster status`: the servers (Hetzner), nodes and etcd members (Kubernetes), the
health of the API load balancer's targets."""

from __future__ import annotations

from typing import Any

from libresh_cli.cluster.spec import API_LOAD_BALANCER
from libresh_cli.hetzner.cloud import HetznerCloud
from libresh_cli.kube.client import KubeClient
from libresh_cli.kube.readiness import node as node_readiness

ETCD_ROLE = "node-role.kubernetes.io/etcd"


def status(
    cloud: HetznerCloud,
    name: str,
    labels: dict[str, str],
    kube: KubeClient | None,
    api_access: str = API_LOAD_BALANCER,
) -> dict[str, Any]:
    servers = cloud.servers(labels)
    balancer = cloud.load_balancer(labels)
    names = {s.id: s.name for s in servers}
    data: dict[str, Any] = {
        "cluster": name,
        "servers": [s.to_dict() for s in servers],
        "api_access": api_access,
        "load_balancer": None,
        "nodes": [],
        "etcd_members": [],
        "healthy": True,
    }
    if balancer is not None:
        health = {names.get(i, str(i)): h for i, h in balancer.health.items()}
        data["load_balancer"] = {
            "name": balancer.name,
            "address": balancer.public_ipv4,
            "targets": health,
        }
        data["healthy"] &= bool(health) and all(h == "healthy" for h in health.values())
    elif api_access == API_LOAD_BALANCER:
        data["healthy"] = False
    if kube is not None:
        nodes = kube.list("v1", "Node")
        data["nodes"] = [_node_row(n) for n in nodes]
        data["etcd_members"] = sorted(
            n["metadata"]["name"]
            for n in nodes
            if n["metadata"].get("labels", {}).get(ETCD_ROLE) == "true"
        )
        data["healthy"] &= all(n["ready"] for n in data["nodes"])
        wanted_servers = [s.name for s in servers if s.role == "server"]
        data["healthy"] &= len(data["etcd_members"]) >= len(wanted_servers)
    data["healthy"] &= bool(servers) and all(s.status == "running" for s in servers)
    return data


def _node_row(node: dict[str, Any]) -> dict[str, Any]:
    labels = node["metadata"].get("labels", {})
    roles = sorted(
        k.split("/", 1)[1] for k, v in labels.items() if k.startswith("node-role.kubernetes.io/")
    )
    return {
        "name": node["metadata"]["name"],
        "ready": node_readiness(node).ready,
        "roles": roles or ["agent"],
        "version": node.get("status", {}).get("nodeInfo", {}).get("kubeletVersion", ""),
        "schedulable": not node.get("spec", {}).get("unschedulable", False),
    }
