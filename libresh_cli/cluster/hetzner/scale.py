"""`libresh cluster scale`: agents removed (drained, their pods moved, then deleted), then the
cluster made as the file says with the new count (new agents join)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from libresh_cli.cluster.hetzner.create import create
from libresh_cli.cluster.hetzner.local import forget_host_key, kubeconfig_destination
from libresh_cli.cluster.hetzner.report import CreateOptions, CreateReport
from libresh_cli.cluster.hetzner.servers import agents_to_remove
from libresh_cli.cluster.spec import ClusterSpec, NodeGroup
from libresh_cli.hetzner.cloud import HetznerCloud, ServerInfo
from libresh_cli.kube import nodes as kube_nodes
from libresh_cli.kube.client import KubeClient
from libresh_cli.kube.connection import KubeTarget
from libresh_cli.progress import Reporter
from libresh_cli.settings import Paths


@dataclass(frozen=True)
class ScalePlan:
    spec: ClusterSpec  # the file's, with the agents' count asked for
    removing: list[ServerInfo]  # the highest-numbered agents beyond it, last first


def plan_scale(cloud: HetznerCloud, spec: ClusterSpec, agents: int) -> ScalePlan:
    """The agents to remove (to be confirmed), and the cluster to make with `agents`."""
    removing = agents_to_remove(cloud.servers(spec.labels), agents)
    return ScalePlan(replace(spec, agents=NodeGroup(spec.agents.server_type, agents)), removing)


def scale(
    cloud: HetznerCloud,
    plan: ScalePlan,
    paths: Paths,
    reporter: Reporter,
    options: CreateOptions,
    ssh_config: Path | None = None,
) -> CreateReport:
    """Drain and delete the agents to remove, one after another, then make the cluster with
    the new count (new agents join, all at once)."""
    cluster = plan.spec.name
    if plan.removing:
        path = kubeconfig_destination(paths, cluster).path
        with KubeClient.connect(KubeTarget(path, cluster)) as kube:
            for server in plan.removing:
                remove_agent(cloud, kube, server, paths, cluster, reporter)
    return create(cloud, plan.spec, paths, reporter, options, ssh_config=ssh_config)


def remove_agent(
    cloud: HetznerCloud,
    kube: KubeClient,
    server: ServerInfo,
    paths: Paths,
    cluster: str,
    reporter: Reporter,
) -> None:
    if kube.get("v1", "Node", server.name) is not None:
        reporter.step(f"Draining {server.name}")
        kube_nodes.drain(kube, server.name)
        reporter.done(f"{server.name} drained")
        kube.delete("v1", "Node", server.name)
    reporter.step(f"Deleting the server {server.name}")
    cloud.delete_server(server.id, server.name)
    forget_host_key(paths, cluster, server.public_ipv4)
    reporter.done(f"Server {server.name} deleted")
